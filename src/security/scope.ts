/**
 * Per-user scopes ([[user]] paths, devices, read_only): what an authenticated user may back up,
 * restore over, and open. Paths are compared after resolving symlinks, so a link inside a
 * scope that points outside it leads outside it; the checks run before any byte moves.
 */
import { realpathSync } from "node:fs";
import { ErrorCode } from "../protocol/codes.ts";
import { Refusal } from "./refusal.ts";
import { joinPath, showPath, splitPath, SLASH } from "../engine/fsutil.ts";

export interface UserScope {
  /** Backup roots and restore destinations must lie inside one of these (absolute). */
  paths?: string[];
  /** The [[tape]] and [[changer]] names the user may open. */
  devices?: string[];
  /** Backup only: never a recovery. */
  readOnly: boolean;
}

const DOT = Buffer.from(".");
const DOTDOT = Buffer.from("..");

/**
 * Where an absolute path leads: the real path of its longest existing prefix, then the rest
 * (what a restore would create).
 */
export function resolveForScope(path: Buffer): Buffer {
  if (path[0] !== SLASH) throw new Refusal(ErrorCode.ILLEGAL_ARGS_ERR, `${showPath(path)} is not an absolute path`);
  const parts = splitPath(path).filter((p) => p.length > 0 && !p.equals(DOT));
  // ".." after a symlink means its target's parent to the kernel, and the lexical parent to a
  // path library: a scoped path has none, so both readings are the same.
  if (parts.some((p) => p.equals(DOTDOT))) throw new Refusal(ErrorCode.ILLEGAL_ARGS_ERR, `${showPath(path)}: ".." is not allowed in a scoped path`);
  for (let n = parts.length; n >= 0; n--) {
    const head = parts.slice(0, n).reduce((acc, p) => joinPath(acc, p), Buffer.from("/"));
    let real: Buffer;
    try {
      real = realpathSync.native(head, { encoding: "buffer" }); // the kernel's resolution
    } catch {
      continue; // this prefix does not exist (yet): try a shorter one
    }
    return parts.slice(n).reduce((acc, p) => joinPath(acc, p), real);
  }
  return Buffer.from("/"); // unreachable: "/" always exists
}

/** True when `path` is `root` or below it (both resolved, byte-wise). */
export function within(path: Buffer, root: Buffer): boolean {
  if (root.length === 1 && root[0] === SLASH) return true;
  return path.equals(root) || (path.length > root.length && path[root.length] === SLASH && path.subarray(0, root.length).equals(root));
}

/** Where `path` leads, if it lies inside the scope's paths; a Refusal otherwise. `what` names it. */
export function requireInScope(scope: UserScope | undefined, user: string, path: Buffer, what: string): void {
  if (!scope?.paths) return;
  const real = resolveForScope(path);
  const roots = scope.paths.map((p) => {
    try {
      return realpathSync.native(p, { encoding: "buffer" });
    } catch {
      return Buffer.from(p); // a scope path that does not exist (yet) is itself
    }
  });
  if (roots.some((r) => within(real, r))) return;
  const shown = real.equals(path) ? showPath(path) : `${showPath(path)} (which leads to ${showPath(real)})`;
  throw new Refusal(ErrorCode.NOT_AUTHORIZED_ERR, `user ${user} may not ${what} ${shown}: outside its paths ${scope.paths.join(", ")}`, {
    paths: [showPath(path)],
  });
}

export function requireDevice(scope: UserScope | undefined, user: string, device: string): void {
  if (!scope?.devices || scope.devices.includes(device)) return;
  throw new Refusal(ErrorCode.NOT_AUTHORIZED_ERR, `user ${user} may not open ${device}: not among its devices`, { devices: [device] });
}

export function requireRecover(scope: UserScope | undefined, user: string, paths: Buffer[]): void {
  if (!scope?.readOnly) return;
  throw new Refusal(ErrorCode.NOT_AUTHORIZED_ERR, `user ${user} is read-only: backups only, no recovery`, { paths: paths.map(showPath) });
}
