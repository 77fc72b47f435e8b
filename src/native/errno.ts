// Linux errno numbers (asm-generic, the same on x86_64 and aarch64) for the codes the device layer
// and the data engine look at. Hard-coded because node:os constants.errno lacks some of them
// (ENOMEDIUM, for one) and libc calls through FFI give us bare numbers.

import os from "node:os";

export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENOTTY: 25,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  ERANGE: 34,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  ETIMEDOUT: 110,
  ENOMEDIUM: 123,
  EMEDIUMTYPE: 124,
} as const;

export type ErrnoName = keyof typeof ERRNO;

const NAMES = new Map<number, ErrnoName>(
  Object.entries(ERRNO).map(([name, value]) => [value, name as ErrnoName]),
);

/** The rest of the host's errno names (ENAMETOOLONG, EMFILE...), for messages. */
const HOST_NAMES = new Map<number, string>(Object.entries(os.constants.errno).map(([name, value]) => [value, name]));

/** "ENOSPC" for 28; the host's name for others; "E123"-style for a number nobody names. */
export function errnoName(errno: number): string {
  return NAMES.get(errno) ?? HOST_NAMES.get(errno) ?? `E${errno}`;
}

/** A failed libc call made through FFI; shaped like Node's system errors (code, errno, syscall). */
export class NativeError extends Error {
  readonly code: string;
  readonly errno: number;
  readonly syscall: string;

  constructor(syscall: string, errno: number) {
    const code = errnoName(errno);
    super(`${syscall} failed: ${code} (errno ${errno})`);
    this.name = "NativeError";
    this.code = code;
    this.errno = errno;
    this.syscall = syscall;
  }
}
