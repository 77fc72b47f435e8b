/**
 * `ndmpd remote duplicate` (tape duplication, mover to mover) against compiled servers in one
 * private network namespace: A on 127.0.0.1:10000 with drives vt0 and vt1, B on 127.0.0.1:10002
 * with drive lt0 in a three-slot virtual library of 8 MiB cartridges, ndmjob's daemon on 10001.
 *  - A cartridge with three backups (vt0) duplicated to B across two cartridges: the first takes
 *    two backups, the third goes whole onto the second; every image is the same records (count,
 *    sizes, bytes); the labels carry new media ids and say what they copy; the catalog knows
 *    the copies: `ndmpd recover` restores from a copy with direct access, `ndmjob -x` reads one.
 *  - --from-slot: B's first copy loaded from its slot and copied on to A.
 *  - Within one server (vt0 -> vt1, two sessions joined by IPC), the source listening.
 *  - With ndmjob's tape agent as the destination mover, and as the source mover; with a record
 *    size ndmjob's mover accepts but never fills (256 KiB), a clear failure after 20 s, not a hang.
 *  - A duplication whose DMA is killed, and one onto a cartridge that is not blank: both
 *    servers stay usable.
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeLabel } from "../../src/dma/label.ts";
import { createNetns, type Netns } from "../helpers/netns.ts";
import { jobSucceeded, ndmjob, simtapeFile, startNdmjobDaemon, type NdmjobDaemon } from "../helpers/ndmjob.ts";
import { BINARY, havePeers } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";
import { compareTrees, pattern } from "../helpers/tree.ts";
import { vtapeFiles } from "../helpers/vtape.ts";

const ready = havePeers("binary", "ndmjob", "unshare");
const A = "127.0.0.1:10000";
const B = "127.0.0.1:10002";
const NJ = "127.0.0.1:10001";
const D = `${A}/4,${USER},${PASSWORD}`;

type Events = Array<Record<string, any>>;
const events = (stdout: string): Events => stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
const endOf = (stdout: string): Record<string, any> | undefined => events(stdout).find((e) => e.event === "end");
/** Tape files without the empty one a cut-off backup leaves at the end. */
const files = (path: string) => {
  const f = vtapeFiles(path);
  while (f.length > 0 && f.at(-1)!.length === 0) f.pop();
  return f;
};
const label = (file: Buffer[]) => decodeLabel(file[0]!)!;

describe.runIf(ready)("ndmpd remote duplicate", () => {
  let ns: Netns;
  let a: RunningServer;
  let b: RunningServer;
  let daemon: NdmjobDaemon;
  const W = mkdtempSync(join(tmpdir(), "ndmpd-dup-"));
  const STATE = join(W, "state");
  const trees = [1, 2, 3].map((k) => join(W, `t${k}`));

  const env = { ...process.env, NDMPD_PASSWORD: PASSWORD, NDMPD_TAPE_PASSWORD: "ndmp" };
  const cli = (...args: string[]) => {
    const v = [...ns.prefix(), BINARY, ...args];
    return run(v[0]!, v.slice(1), { timeoutMs: 50_000, env });
  };
  const duplicate = (...args: string[]) => cli("remote", "duplicate", "--state-dir", STATE, "--json", ...args);
  const vt = (name: string) => join(a.dir, `${name}.tape`);
  const cart = (slot: number) => join(b.dir, "lib", `NDMP00${slot}L8.tape`);

  beforeAll(async () => {
    ns = await createNetns();
    // Three trees of about 2.5 MiB: two backups fit on one 8 MiB cartridge, three do not.
    for (const [k, t] of trees.entries()) {
      mkdirSync(join(t, "d"), { recursive: true });
      writeFileSync(join(t, "big"), pattern(2 * 1024 * 1024 + 512 * 1024, k + 1));
      for (let i = 0; i < 20; i++) writeFileSync(join(t, "d", `f${i}`), pattern(1000 + i * 37, 100 * k + i));
    }
    const cfg = (port: number, rest: string) =>
      `[server]\nlisten = "127.0.0.1:${port}"\nstate_dir = "$DIR/s"\nauth_failure_delay_ms = 0\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n` + rest;
    [a, b] = await Promise.all([
      startServer({ netns: ns, config: cfg(10000, `[[tape]]\nname = "vt0"\npath = "$DIR/vt0.tape"\n[[tape]]\nname = "vt1"\npath = "$DIR/vt1.tape"\n[[tape]]\nname = "vt2"\npath = "$DIR/vt2.tape"\n[[tape]]\nname = "vt3"\npath = "$DIR/vt3.tape"\n[[tape]]\nname = "vt4"\npath = "$DIR/vt4.tape"\n`) }),
      startServer({
        netns: ns,
        config: cfg(10002, `[[tape]]\nname = "lt0"\n[[changer]]\nname = "lib0"\npath = "$DIR/lib"\nslots = 3\ndrives = ["lt0"]\ncapacity = "8MiB"\n`),
      }),
    ]);
    daemon = await startNdmjobDaemon(ns, 10001);
    for (const t of trees) {
      // 64 KiB records: ndmjob's DMA reads records of at most -b 128 (x 512 bytes).
      const r = await cli("remote", "backup", t, "--data", A, "--device", "vt0", "--state-dir", STATE, "--record-size", "65536");
      expect(r.code, r.stderr + r.stdout).toBe(0);
    }
  }, 180_000);

  afterAll(async () => {
    await daemon?.stop();
    await a?.stop();
    await b?.stop();
    await ns?.stop();
    rmSync(W, { recursive: true, force: true });
  });

  it("three backups onto B's library, across two cartridges: the same records, new media ids, restorable by us and by ndmjob", async () => {
    const r = await duplicate("--from", `${A}/vt0`, "--to", `${B}/lt0`, "--slot", "1,2");
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(endOf(r.stdout)).toMatchObject({ ok: true, files: 6, cartridges: 2 });

    const src = files(vt("vt0"));
    const c1 = files(cart(1));
    const c2 = files(cart(2));
    expect(src.length).toBe(6);
    expect(c1.length).toBe(4);
    expect(c2.length).toBe(2);
    // Images: record for record.
    const same = (x: Buffer[], y: Buffer[]) => x.length === y.length && x.every((rec, i) => rec.equals(y[i]!));
    expect(same(c1[1]!, src[1]!)).toBe(true);
    expect(same(c1[3]!, src[3]!)).toBe(true);
    expect(same(c2[1]!, src[5]!)).toBe(true);
    expect(new Set(src[1]!.map((x) => x.length))).toEqual(new Set([64 * 1024]));
    // Labels: the same backups, each cartridge its own new media id.
    const orig = label(src[0]!).mediaId;
    const l = [label(c1[0]!), label(c1[2]!), label(c2[0]!)];
    expect(l.map((x) => x.copyOf)).toEqual([`${orig}#1`, `${orig}#2`, `${orig}#3`]);
    expect(l.map((x) => x.seq)).toEqual([1, 2, 1]);
    expect(l[0]!.mediaId).toBe(l[1]!.mediaId);
    expect(new Set([orig, l[0]!.mediaId, l[2]!.mediaId]).size).toBe(3);
    expect(l.map((x) => x.root)).toEqual(trees);

    // ndmjob -x reads the copy in B's drive (the second cartridge: backup 3's image is tape file 1).
    const x = await ndmjob(ns, ["-x", "-v", "-D", D, "-T", `${B}/4,${USER},${PASSWORD}`, "-f", "lt0", "-b", "128", "-m", "+1", "-B", "tar", "-C", join(W, "x3")]);
    expect(jobSucceeded(x.stdout), x.stdout).toBe(true);
    expect(await compareTrees(trees[2]!, join(W, "x3"))).toEqual([]);

    // The catalog learned the copies: a restore of one path from the first copy reads it directly.
    const c1cfg = join(W, "c1.toml");
    writeFileSync(c1cfg, `[server]\nstate_dir = "${STATE}"\n[[tape]]\nname = "c1"\npath = "${cart(1)}"\n`);
    const rec = await cli("recover", "--config", c1cfg, "--file", "2", "--to", join(W, "r2"), "--json", "/d/f7");
    expect(rec.code, rec.stderr + rec.stdout).toBe(0);
    expect(endOf(rec.stdout)).toMatchObject({ ok: true, direct: true });
    expect(readFileSync(join(W, "r2/d/f7")).equals(readFileSync(join(trees[1]!, "d/f7")))).toBe(true);
    const list = await cli("list", "--config", c1cfg, "--json");
    expect(JSON.parse(list.stdout)).toMatchObject({ source: "catalog", mediaId: l[0]!.mediaId, backups: [{ seq: 1, root: trees[0] }, { seq: 2, root: trees[1] }] });
  }, 180_000);

  it("--from-slot loads the source cartridge from its library first: the first copy, copied again to A", async () => {
    const r = await duplicate("--from", `${B}/lt0`, "--from-slot", "1", "--to", `${A}/vt4`);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(endOf(r.stdout)).toMatchObject({ ok: true, files: 4, cartridges: 1 });
    const c1 = files(cart(1));
    const v4 = files(vt("vt4"));
    expect(v4.length).toBe(4);
    for (const i of [1, 3]) expect(Buffer.concat(v4[i]!).equals(Buffer.concat(c1[i]!))).toBe(true);
    expect(label(v4[2]!).copyOf).toBe(`${label(c1[0]!).mediaId}#2`);
  });

  it("within one server (vt0 -> vt1): two sessions joined by IPC, the source mover listening", async () => {
    const r = await duplicate("--from", `${A}/vt0`, "--to", `${A}/vt1`, "--listen", "src");
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(events(r.stdout)[0]).toMatchObject({ event: "start", connection: "IPC" });
    expect(endOf(r.stdout)).toMatchObject({ ok: true, files: 6, cartridges: 1 });
    const src = files(vt("vt0"));
    const dst = files(vt("vt1"));
    expect(dst.length).toBe(6);
    for (const i of [1, 3, 5]) expect(Buffer.concat(dst[i]!).equals(Buffer.concat(src[i]!)), `image ${i}`).toBe(true);
    for (const i of [0, 2, 4]) expect(label(dst[i]!)).toMatchObject({ seq: i / 2 + 1, copyOf: `${label(src[0]!).mediaId}#${i / 2 + 1}` });
    // The copy restores with our recover (its own catalog entry, by backup number).
    const rec = await cli("remote", "recover", "--data", A, "--device", "vt1", "--file", "3", "--to", join(W, "r3"), "--state-dir", STATE);
    expect(rec.code, rec.stderr + rec.stdout).toBe(0);
    expect(await compareTrees(trees[2]!, join(W, "r3"))).toEqual([]);
  });

  it("ndmjob's tape agent as the destination mover, and as the source mover", async () => {
    // Backup 2 (tape files 2-3) onto ndmjob's simulated tape; ndmjob -x restores it.
    const nj = join(W, "nj.tape");
    writeFileSync(nj, "");
    const r = await duplicate("--from", `${A}/vt0`, "--to", `${NJ}/${nj}`, "--files", "2-3", "--dst-user", "ndmp", "--dst-password", "ndmp");
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const bytes = readFileSync(nj);
    expect(decodeLabel(simtapeFile(bytes, 0))).toMatchObject({ seq: 1, root: trees[1] });
    expect(simtapeFile(bytes, 1).equals(Buffer.concat(files(vt("vt0"))[3]!))).toBe(true);
    rmSync(`${nj}.lck`, { force: true });
    const x = await ndmjob(ns, ["-x", "-v", "-D", D, "-T", `${NJ}/4,ndmp,ndmp`, "-f", nj, "-b", "128", "-m", "+1", "-B", "tar", "-C", join(W, "x-nj")]);
    expect(jobSucceeded(x.stdout), x.stdout).toBe(true);
    expect(await compareTrees(trees[1]!, join(W, "x-nj"))).toEqual([]);

    // And back: ndmjob's tape (label + image) onto our vt2, the same bytes again.
    rmSync(`${nj}.lck`, { force: true });
    const back = await duplicate("--from", `${NJ}/${nj}`, "--to", `${A}/vt2`, "--src-user", "ndmp", "--src-password", "ndmp");
    expect(back.code, back.stderr + back.stdout).toBe(0);
    const v2 = files(vt("vt2"));
    expect(v2.length).toBe(2);
    expect(Buffer.concat(v2[1]!).equals(simtapeFile(bytes, 1))).toBe(true);
  });

  it("a peer mover that cannot take the record size: a clear failure, not a hang; the peer stays usable", async () => {
    // 256 KiB records (our default): ndmjob's mover accepts the size, then takes nothing.
    const b1 = await cli("remote", "backup", trees[0]!, "--data", A, "--device", "vt3", "--state-dir", STATE);
    expect(b1.code, b1.stderr).toBe(0);
    const nj = join(W, "nj-big.tape");
    writeFileSync(nj, "");
    const r = await duplicate("--from", `${A}/vt3`, "--to", `${NJ}/${nj}`, "--dst-password", "ndmp");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/destination mover took no data .* records of 262144 bytes/);
    const again = await duplicate("--from", `${A}/vt0`, "--to", `${NJ}/${nj}`, "--files", "0-1", "--dst-password", "ndmp", "--overwrite");
    expect(again.code, again.stderr + again.stdout).toBe(0);
  }, 90_000);

  it("a killed duplication and a refused one leave both servers usable", async () => {
    // Onto a cartridge that is not blank: refused before anything is written.
    const refused = await duplicate("--from", `${A}/vt0`, "--to", `${A}/vt1`);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/not blank.*--overwrite/);
    // Killed as soon as it runs, either side listening; then a whole duplication goes through.
    for (const listen of ["dst", "src"]) {
      const v = [...ns.prefix(), BINARY, "remote", "duplicate", "--state-dir", STATE, "--json", "--from", `${A}/vt0`, "--to", `${B}/lt0`, "--slot", "3", "--overwrite", "--listen", listen];
      const p = spawn(v[0]!, v.slice(1), { env, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let sent = false;
      await new Promise<void>((resolve) => {
        p.stdout!.on("data", (c: Buffer) => {
          out += c.toString();
          if (!sent && out.includes('"event":"progress"')) sent = p.kill("SIGKILL");
        });
        p.stderr!.resume();
        p.once("close", () => resolve());
      });
      expect(sent).toBe(true);
      const r = await duplicate("--from", `${A}/vt0`, "--to", `${B}/lt0`, "--slot", "3,2", "--overwrite", "--listen", listen, "--files", "0-1");
      expect(r.code, listen + r.stderr + r.stdout).toBe(0);
      expect(Buffer.concat(files(cart(3))[1]!).equals(Buffer.concat(files(vt("vt0"))[1]!))).toBe(true);
    }
    for (const s of [a, b]) expect(s.proc.exitCode).toBe(null);
  }, 120_000);
});
