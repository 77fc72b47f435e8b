/**
 * What a job takes: FILES / EXCLUDE for backups (digest §4.4), and the nlist for recoveries
 * (digest §4.2): which archived paths go where.
 *
 * Paths here are relative to the backup root, "/"-separated bytes without a leading "/"
 * ("." is the root). Patterns are matched with picomatch on the latin1 view of the bytes, so
 * that any byte in a name matches itself and nothing is lost in a conversion.
 */
import { basename, dirname } from "node:path/posix";
import picomatch from "picomatch";

const L1 = "latin1" as const;

/** Normalizes a user path ("/a//b/", "./a", "a/./b") to the relative form; "" for the root. */
export function normalizeRel(p: Buffer): Buffer {
  const parts = p
    .toString(L1)
    .split("/")
    .filter((c) => c !== "" && c !== ".");
  return Buffer.from(parts.join("/"), L1);
}

/** Splits a comma-separated EXCLUDE value; `\,` escapes a comma (NetApp's convention). */
export function splitPatterns(value: string): string[] {
  const out: string[] = [];
  let cur = "";
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === "\\" && value[i + 1] === ",") {
      cur += ",";
      i++;
    } else if (c === ",") {
      if (cur.trim()) out.push(cur.trim());
      cur = "";
    } else cur += c;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

/**
 * Splits a FILES value into paths: one per pair (ndmjob) or several separated by spaces
 * (illumos). A path with spaces is written with `\ ` for each space or inside double quotes
 * (`"My Documents/a b"`); `\"` and `\\` stand for a quote and a backslash, and any other
 * backslash is kept as it is (names are bytes: nothing else is decoded).
 */
export function splitFiles(value: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let cur: number[] = [];
  let quoted = false;
  const end = () => {
    if (cur.length > 0) out.push(Buffer.from(cur));
    cur = [];
  };
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    const next = value[i + 1];
    if (c === 0x5c && (next === 0x20 || next === 0x22 || next === 0x5c)) {
      cur.push(next);
      i++;
    } else if (c === 0x22) quoted = !quoted;
    else if ((c === 0x20 || c === 0x09) && !quoted) end();
    else cur.push(c);
  }
  end();
  return out;
}

/**
 * EXCLUDE: a pattern without "/" matches any object of that base name at any depth (like
 * `tar --exclude`); a pattern with "/" matches the relative path from the root (a leading
 * "/" anchors it there). An excluded directory takes its subtree with it.
 */
export function excludeMatcher(patterns: string[]): (rel: Buffer) => boolean {
  if (patterns.length === 0) return () => false;
  const byName = patterns.filter((p) => !p.replace(/^\//, "").includes("/") && !p.startsWith("/"));
  const byPath = patterns.filter((p) => !byName.includes(p)).map((p) => p.replace(/^\/+/, ""));
  const opts = { dot: true, nocase: false };
  const nameMatch = byName.length ? picomatch(byName, opts) : () => false;
  const pathMatch = byPath.length ? picomatch(byPath, opts) : () => false;
  return (rel) => {
    const s = rel.toString(L1);
    return nameMatch(basename(s)) || pathMatch(s);
  };
}

/**
 * FILES: the backup takes these paths (and their subtrees) plus the directories leading to
 * them, so a restore recreates the structure. No FILES means everything.
 */
export function includeMatcher(files: Buffer[]): ((rel: Buffer, isDir: boolean) => boolean) | undefined {
  const wanted = files.map(normalizeRel).filter((f) => f.length > 0);
  if (files.length === 0 || wanted.length < files.length) return undefined; // "/" or "" = all
  const list = wanted.map((w) => w.toString(L1));
  return (rel, isDir) => {
    const s = rel.toString(L1);
    if (s === ".") return true;
    for (const w of list) {
      if (s === w || s.startsWith(w + "/")) return true; // the path or inside it
      if (isDir && w.startsWith(s + "/")) return true; // a directory on the way to it
    }
    return false;
  };
}

/**
 * What a backup takes, as plain data (it crosses to the scan worker, where a function cannot
 * go): EXCLUDE patterns and FILES paths.
 */
export interface Selection {
  exclude: string[];
  files: Buffer[];
}

/** The walk filter of a Selection; undefined when it takes everything. */
export function selectionFilter(sel: Selection | undefined): ((rel: Buffer, isDir: boolean) => boolean) | undefined {
  if (!sel || (sel.exclude.length === 0 && sel.files.length === 0)) return undefined;
  const exclude = excludeMatcher(sel.exclude);
  const include = includeMatcher(sel.files);
  return (rel, isDir) => !exclude(rel) && (include ? include(rel, isDir) : true);
}

/** One nlist entry reduced to what recovery needs. */
export interface Target {
  /** Archived path, relative ("" = the whole image). */
  original: Buffer;
  /** Absolute destination of that path. */
  destination: Buffer;
  /** What LOG_FILE reports for it (the DMA's original_path, unchanged). */
  reportName: Buffer;
  node: bigint;
  fhInfo: bigint;
  /** Set when at least one archived object matched it. */
  found: boolean;
  /** The first problem writing it, if any. */
  error?: string;
  /** That problem as LOG_FILE reports it (RecoveryStatus). */
  status?: number;
  /**
   * RECOVER_FULL_PATHS: the directory the original path is recreated under (the destination is
   * base/original); the writer is confined to it rather than to the destination's parent.
   */
  base?: Buffer;
}

/** Targets by archived path (the first of equal ones wins), kept per nlist and rebuilt if it grew. */
const indexes = new WeakMap<Target[], { size: number; byPath: Map<string, Target> }>();
function targetIndex(targets: Target[]): Map<string, Target> {
  const known = indexes.get(targets);
  if (known && known.size === targets.length) return known.byPath;
  const byPath = new Map<string, Target>();
  for (const t of targets) {
    const k = t.original.toString(L1);
    if (!byPath.has(k)) byPath.set(k, t);
  }
  indexes.set(targets, { size: targets.length, byPath });
  return byPath;
}

/**
 * Where an archived object goes: the most specific target whose original path is the object
 * or one of its ancestors (when RECURSIVE), or undefined if no target asks for it. The result
 * is rooted at the parent of the target's destination, so a restore writer confined to that
 * directory can create the destination itself and everything in it, and nothing else.
 */
export function placeFor(
  rel: Buffer,
  targets: Target[],
  recursive: boolean,
): { target: Target; root: Buffer; rel: Buffer } | undefined {
  const s = rel.toString(L1) === "." ? "" : rel.toString(L1);
  // The path itself, then (RECURSIVE) each ancestor up to the root: the first one an nlist
  // entry names is the most specific. A lookup per level, whatever the size of the nlist.
  const index = targetIndex(targets);
  let best: { target: Target; rest: string } | undefined;
  const exact = index.get(s);
  if (exact) best = { target: exact, rest: "" };
  else if (recursive) {
    for (let cut = s.lastIndexOf("/"); ; cut = s.lastIndexOf("/", cut - 1)) {
      const t = index.get(cut < 0 ? "" : s.slice(0, cut));
      if (t) {
        best = { target: t, rest: cut < 0 ? s : s.slice(cut + 1) };
        break;
      }
      if (cut <= 0) break;
    }
  }
  if (!best) return undefined;
  const base = best.target.base;
  if (base) {
    const o = best.target.original.toString(L1);
    const rel = [o, best.rest].filter((x) => x !== "").join("/");
    return { target: best.target, root: base, rel: Buffer.from(rel || ".", L1) };
  }
  const dest = best.target.destination.toString(L1);
  if (dest === "/") return { target: best.target, root: Buffer.from("/"), rel: Buffer.from(best.rest || ".", L1) };
  const name = basename(dest);
  return {
    target: best.target,
    root: Buffer.from(dirname(dest), L1),
    rel: Buffer.from(best.rest ? `${name}/${best.rest}` : name, L1),
  };
}
