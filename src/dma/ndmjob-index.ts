/**
 * An ndmjob index file (`ndmjob -c -I FILE`, shared/interop/ndmjob.md): what `ndmpd recover
 * --index FILE` takes from it to restore paths of an image ndmjob wrote by direct access. Its
 * path-style file history lines `DHf NAME UNIX STAT @FH_INFO` give each path's offset in the
 * image; names escape bytes <= ' ', > 0x7e and '%' as %XX. Other lines are not needed here.
 */

/** Path (latin1 of its bytes, "/" first) -> fh_info. */
export function readNdmjobIndex(text: string): Map<string, bigint> {
  const offsets = new Map<string, bigint>();
  for (const line of text.split("\n")) {
    const m = /^DHf (\S+) UNIX .* @(\d+)$/.exec(line);
    if (!m) continue;
    const name = Buffer.from(m[1]!.replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), "latin1").toString("latin1");
    offsets.set(name.startsWith("/") ? name : "/" + name, BigInt(m[2]!));
  }
  return offsets;
}
