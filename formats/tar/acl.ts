/**
 * POSIX ACLs in pax archives. Linux keeps an ACL as the xattr `system.posix_acl_access` (or
 * `_default`) in a binary form; GNU tar, star and libarchive carry ACLs as the text records
 * `SCHILY.acl.access` / `SCHILY.acl.default`, one entry per line ("user::rw-",
 * "user:1000:r--", "group::r-x", "mask::rwx", "other::r--"). We write that text, with
 * numeric ids (so an ACL means the same uid on any host, like --numeric-owner), and read it
 * back into the binary xattr, so the rest of the program sees ACLs as xattrs only.
 */

export const ACL_XATTRS: Record<string, string> = {
  "system.posix_acl_access": "SCHILY.acl.access",
  "system.posix_acl_default": "SCHILY.acl.default",
};
export const ACL_KEYWORDS: Record<string, string> = {
  "SCHILY.acl.access": "system.posix_acl_access",
  "SCHILY.acl.default": "system.posix_acl_default",
};

const VERSION = 2;
const TAG = { USER_OBJ: 0x01, USER: 0x02, GROUP_OBJ: 0x04, GROUP: 0x08, MASK: 0x10, OTHER: 0x20 } as const;
const NO_ID = 0xffff_ffff;

function perms(p: number): string {
  return (p & 4 ? "r" : "-") + (p & 2 ? "w" : "-") + (p & 1 ? "x" : "-");
}

/** Binary xattr value -> text; undefined if the value is not a version-2 ACL. */
export function aclXattrToText(value: Buffer): string | undefined {
  if (value.length < 4 || (value.length - 4) % 8 !== 0 || value.readUInt32LE(0) !== VERSION) return undefined;
  const lines: string[] = [];
  for (let off = 4; off < value.length; off += 8) {
    const tag = value.readUInt16LE(off);
    const p = perms(value.readUInt16LE(off + 2));
    const id = value.readUInt32LE(off + 4);
    switch (tag) {
      case TAG.USER_OBJ:
        lines.push(`user::${p}`);
        break;
      case TAG.USER:
        lines.push(`user:${id}:${p}`);
        break;
      case TAG.GROUP_OBJ:
        lines.push(`group::${p}`);
        break;
      case TAG.GROUP:
        lines.push(`group:${id}:${p}`);
        break;
      case TAG.MASK:
        lines.push(`mask::${p}`);
        break;
      case TAG.OTHER:
        lines.push(`other::${p}`);
        break;
      default:
        return undefined;
    }
  }
  return lines.join("\n") + "\n";
}

/** Looks up a user or group name (the codec is pure: the caller knows the host's databases). */
export type AclNameResolver = (kind: "user" | "group", name: string) => number | undefined;

/**
 * Text -> binary xattr value. Accepts newline- or comma-separated entries, the short tags
 * (u, g, m, o), and star's "user:name:rw-:1000" form (the trailing id wins over the name).
 * A name without a numeric id is looked up with `resolve`; if it cannot be, the whole ACL is
 * refused (undefined) rather than applied with a wrong id.
 */
export function aclTextToXattr(text: string, resolve?: AclNameResolver): Buffer | undefined {
  const entries: Array<[tag: number, perm: number, id: number]> = [];
  for (const raw of text.split(/[\n,]/)) {
    const line = raw.replace(/#.*$/, "").trim();
    if (!line) continue;
    const f = line.split(":");
    if (f.length < 3) return undefined;
    const kind = f[0]!;
    const qual = f[1]!;
    const permText = f[2]!;
    if (!/^[r-][w-][x-]$/.test(permText)) return undefined;
    const perm = (permText[0] === "r" ? 4 : 0) | (permText[1] === "w" ? 2 : 0) | (permText[2] === "x" ? 1 : 0);
    let tag: number;
    if (kind === "user" || kind === "u") tag = qual ? TAG.USER : TAG.USER_OBJ;
    else if (kind === "group" || kind === "g") tag = qual ? TAG.GROUP : TAG.GROUP_OBJ;
    else if (kind === "mask" || kind === "m") tag = TAG.MASK;
    else if (kind === "other" || kind === "o") tag = TAG.OTHER;
    else return undefined;
    let id = NO_ID;
    if (qual !== "") {
      const numeric = /^\d+$/.test(f[3] ?? "") ? f[3]! : qual;
      const found = /^\d+$/.test(numeric) ? Number(numeric) : resolve?.(tag === TAG.USER ? "user" : "group", qual);
      if (found === undefined) return undefined;
      id = found;
    }
    entries.push([tag, perm, id]);
  }
  if (entries.length === 0) return undefined;
  // The kernel wants entries ordered by tag, then by id.
  entries.sort((a, b) => a[0] - b[0] || a[2] - b[2]);
  const out = Buffer.alloc(4 + entries.length * 8);
  out.writeUInt32LE(VERSION, 0);
  entries.forEach(([tag, perm, id], i) => {
    out.writeUInt16LE(tag, 4 + i * 8);
    out.writeUInt16LE(perm, 6 + i * 8);
    out.writeUInt32LE(id, 8 + i * 8);
  });
  return out;
}
