// Entry point to native calls. Under Bun (also inside a `bun build --compile` binary) libc is
// bound through bun:ffi; elsewhere every interface is null and callers take their portable path.
import type { DataRun, NativeApi, SeekApi } from "./types.ts";

export type { AtApi, AtCallsApi, DataRun, DirApi, DirListing, FsApi, IoctlApi, NativeApi, SeekApi, XattrApi } from "./types.ts";
export { listingName } from "./types.ts";
export { NativeError, ERRNO, errnoName } from "./errno.ts";

const NOT_BUN = "not available in this runtime (native calls need Bun: the compiled ndmpd binary or `bun`)";

export const NO_NATIVE: NativeApi = { runtime: "none", ioctl: null, seek: null, xattr: null, fs: null, at: null, reason: NOT_BUN };

let loading: Promise<NativeApi> | undefined;

export function isBun(): boolean {
  return typeof process !== "undefined" && typeof process.versions?.bun === "string";
}

/** Loads the native layer once per process; never throws (a failed bind means NO_NATIVE). */
export function loadNative(): Promise<NativeApi> {
  loading ??= bindNative();
  return loading;
}

async function bindNative(): Promise<NativeApi> {
  if (!isBun()) return NO_NATIVE;
  try {
    // A variable specifier keeps Node-side bundlers (vitest's vite) from trying to resolve it.
    const specifier = "bun:ffi";
    const ffi = (await import(specifier)) as typeof import("bun:ffi");
    const { bindLibc } = await import("./libc.ts");
    return bindLibc(ffi);
  } catch (error) {
    return { ...NO_NATIVE, reason: `binding libc through bun:ffi failed: ${String(error)}` };
  }
}

/**
 * The data runs of a sparse file, from SEEK_DATA/SEEK_HOLE. Holes at the end are not runs.
 * Note: filesystems without hole tracking report the whole file as one run, which is still correct.
 */
export function listDataRuns(seek: SeekApi, fd: number, size: number): DataRun[] {
  const runs: DataRun[] = [];
  let offset = 0;
  while (offset < size) {
    const start = seek.seekData(fd, offset);
    if (start === null || start >= size) break;
    const end = Math.min(seek.seekHole(fd, start), size);
    runs.push({ offset: start, length: end - start });
    offset = end;
  }
  return runs;
}
