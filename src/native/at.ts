// Linux constants for the *at calls (AtApi in types.ts), the same on x86_64 and aarch64. Plain
// numbers, so that code which only passes them along loads under Node and Deno too.

/** A descriptor that names an inode without opening it (no read, no write: only *at and fstat). */
export const O_PATH = 0o10000000;
export const O_CLOEXEC = 0o2000000;
export const O_DIRECTORY = 0o200000;
export const O_NOFOLLOW = 0o400000;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_WRONLY = 0o1;
export const O_RDONLY = 0;
export const O_NONBLOCK = 0o4000;

export const AT_FDCWD = -100;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_REMOVEDIR = 0x200;

/** openat2's resolve flags (linux/openat2.h). */
export const RESOLVE_NO_XDEV = 0x01;
/** No magic links (/proc/self/fd/N and the like) anywhere in the walk. */
export const RESOLVE_NO_MAGICLINKS = 0x02;
/** No symlinks anywhere in the walk (ELOOP), not only at the last component. */
export const RESOLVE_NO_SYMLINKS = 0x04;
/** The walk may not leave the directory it starts from ("..", absolute symlinks): EXDEV. */
export const RESOLVE_BENEATH = 0x08;

/** openat2 has no libc wrapper in glibc: it is reached through syscall(2). Same number on both. */
export const SYS_openat2 = 437;

/** listxattrat (Linux >= 6.13) has no glibc wrapper either; same number on x86_64 and aarch64. */
export const SYS_listxattrat = 465;
