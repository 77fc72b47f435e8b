/**
 * GNU tar's directory listing for incremental archives (the GNU.dumpdir pax record, or the
 * body of a type "D" member), as `tar --listed-incremental` writes and reads it: one record per
 * name in the directory, each a control letter, the name's bytes and a NUL, sorted by name
 * bytewise, the whole ended by one more NUL:
 *
 *   Y name   a non-directory that this archive holds
 *   N name   a non-directory that exists but is not in this archive (unchanged since the base)
 *   D name   a subdirectory (its own member follows, with its own listing)
 *   R/T/X    renames (GNU tar only writes these for directories it found moved; we never write
 *            them: a moved directory is backed up whole under its new name instead)
 *
 * On extraction, whatever is in the directory on disk and not listed (or listed as D but not a
 * directory, or as Y but a directory) was deleted since the base and is removed.
 */

export type DumpdirLetter = "Y" | "N" | "D";

export interface DumpdirChild {
  name: Buffer;
  letter: DumpdirLetter;
}

export function encodeDumpdir(children: DumpdirChild[]): Buffer {
  const sorted = [...children].sort((a, b) => Buffer.compare(a.name, b.name));
  const parts: Buffer[] = [];
  for (const c of sorted) {
    if (c.name.length === 0 || c.name.includes(0) || c.name.includes(0x2f)) throw new RangeError("a dumpdir name must be one non-empty path component");
    parts.push(Buffer.from(c.letter, "latin1"), c.name, Buffer.alloc(1));
  }
  parts.push(Buffer.alloc(1));
  return Buffer.concat(parts);
}

/** name (latin1 key) -> letter; the R/T/X records are returned apart. Throws on a malformed listing. */
export function parseDumpdir(buf: Buffer): { names: Map<string, string>; renames: number } {
  const names = new Map<string, string>();
  let renames = 0;
  let i = 0;
  while (i < buf.length && buf[i] !== 0) {
    const end = buf.indexOf(0, i);
    if (end < 0) throw new RangeError("dumpdir record without its terminating NUL");
    const letter = String.fromCharCode(buf[i]!);
    const name = buf.subarray(i + 1, end).toString("latin1");
    if (letter === "Y" || letter === "N" || letter === "D") names.set(name, letter);
    else if (letter === "R" || letter === "T" || letter === "X") renames++;
    else throw new RangeError(`dumpdir record with unknown letter ${JSON.stringify(letter)}`);
    i = end + 1;
  }
  return { names, renames };
}
