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
import type { Targets } from "./targets.ts";

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

/** Where an archived object goes: the nlist entry (its index), and the path under a root. */
export interface Place {
  target: number;
  root: Buffer;
  rel: Buffer;
}

/**
 * Where an archived object goes: the most specific target whose original path is the object
 * or one of its ancestors (when RECURSIVE), or undefined if no target asks for it. The result
 * is rooted at the parent of the target's destination, so a restore writer confined to that
 * directory can create the destination itself and everything in it, and nothing else.
 */
export function placeFor(rel: Buffer, targets: Targets, recursive: boolean): Place | undefined {
  const s = rel.length === 1 && rel[0] === 0x2e ? Buffer.alloc(0) : rel;
  // The path itself, then (RECURSIVE) each ancestor up to the root: the first one an nlist
  // entry names is the most specific. A lookup (a binary search) per level, whatever the size
  // of the nlist.
  let target = targets.first(s);
  let rest: Buffer = Buffer.alloc(0);
  if (target < 0 && recursive) {
    for (let cut = s.lastIndexOf(0x2f); ; cut = cut <= 0 ? -1 : s.lastIndexOf(0x2f, cut - 1)) {
      const t = targets.first(cut < 0 ? Buffer.alloc(0) : s.subarray(0, cut));
      if (t >= 0) {
        target = t;
        rest = cut < 0 ? s : s.subarray(cut + 1);
        break;
      }
      if (cut <= 0) break;
    }
  }
  if (target < 0) return undefined;
  const base = targets.baseOf(target);
  if (base) {
    const o = targets.original(target);
    const parts = [o, rest].filter((x) => x.length > 0);
    const r = parts.length === 2 ? Buffer.concat([parts[0]!, Buffer.from("/"), parts[1]!]) : (parts[0] ?? Buffer.from("."));
    return { target, root: base, rel: r };
  }
  const anchor = anchorOf(targets, target);
  if (!anchor.name) return { target, root: anchor.root, rel: rest.length > 0 ? Buffer.from(rest) : Buffer.from(".") };
  return { target, root: anchor.root, rel: rest.length > 0 ? Buffer.concat([anchor.name, SLASH_BYTE, rest]) : Buffer.from(anchor.name) };
}

const SLASH_BYTE = Buffer.from("/");

/** A target's destination split into the writer's root and the name made in it (none for "/"). */
interface Anchor {
  root: Buffer;
  name: Buffer | undefined;
}

/** Per nlist, each target's Anchor, worked out once: placeFor runs for every archived object. */
const anchors = new WeakMap<Targets, Map<number, Anchor>>();

function anchorOf(targets: Targets, target: number): Anchor {
  let known = anchors.get(targets);
  if (!known) anchors.set(targets, (known = new Map()));
  let anchor = known.get(target);
  if (!anchor) {
    const dest = targets.destination(target)!.toString(L1);
    anchor = dest === "/" ? { root: Buffer.from("/"), name: undefined } : { root: Buffer.from(dirname(dest), L1), name: Buffer.from(basename(dest), L1) };
    known.set(target, anchor);
  }
  return anchor;
}
