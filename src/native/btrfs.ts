/**
 * btrfs snapshots behind one small interface, two ways:
 *  - "ioctl" (Bun: the compiled binary): BTRFS_IOC_SNAP_CREATE_V2 with BTRFS_SUBVOL_RDONLY on the
 *    directory that receives the snapshot, and BTRFS_IOC_SNAP_DESTROY to delete it, through the
 *    native layer's ioctl. No process is started and nothing else needs to be installed.
 *  - "btrfs-tool" (Node and Deno, which have no FFI here): `btrfs subvolume snapshot -r` and
 *    `btrfs subvolume delete` from btrfs-progs, which make the same two ioctls.
 * Both need CAP_SYS_ADMIN (root) for the delete unless the filesystem is mounted with
 * user_subvol_rm_allowed.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import type { IoctlApi, NativeApi } from "./types.ts";

export interface BtrfsApi {
  readonly via: "ioctl" | "btrfs-tool";
  /** A read-only snapshot of the subvolume whose root is `source`, as `parent`/`name`. */
  snapshot(source: Buffer, parent: Buffer, name: string): Promise<void>;
  /** Deletes the subvolume `parent`/`name`. */
  destroy(parent: Buffer, name: string): Promise<void>;
}

/** linux/btrfs.h: _IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2), 4096 bytes. */
export const BTRFS_IOC_SNAP_CREATE_V2 = 0x50009417;
/** _IOW(0x94, 15, struct btrfs_ioctl_vol_args), 4096 bytes. */
export const BTRFS_IOC_SNAP_DESTROY = 0x5000940f;
export const BTRFS_SUBVOL_RDONLY = 1 << 1;
const VOL_ARGS_SIZE = 4096;
/** btrfs_ioctl_vol_args_v2: fd, transid, flags, a 32-byte union, then name[BTRFS_SUBVOL_NAME_MAX + 1]. */
const V2_NAME_OFFSET = 56;
/** btrfs_ioctl_vol_args: fd, then name[BTRFS_PATH_NAME_MAX + 1]. */
const V1_NAME_OFFSET = 8;
/** statfs f_type of btrfs. */
export const BTRFS_SUPER_MAGIC = 0x9123683e;
/** The inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID). */
export const SUBVOL_ROOT_INO = 256n;

/** The argument of BTRFS_IOC_SNAP_CREATE_V2 (pure, for tests). */
export function snapCreateArgs(sourceFd: number, name: string, flags = BTRFS_SUBVOL_RDONLY): Uint8Array {
  const buf = Buffer.alloc(VOL_ARGS_SIZE);
  buf.writeBigInt64LE(BigInt(sourceFd), 0);
  buf.writeBigUInt64LE(BigInt(flags), 16);
  putName(buf, V2_NAME_OFFSET, name);
  return buf;
}

/** The argument of BTRFS_IOC_SNAP_DESTROY (pure, for tests). */
export function snapDestroyArgs(name: string): Uint8Array {
  const buf = Buffer.alloc(VOL_ARGS_SIZE);
  putName(buf, V1_NAME_OFFSET, name);
  return buf;
}

function putName(buf: Buffer, offset: number, name: string): void {
  const bytes = Buffer.from(name, "utf8");
  if (bytes.length === 0 || bytes.length >= VOL_ARGS_SIZE - offset || bytes.includes(0) || bytes.includes(0x2f)) {
    throw new Error(`not a snapshot name: ${JSON.stringify(name)}`);
  }
  bytes.copy(buf, offset);
}

export function btrfsApi(native: NativeApi): BtrfsApi {
  return native.ioctl ? ioctlBtrfs(native.ioctl) : toolBtrfs();
}

export function ioctlBtrfs(ioctl: IoctlApi): BtrfsApi {
  return {
    via: "ioctl",
    async snapshot(source, parent, name) {
      const src = fs.openSync(source, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      try {
        const dst = fs.openSync(parent, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
        try {
          ioctl.ioctl(dst, BTRFS_IOC_SNAP_CREATE_V2, snapCreateArgs(src, name));
        } finally {
          fs.closeSync(dst);
        }
      } finally {
        fs.closeSync(src);
      }
    },
    async destroy(parent, name) {
      const dir = fs.openSync(parent, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      try {
        ioctl.ioctl(dir, BTRFS_IOC_SNAP_DESTROY, snapDestroyArgs(name));
      } finally {
        fs.closeSync(dir);
      }
    },
  };
}

/** How long a btrfs command may take (a commit on a busy filesystem can take a while). */
const TOOL_TIMEOUT_MS = 120_000;

export function toolBtrfs(tool = "btrfs"): BtrfsApi {
  const runTool = (args: string[]) =>
    new Promise<void>((resolve, reject) => {
      execFile(tool, args, { timeout: TOOL_TIMEOUT_MS, encoding: "utf8" }, (error, _out, stderr) => {
        if (!error) return resolve();
        const why = stderr.trim() || error.message;
        reject(new Error(`${tool} ${args.slice(0, 2).join(" ")}: ${why}`));
      });
    });
  // Child process arguments are strings: paths that are not UTF-8 need the ioctl path.
  const str = (b: Buffer) => b.toString("utf8");
  return {
    via: "btrfs-tool",
    snapshot: (source, parent, name) => runTool(["subvolume", "snapshot", "-r", str(source), `${str(parent)}/${name}`]),
    destroy: (parent, name) => runTool(["subvolume", "delete", `${str(parent)}/${name}`]),
  };
}
