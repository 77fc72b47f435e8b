import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { aclTextToXattr, aclXattrToText } from "../../../../formats/tar/acl.ts";
import { readAll } from "../../../../formats/tar/reader.ts";
import { encodeHeader, endOfArchive } from "../../../../formats/tar/writer.ts";

// getfattr -e hex of a file after `setfacl -m u:1000:r,g:70000:rw`.
const ACCESS = Buffer.from("0200000001000600ffffffff02000400e803000004000400ffffffff080006007011010010000600ffffffff20000400ffffffff", "hex");

/** Name -> id from the host's databases (getent), as the engine's resolver does. */
function hostIds(kind: "user" | "group", name: string): number | undefined {
  const r = spawnSync("getent", [kind === "user" ? "passwd" : "group", name]).stdout.toString();
  const id = r.split(":")[2];
  return id ? Number(id) : undefined;
}

const haveTools = spawnSync("sh", ["-c", "command -v setfacl && command -v getfacl && command -v tar"]).status === 0;

describe("POSIX ACLs in pax archives", () => {
  it("binary xattr <-> SCHILY.acl text, with numeric ids", () => {
    const text = aclXattrToText(ACCESS)!;
    expect(text).toBe("user::rw-\nuser:1000:r--\ngroup::r--\ngroup:70000:rw-\nmask::rw-\nother::r--\n");
    expect(aclTextToXattr(text)).toEqual(ACCESS);
    // GNU tar's own text (names), star's name:perm:id form, commas, short tags, any order.
    expect(aclTextToXattr("u::rw-,g:70000:rw-,user:bob:r--:1000,o::r--,m::rw-,g::r--")).toEqual(ACCESS);
    expect(aclTextToXattr("user:bob:r--\n")).toBeUndefined();
    expect(aclXattrToText(Buffer.from("01000000", "hex"))).toBeUndefined();
  });

  it("our writer emits SCHILY.acl.access and our reader gives the xattr back", () => {
    const entry = {
      path: Buffer.from("f"),
      type: "file" as const,
      mode: 0o664,
      uid: 0,
      gid: 0,
      size: 0,
      mtime: { sec: 1, nsec: 0 },
      xattrs: [[Buffer.from("system.posix_acl_access"), ACCESS]] as Array<[Buffer, Buffer]>,
    };
    const archive = Buffer.concat([encodeHeader(entry), endOfArchive()]);
    expect(archive.includes(Buffer.from("SCHILY.acl.access=user::rw-\nuser:1000:r--"))).toBe(true);
    const ev = readAll(archive).find((e) => e.kind === "entry")!;
    expect(ev.kind === "entry" && ev.entry.xattrs).toEqual([[Buffer.from("system.posix_acl_access"), ACCESS]]);
  });

  it.runIf(haveTools || !!process.env.CI)("GNU tar restores the ACLs we write, and we read the ones it writes", () => {
    const dir = mkdtempSync(join(tmpdir(), "ndmpd-acl-"));
    try {
      const src = join(dir, "src");
      mkdirSync(src);
      writeFileSync(join(src, "f"), "x");
      expect(spawnSync("setfacl", ["-m", "u:1000:r,g:70000:rw", join(src, "f")]).status).toBe(0);
      // GNU tar writes the user name where one exists: resolve it the way the engine does.
      const resolve = (kind: "user" | "group", name: string) => hostIds(kind, name);
      // GNU tar -> our reader.
      const gnu = join(dir, "gnu.tar");
      expect(spawnSync("tar", ["--acls", "--format=posix", "-C", src, "-cf", gnu, "f"]).status).toBe(0);
      const ours = readAll(readFileSync(gnu), { resolveAclName: resolve }).find((e) => e.kind === "entry")!;
      expect(ours.kind === "entry" && ours.entry.xattrs).toEqual([[Buffer.from("system.posix_acl_access"), ACCESS]]);
      // Our writer -> GNU tar --acls.
      const mine = join(dir, "ours.tar");
      const e = { path: Buffer.from("g"), type: "file" as const, mode: 0o664, uid: 0, gid: 0, size: 0, mtime: { sec: 1, nsec: 0 }, xattrs: [[Buffer.from("system.posix_acl_access"), ACCESS]] as Array<[Buffer, Buffer]> };
      writeFileSync(mine, Buffer.concat([encodeHeader(e), endOfArchive()]));
      const out = join(dir, "out");
      mkdirSync(out);
      const x = spawnSync("tar", ["--acls", "-xf", mine, "-C", out]);
      expect(x.status, x.stderr.toString()).toBe(0);
      const acl = spawnSync("getfacl", ["-n", "--omit-header", join(out, "g")]).stdout.toString();
      expect(acl).toContain("user:1000:r--");
      expect(acl).toContain("group:70000:rw-");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
