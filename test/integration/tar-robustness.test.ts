/**
 * The tar data service when things go wrong, against the compiled binary: our NdmpClient is the
 * DMA, and the data connection goes to a socket of this process that the test controls (it reads,
 * stalls, drops or truncates). GNU tar is the independent reader of what we produce.
 *
 *  1. data connection dropped / DATA_ABORT / control connection dropped mid-backup
 *  2. halt ordering and FH contents (every object once, fh_info = header offset, "/" names)
 *  3. FH back-pressure: a DMA that stops reading the control connection stalls the backup
 *  4. files that change, vanish or turn into something else while the backup runs
 *  5. env: EXCLUDE, FILES, LEVEL, unknown variables, bad FILESYSTEM / butype / state
 *  6. recovery nlist semantics (destination forms, RECURSIVE=n, not found, LOG_FILE names)
 *  7. a truncated or reset recovery stream
 */
import { spawnSync } from "node:child_process";
import { appendFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TarReader } from "../../formats/tar/reader.ts";
import { parse as parseDump } from "../unit/engine/dump-fixture.ts";
import { NdmpClient } from "../../src/client/client.ts";
import { AddrType, ALL1, DataHaltReason as Halt, DataState, ErrorCode, LogType, Message, RecoveryStatus } from "../../src/protocol/codes.ts";
import type { Pval } from "../../src/protocol/xdr/v4.ts";
import { tcpAddr } from "../../src/transport/tcp.ts";
import { dma, errorOf, listenOnce, Receiver, seededBytes, sendAll, until } from "../helpers/dma.ts";
import { havePeers } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";
import { startServer, type RunningServer } from "../helpers/server.ts";
import { listTree, makeEdgeTree } from "../helpers/tree.ts";

const MiB = 1024 * 1024;
const ready = havePeers("binary", "tar");

// ---- the DMA's side of a data connection ----

async function dataConnect(c: NdmpClient): Promise<Socket> {
  const l = await listenOnce();
  await c.request(Message.DATA_CONNECT, { addr: { addr_type: AddrType.TCP, tcp_addr: [tcpAddr("127.0.0.1", l.port)] } });
  return l.accepted;
}

const pv = (pairs: Array<[string, string]>): Pval[] => pairs.map(([name, value]) => ({ name, value }));

/** DATA_CONNECT to a receiver of ours, then DATA_START_BACKUP(tar). */
async function startBackup(c: NdmpClient, env: Array<[string, string]>, butype = "tar"): Promise<{ recv: Receiver; since: number }> {
  const sock = await dataConnect(c);
  const recv = new Receiver(sock);
  const since = c.posts.length;
  await c.request(Message.DATA_START_BACKUP, { butype_name: butype, env: pv(env) });
  return { recv, since };
}

async function dataState(c: NdmpClient) {
  return (await c.request(Message.DATA_GET_STATE)).body as { state: number; halt_reason: number; operation: number; bytes_processed: bigint };
}

const halted = (c: NdmpClient, since: number, ms = 60_000) => c.waitForPost(Message.NOTIFY_DATA_HALTED, ms, since);
const posts = (c: NdmpClient, since: number, code: number) => c.posts.slice(since).filter((p) => p.code === code);
const messages = (c: NdmpClient, since: number) =>
  posts(c, since, Message.LOG_MESSAGE).map((p) => ({ type: p.body.log_type as number, text: Buffer.from(p.body.entry).toString("utf8") }));
const warnings = (c: NdmpClient, since: number) => messages(c, since).filter((m) => m.type === LogType.WARNING).map((m) => m.text);

interface Fh {
  name: string;
  fhInfo: bigint;
  size: bigint;
}
function fhEntries(c: NdmpClient, since: number): Fh[] {
  return posts(c, since, Message.FH_ADD_FILE).flatMap((p) =>
    (p.body.files as any[]).map((f) => ({ name: Buffer.from(f.names[0].unix_name).toString("latin1"), fhInfo: f.fh_info as bigint, size: f.stats[0].size as bigint })),
  );
}

/** Entries of a tar stream with their header offsets and the content bytes each carried. */
function parseArchive(stream: Buffer): { entries: Array<{ path: string; offset: number; size: number; got: number; type: string }>; ended: boolean } {
  const reader = new TarReader();
  const entries: Array<{ path: string; offset: number; size: number; got: number; type: string }> = [];
  let ended = false;
  for (const ev of reader.feed(stream)) {
    if (ev.kind === "entry") entries.push({ path: ev.entry.path.toString("latin1"), offset: ev.offset, size: ev.entry.sparse ? -1 : storedSize(ev.entry), got: 0, type: ev.entry.type });
    else if (ev.kind === "data") entries[entries.length - 1]!.got += ev.chunk.length;
    else if (ev.kind === "end") ended = true;
  }
  return { entries, ended };
}
const storedSize = (e: { type: string; size: number }) => (e.type === "file" ? e.size : 0);

function vmRssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.runIf(ready)("tar data service robustness (our client as DMA)", () => {
  let srv: RunningServer;
  const W = mkdtempSync(join(tmpdir(), "ndmpd-tarrob-"));
  const BIG = join(W, "big");
  let baseFds = 0;

  /** A new session backs up `dir` completely and the stream reads to its end-of-archive. */
  async function fullBackupWorks(dir: string): Promise<void> {
    const c = await dma(srv.port);
    try {
      const { recv, since } = await startBackup(c, [["FILESYSTEM", dir], ["HIST", "n"]]);
      const h = await halted(c, since);
      expect(h.body.reason).toBe(Halt.SUCCESSFUL);
      await until(() => recv.closed, 10_000, "the data connection to close");
      const { entries, ended } = parseArchive(recv.bytes());
      expect(ended).toBe(true);
      expect(entries.length).toBe(listTree(dir).length);
      await c.request(Message.DATA_STOP);
    } finally {
      await c.close();
    }
  }

  async function fdsBackToBaseline(): Promise<void> {
    await until(() => srv.fdCount() <= baseFds, 5000, `the server's descriptors back to ${baseFds}`).catch(() => {
      throw new Error(`descriptor leak: ${srv.fdCount()} open, baseline ${baseFds}`);
    });
  }

  beforeAll(async () => {
    // Small files first (so FH entries are pending when the big files stream), then 3 x 32 MiB.
    mkdirSync(join(BIG, "a-small"), { recursive: true });
    for (let i = 0; i < 300; i++) writeFileSync(join(BIG, "a-small", `s${String(i).padStart(3, "0")}`), seededBytes(1024, i));
    mkdirSync(join(BIG, "b-big"));
    for (let i = 0; i < 3; i++) writeFileSync(join(BIG, "b-big", `f${i}`), seededBytes(32 * MiB, 1000 + i));
    srv = await startServer();
    await fullBackupWorks(BIG); // warms up every lazily opened descriptor of the server
    await sleep(300);
    baseFds = srv.fdCount();
  }, 120_000);

  afterAll(async () => {
    await srv?.stop();
    rmSync(W, { recursive: true, force: true });
  });

  // ---- 1 ----

  it("data connection dropped mid-backup: CONNECT_ERROR, DATA_STOP to IDLE, no leaked descriptors", async () => {
    const c = await dma(srv.port);
    const { recv, since } = await startBackup(c, [["FILESYSTEM", BIG], ["HIST", "y"]]);
    await recv.waitFor(8 * MiB);
    recv.sock.destroy();
    const h = await halted(c, since);
    expect(h.body.reason).toBe(Halt.CONNECT_ERROR);
    const st = await dataState(c);
    expect([st.state, st.halt_reason]).toEqual([DataState.HALTED, Halt.CONNECT_ERROR]);
    expect(messages(c, since).some((m) => m.type === LogType.ERROR && /data connection/.test(m.text))).toBe(true);
    checkOrder(c, since);
    await c.request(Message.DATA_STOP);
    expect((await dataState(c)).state).toBe(DataState.IDLE);
    await c.close();
    await fdsBackToBaseline();
    await fullBackupWorks(BIG);
  });

  it("DATA_ABORT mid-backup: HALTED(ABORTED), exactly one NOTIFY_DATA_HALTED, every FH post before it", async () => {
    const c = await dma(srv.port);
    const { recv, since } = await startBackup(c, [["FILESYSTEM", BIG], ["HIST", "y"]]);
    await recv.waitFor(4 * MiB);
    recv.sock.pause(); // the backup is now blocked in the middle of a big file
    await sleep(200);
    await c.request(Message.DATA_ABORT);
    const h = await halted(c, since);
    expect(h.body.reason).toBe(Halt.ABORTED);
    recv.sock.resume();
    await until(() => recv.closed, 10_000, "the data connection to close");
    // A second DATA_ABORT in HALTED is accepted and changes nothing.
    expect(await errorOf(c.request(Message.DATA_ABORT))).toBe(ErrorCode.NO_ERR);
    await sleep(500);
    expect(posts(c, since, Message.NOTIFY_DATA_HALTED).length).toBe(1);
    const st = await dataState(c);
    expect([st.state, st.halt_reason]).toEqual([DataState.HALTED, Halt.ABORTED]);
    checkOrder(c, since);
    // The FH sent describe objects that are in the part of the stream received.
    const fh = fhEntries(c, since);
    expect(fh.length).toBeGreaterThan(0);
    for (const f of fh) expect(f.fhInfo < BigInt(recv.length)).toBe(true);
    await c.request(Message.DATA_STOP);
    await c.close();
    await fdsBackToBaseline();
    await fullBackupWorks(BIG);
  });

  it("control connection dropped mid-backup: the server stops the job and closes the data connection", async () => {
    const c = await dma(srv.port);
    const { recv } = await startBackup(c, [["FILESYSTEM", BIG], ["HIST", "y"]]);
    await recv.waitFor(4 * MiB);
    recv.sock.pause();
    await sleep(200);
    const logsBefore = srv.logs.length;
    (c as unknown as { socket: Socket }).socket.destroy(); // no CONNECT_CLOSE: the DMA just went away
    await until(() => srv.logs.slice(logsBefore).some((l) => l.msg === "data halted"), 10_000, "the server to halt the job");
    expect(srv.logs.slice(logsBefore).find((l) => l.msg === "data halted")!.reason).toBe("ABORTED");
    recv.sock.resume();
    await until(() => recv.closed, 10_000, "the data connection to close");
    // Stopped, not finished: far less than the tree arrived, and no end-of-archive.
    expect(recv.length).toBeLessThan(90 * MiB);
    expect(parseArchive(recv.bytes()).ended).toBe(false);
    await fdsBackToBaseline();
    await fullBackupWorks(BIG);
  });

  // ---- 2 ----

  it("halt ordering and file history: every FH and LOG post before NOTIFY_DATA_HALTED; each object once, at its header offset", async () => {
    const edge = join(W, "edge");
    await makeEdgeTree(edge);
    const c = await dma(srv.port);
    try {
      const { recv, since } = await startBackup(c, [["FILESYSTEM", edge], ["HIST", "y"]]);
      const h = await halted(c, since);
      expect(h.body.reason).toBe(Halt.SUCCESSFUL);
      await until(() => recv.closed, 10_000, "the data connection to close");
      await sleep(300); // anything posted after the halt would arrive now
      checkOrder(c, since);
      const { entries, ended } = parseArchive(recv.bytes());
      expect(ended).toBe(true);
      const fh = fhEntries(c, since);
      const names = fh.map((f) => f.name);
      expect(new Set(names).size).toBe(names.length); // once each
      const tree = listTree(edge).map((o) => (o.rel.toString("latin1") === "." ? "/" : "/" + o.rel.toString("latin1")));
      expect([...names].sort()).toEqual([...tree].sort());
      expect(names[0]).toBe("/");
      for (const n of names) expect(n.startsWith("/") && !n.startsWith("//") && !n.endsWith("/.")).toBe(true);
      const byPath = new Map(entries.map((e) => [e.path === "." ? "/" : "/" + e.path, e.offset]));
      for (const f of fh) expect(Number(f.fhInfo), f.name).toBe(byPath.get(f.name));
      await c.request(Message.DATA_STOP);
    } finally {
      await c.close();
      rmSync(edge, { recursive: true, force: true });
    }
  });

  // ---- 3 ----

  it("FH back-pressure: a DMA that stops reading stalls the backup, memory stays bounded, and it completes when reading resumes", async () => {
    const many = join(W, "many");
    const pad = "p".repeat(100);
    let objects = 1;
    for (let d = 0; d < 50; d++) {
      const dir = join(many, `dir-${d}-${pad}`);
      mkdirSync(dir, { recursive: true });
      objects++;
      for (let i = 0; i < 1000; i++) writeFileSync(join(dir, `file-${i}-${pad}`), "x");
      objects += 1000;
    }
    const c = await dma(srv.port);
    try {
      const rss0 = vmRssKiB(srv.pid);
      const { recv, since } = await startBackup(c, [["FILESYSTEM", many], ["HIST", "y"]]);
      const control = (c as unknown as { socket: Socket }).socket;
      control.pause();
      // Wait for the stream to stop growing (unchanged for 1.5 s), then hold the pause 1 s more.
      let peak = rss0;
      let last = -1;
      let still = 0;
      const deadline = Date.now() + 30_000;
      while (still < 6) {
        if (recv.closed) throw new Error("the backup finished although the DMA read no file history");
        if (Date.now() > deadline) throw new Error(`no stall while the DMA did not read: ${recv.length} bytes and growing`);
        await sleep(250);
        peak = Math.max(peak, vmRssKiB(srv.pid));
        still = recv.length === last ? still + 1 : 0;
        last = recv.length;
      }
      await sleep(1000);
      peak = Math.max(peak, vmRssKiB(srv.pid));
      expect(recv.length, "the stream moved after the stall").toBe(last);
      expect(recv.closed).toBe(false);
      control.resume();
      const h = await halted(c, since, 90_000);
      expect(h.body.reason).toBe(Halt.SUCCESSFUL);
      await until(() => recv.closed, 10_000, "the data connection to close");
      expect(last, "stalled well before the end of the stream").toBeLessThan(recv.length * 0.8);
      expect(peak - rss0, `RSS grew from ${rss0} to ${peak} KiB`).toBeLessThan(100 * 1024);
      checkOrder(c, since);
      const batches = posts(c, since, Message.FH_ADD_FILE).map((p) => (p.body.files as unknown[]).length);
      expect(batches.reduce((a, b) => a + b, 0)).toBe(objects);
      expect(batches.length).toBeLessThanOrEqual(Math.ceil(objects / 100));
      for (const n of batches.slice(0, -1)) expect(n >= 100 && n <= 10_000, `batch of ${n}`).toBe(true);
      const { entries, ended } = parseArchive(recv.bytes());
      expect(ended).toBe(true);
      expect(entries.length).toBe(objects);
      await c.request(Message.DATA_STOP);
    } finally {
      await c.close();
      rmSync(many, { recursive: true, force: true });
    }
  });

  // ---- 4 ----

  it("files that shrink, grow, vanish or change type during the backup: warnings name them, the archive stays valid, SUCCESSFUL", async () => {
    const chg = join(W, "chg");
    mkdirSync(join(chg, "c"), { recursive: true });
    mkdirSync(join(chg, "d"));
    mkdirSync(join(chg, "e"));
    writeFileSync(join(chg, "c", "0big"), seededBytes(128 * MiB, 7));
    for (const n of ["1grow", "2gone", "3link", "4fifo", "5dir", "6ok"]) writeFileSync(join(chg, "c", n), seededBytes(MiB, n.charCodeAt(0)));
    // More entries than the backup scans ahead (the scan workers run at most a few batches of
    // up to 512 entries ahead of the stream), so that d/ is not walked yet when it goes.
    for (let i = 0; i < 5000; i++) writeFileSync(join(chg, "c", `7pad-${i}`), `${i}\n`);
    for (let i = 0; i < 10; i++) writeFileSync(join(chg, "d", `x${i}`), `d${i}\n`);
    writeFileSync(join(chg, "e", "after"), "still here\n");
    const c = await dma(srv.port);
    try {
      const { recv, since } = await startBackup(c, [["FILESYSTEM", chg], ["HIST", "y"]]);
      await recv.waitFor(2 * MiB);
      recv.sock.pause(); // the backup is now inside c/0big; the later files are walked but not yet read
      await sleep(300);
      truncateSync(join(chg, "c", "0big"), 16 * MiB);
      appendFileSync(join(chg, "c", "1grow"), seededBytes(MiB, 99));
      unlinkSync(join(chg, "c", "2gone"));
      unlinkSync(join(chg, "c", "3link"));
      symlinkSync("/etc/hostname", join(chg, "c", "3link"));
      unlinkSync(join(chg, "c", "4fifo"));
      expect(spawnSync("mkfifo", [join(chg, "c", "4fifo")]).status).toBe(0);
      unlinkSync(join(chg, "c", "5dir"));
      mkdirSync(join(chg, "c", "5dir"));
      rmSync(join(chg, "d"), { recursive: true });
      recv.sock.resume();
      const h = await halted(c, since, 60_000);
      expect(h.body.reason, JSON.stringify(messages(c, since))).toBe(Halt.SUCCESSFUL);
      await until(() => recv.closed, 10_000, "the data connection to close");
      const warned = warnings(c, since);
      for (const p of ["/c/0big", "/c/1grow", "/c/2gone", "/c/3link", "/c/4fifo", "/c/5dir", "/d"]) {
        expect(warned.some((w) => w.startsWith(p + ":")), `a warning naming ${p} in ${JSON.stringify(warned)}`).toBe(true);
      }
      // Our reader: every entry carries exactly the bytes its header promised, to the end.
      const stream = recv.bytes();
      const { entries, ended } = parseArchive(stream);
      expect(ended).toBe(true);
      for (const e of entries) if (e.size >= 0) expect(e.got, e.path).toBe(e.size);
      const paths = entries.map((e) => e.path);
      expect(paths).toContain("c/0big");
      expect(entries.find((e) => e.path === "c/0big")!.size).toBe(128 * MiB);
      expect(entries.find((e) => e.path === "c/1grow")!.size).toBe(MiB);
      expect(paths).toContain("c/6ok");
      expect(paths).toContain("e/after");
      // Gone or no longer a regular file when it was to be read: not archived as a fake file.
      for (const p of ["c/2gone", "c/3link", "c/4fifo", "c/5dir"]) expect(paths).not.toContain(p);
      // The FH describes exactly what the archive holds.
      expect(fhEntries(c, since).map((f) => f.name.slice(1) || ".").sort()).toEqual([...paths].sort());
      // GNU tar reads it to the end, and the files after the damage are intact.
      const file = join(W, "chg.tar");
      writeFileSync(file, stream);
      const t = await run("tar", ["-tvf", file]);
      expect(t.code, t.stderr).toBe(0);
      expect(t.stderr).toBe("");
      expect(t.stdout).toContain("c/6ok");
      const x = await run("tar", ["-xOf", file, "e/after"]);
      expect(x.stdout).toBe("still here\n");
      const ok = await run("sh", ["-c", `tar -xOf ${file} c/6ok | cmp - ${join(chg, "c", "6ok")}`]);
      expect(ok.code, ok.stdout + ok.stderr).toBe(0);
      rmSync(file);
      await c.request(Message.DATA_STOP);
    } finally {
      await c.close();
      rmSync(chg, { recursive: true, force: true });
    }
  });

  // ---- 5 ----

  describe("env", () => {
    const SEL = join(W, "sel");
    const mk = (rel: string, body = rel) => {
      mkdirSync(join(SEL, rel, ".."), { recursive: true });
      writeFileSync(join(SEL, rel), body);
    };
    beforeAll(() => {
      for (const f of ["keep/a.txt", "keep/b.log", "keep/tmp/x", "skip/y", "top.log", "top.txt", "deep/sub/cache/z", "deep/sub/keep.txt", "deep/other.txt", "deep/tmp.d/w", "My Docs/a b.txt", "My Docs/c.txt", "two words"]) mk(f);
    });

    async function archived(env: Array<[string, string]>, butype = "tar"): Promise<string[]> {
      const c = await dma(srv.port);
      try {
        const { recv, since } = await startBackup(c, [["FILESYSTEM", SEL], ...env], butype);
        expect((await halted(c, since)).body.reason).toBe(Halt.SUCCESSFUL);
        await until(() => recv.closed, 10_000, "the data connection to close");
        await c.request(Message.DATA_STOP);
        if (butype === "dump") return [...parseDump(recv.bytes()).inoOf.keys()];
        return parseArchive(recv.bytes()).entries.map((e) => e.path);
      } finally {
        await c.close();
      }
    }

    it("EXCLUDE: comma lists and several pairs; base-name patterns at any depth, anchored paths, excluded directories take their subtree", async () => {
      const got = await archived([
        ["EXCLUDE", "*.log,tmp"],
        ["EXCLUDE", "/skip"],
        ["EXCLUDE", "deep/sub/cache"],
      ]);
      expect(got.sort()).toEqual(
        [".", "deep", "deep/other.txt", "deep/sub", "deep/sub/keep.txt", "deep/tmp.d", "deep/tmp.d/w", "keep", "keep/a.txt", "top.txt", "My Docs", "My Docs/a b.txt", "My Docs/c.txt", "two words"].sort(),
      );
    });

    it("FILES: several, relative and absolute forms: those paths, their subtrees, and the directories leading to them", async () => {
      const got = await archived([
        ["FILES", "/keep/a.txt"],
        ["FILES", "deep/sub"],
        ["FILES", "./top.log"],
      ]);
      expect(got.sort()).toEqual([".", "deep", "deep/sub", "deep/sub/cache", "deep/sub/cache/z", "deep/sub/keep.txt", "keep", "keep/a.txt", "top.log"].sort());
    });

    it("dump selects as tar does: EXCLUDE and FILES leave the same names out of a level 0, whose files come from the directory listings", async () => {
      const selections: Array<Array<[string, string]>> = [
        [["EXCLUDE", "*.log,tmp"], ["EXCLUDE", "/skip"], ["EXCLUDE", "deep/sub/cache"]],
        [["FILES", "/keep/a.txt"], ["FILES", "deep/sub"], ["FILES", "./top.log"]],
        [["FILES", 'My\\ Docs/a\\ b.txt "two words"']],
      ];
      for (const env of selections) expect((await archived(env, "dump")).sort(), JSON.stringify(env)).toEqual((await archived(env)).sort());
    });

    it("FILES: paths with spaces, escaped (\\ ) or double-quoted, several in one value", async () => {
      const got = await archived([["FILES", 'My\\ Docs/a\\ b.txt "two words"']]);
      expect(got.sort()).toEqual([".", "My Docs", "My Docs/a b.txt", "two words"].sort());
    });

    it("DATA_GET_ENV keeps unknown variables and adds TYPE, PATHNAME_SEPARATOR, DIRECT=y", async () => {
      const c = await dma(srv.port);
      try {
        const { since } = await startBackup(c, [["FILESYSTEM", SEL], ["HIST", "n"], ["VENDOR_THING", "x y"], ["TYPE", "something"]]);
        expect((await halted(c, since)).body.reason).toBe(Halt.SUCCESSFUL);
        const env = ((await c.request(Message.DATA_GET_ENV)).body.env as Array<{ name: Buffer; value: Buffer }>).map((p) => [
          Buffer.from(p.name).toString(),
          Buffer.from(p.value).toString(),
        ]);
        const get = (n: string) => env.filter(([k]) => k === n).map(([, v]) => v);
        expect(get("FILESYSTEM")).toEqual([SEL]);
        expect(get("HIST")).toEqual(["n"]);
        expect(get("VENDOR_THING")).toEqual(["x y"]);
        expect(get("TYPE")).toEqual(["tar"]);
        expect(get("PATHNAME_SEPARATOR")).toEqual(["/"]);
        expect(get("DIRECT")).toEqual(["y"]);
        await c.request(Message.DATA_STOP);
        expect(await errorOf(c.request(Message.DATA_GET_ENV))).toBe(ErrorCode.ILLEGAL_STATE_ERR);
      } finally {
        await c.close();
      }
    });

    it("refusals: LEVEL=32, FILESYSTEM missing or not a directory, unknown butype (ILLEGAL_ARGS); START before CONNECT (ILLEGAL_STATE)", async () => {
      const c = await dma(srv.port);
      try {
        const start = (env: Array<[string, string]>, butype = "tar") => errorOf(c.request(Message.DATA_START_BACKUP, { butype_name: butype, env: pv(env) }));
        expect(await start([["FILESYSTEM", SEL]])).toBe(ErrorCode.ILLEGAL_STATE_ERR);
        const sock = await dataConnect(c);
        sock.resume();
        const logsBefore = srv.logs.length;
        expect(await start([["FILESYSTEM", SEL], ["LEVEL", "32"]])).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
        const refused = () => srv.logs.slice(logsBefore).find((l) => l.msg === "request refused");
        await until(() => refused() !== undefined, 5000, "the server's log of the refusal");
        const why = refused()!.why as string;
        expect(why).toMatch(/LEVEL=32: must be a number from 0 to 31/);
        expect(await start([["HIST", "y"]])).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
        expect(await start([["FILESYSTEM", join(SEL, "top.txt")]])).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
        expect(await start([["FILESYSTEM", join(SEL, "missing")]])).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
        expect(await start([["FILESYSTEM", "relative/path"]])).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
        expect(await start([["FILESYSTEM", SEL]], "cpio-nope")).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
        // Still CONNECTED after the refusals: a good start runs.
        expect((await dataState(c)).state).toBe(DataState.CONNECTED);
        const since = c.posts.length;
        expect(await start([["FILESYSTEM", SEL], ["LEVEL", "0"]])).toBe(ErrorCode.NO_ERR);
        expect((await halted(c, since)).body.reason).toBe(Halt.SUCCESSFUL);
        await c.request(Message.DATA_STOP);
      } finally {
        await c.close();
      }
    });
  });

  // ---- 6, 7 ----

  describe("recovery", () => {
    const RS = join(W, "rsrc");
    let stream: Buffer;
    beforeAll(async () => {
      for (const [rel, body] of [
        ["dir1/a", "a\n"],
        ["dir1/b", "b\n"],
        ["dir1/sub/c", "c\n"],
        ["dir2/x", "x\n"],
        ["dir2/sub2/y", "y\n"],
        ["f1", "one\n"],
        ["zbig", seededBytes(4 * MiB, 5)],
      ] as Array<[string, string | Buffer]>) {
        mkdirSync(join(RS, rel, ".."), { recursive: true });
        writeFileSync(join(RS, rel), body);
      }
      const c = await dma(srv.port);
      const { recv, since } = await startBackup(c, [["FILESYSTEM", RS]]);
      expect((await halted(c, since)).body.reason).toBe(Halt.SUCCESSFUL);
      await until(() => recv.closed, 10_000, "the data connection to close");
      stream = Buffer.from(recv.bytes());
      await c.request(Message.DATA_STOP);
      await c.close();
      // A recovery keeps its creator threads warm for the next (each thread: an eventfd and an
      // epoll descriptor): one whole recovery first, then the baseline the leak checks compare with.
      const w = await dma(srv.port);
      try {
        expect((await recover(w, [{ original_path: "", destination_path: join(W, "r0-warm") }], [], stream)).reason).toBe(Halt.SUCCESSFUL);
        await w.request(Message.DATA_STOP);
      } finally {
        await w.close();
      }
      await sleep(300);
      baseFds = srv.fdCount();
    });

    type N = { original_path: string; destination_path: string; name?: string };
    /** DATA_CONNECT to a sender of ours; it sends `data` (then closes, or resets) once asked with NOTIFY_DATA_READ. */
    async function recover(c: NdmpClient, nlist: N[], env: Array<[string, string]>, data: Buffer, how: "end" | "reset" = "end") {
      const sock = await dataConnect(c);
      sock.on("error", () => {});
      const since = c.posts.length;
      await c.request(Message.DATA_START_RECOVER, {
        butype_name: "tar",
        env: pv([["FILESYSTEM", RS], ...env]),
        nlist: nlist.map((n) => ({ original_path: n.original_path, destination_path: n.destination_path, name: n.name ?? "", other_name: "", node: ALL1, fh_info: ALL1 })),
      });
      const read = await c.waitForPost(Message.NOTIFY_DATA_READ, 10_000, since);
      if (how === "end") await sendAll(sock, data);
      else {
        await sendAll(sock, data, { end: false });
        await sleep(200);
        sock.resetAndDestroy();
      }
      const h = await halted(c, since);
      const logFiles = posts(c, since, Message.LOG_FILE).map((p) => [Buffer.from(p.body.name).toString(), p.body.recovery_status as number]);
      return { read: read.body as { offset: bigint; length: bigint }, reason: h.body.reason as number, logFiles, since };
    }

    it("nlist: full destination path, destination + name, a renamed directory, a missing path; LOG_FILE per entry named as sent; NOTIFY_DATA_READ(0, ALL1)", async () => {
      const D = join(W, "r1");
      const c = await dma(srv.port);
      try {
        const r = await recover(
          c,
          [
            { original_path: "/dir1/", destination_path: join(D, "full", "dir1-here") },
            { original_path: "/f1", destination_path: join(D, "into", "deeper"), name: "f1-renamed" },
            { original_path: "dir2", destination_path: D, name: "dir2-renamed" },
            { original_path: "/not/in/archive", destination_path: join(D, "nope") },
          ],
          [],
          stream,
        );
        expect(r.read).toEqual({ offset: 0n, length: ALL1 });
        expect(r.reason).toBe(Halt.SUCCESSFUL);
        expect(r.logFiles).toEqual([
          ["/dir1/", RecoveryStatus.SUCCESSFUL],
          ["/f1", RecoveryStatus.SUCCESSFUL],
          ["dir2", RecoveryStatus.SUCCESSFUL],
          ["/not/in/archive", RecoveryStatus.FAILED_NOT_FOUND],
        ]);
        checkOrder(c, r.since);
        expect(readFileSync(join(D, "full/dir1-here/a"), "utf8")).toBe("a\n");
        expect(readFileSync(join(D, "full/dir1-here/sub/c"), "utf8")).toBe("c\n");
        expect(readFileSync(join(D, "into/deeper/f1-renamed"), "utf8")).toBe("one\n");
        expect(readFileSync(join(D, "dir2-renamed/sub2/y"), "utf8")).toBe("y\n");
        expect(readdirSync(D).sort()).toEqual(["dir2-renamed", "full", "into"]);
        expect(existsSync(join(D, "nope"))).toBe(false);
        await c.request(Message.DATA_STOP);
      } finally {
        await c.close();
      }
    });

    it("a GNU tar archive made with -C DIR . (every name ./a/b): nlist paths match it, hard links included", async () => {
      const G = join(W, "gnu-dot");
      mkdirSync(join(G, "d"), { recursive: true });
      mkdirSync(join(G, "e"));
      writeFileSync(join(G, "d", "a"), "a\n");
      linkSync(join(G, "d", "a"), join(G, "d", "b"));
      writeFileSync(join(G, "e", "x"), "x\n");
      const t = spawnSync("tar", ["--format=posix", "-cf", "-", "-C", G, "."]);
      expect(t.status, t.stderr.toString()).toBe(0);
      expect(t.stdout.subarray(0, 2).toString()).toBe("./"); // GNU tar's own naming, which is the point
      const D = join(W, "r-dot");
      const c = await dma(srv.port);
      try {
        const r = await recover(
          c,
          [
            { original_path: "/d", destination_path: join(D, "d") },
            { original_path: "/e/x", destination_path: join(D, "x") },
            { original_path: "/nope", destination_path: join(D, "nope") },
          ],
          [],
          t.stdout,
        );
        expect(r.reason).toBe(Halt.SUCCESSFUL);
        expect(r.logFiles).toEqual([
          ["/d", RecoveryStatus.SUCCESSFUL],
          ["/e/x", RecoveryStatus.SUCCESSFUL],
          ["/nope", RecoveryStatus.FAILED_NOT_FOUND],
        ]);
        expect(readFileSync(join(D, "d", "a"), "utf8")).toBe("a\n");
        expect(statSync(join(D, "d", "b")).ino).toBe(statSync(join(D, "d", "a")).ino);
        expect(readFileSync(join(D, "x"), "utf8")).toBe("x\n");
        expect(readdirSync(D).sort()).toEqual(["d", "x"]);
        await c.request(Message.DATA_STOP);
      } finally {
        await c.close();
      }
    });

    it("RECURSIVE=n restores only the directory itself", async () => {
      const D = join(W, "r2");
      const c = await dma(srv.port);
      try {
        const r = await recover(c, [{ original_path: "/dir2", destination_path: join(D, "d2") }], [["RECURSIVE", "n"]], stream);
        expect(r.reason).toBe(Halt.SUCCESSFUL);
        expect(r.logFiles).toEqual([["/dir2", RecoveryStatus.SUCCESSFUL]]);
        expect(statSync(join(D, "d2")).isDirectory()).toBe(true);
        expect(readdirSync(join(D, "d2"))).toEqual([]);
        await c.request(Message.DATA_STOP);
      } finally {
        await c.close();
      }
    });

    it("a recovery stream that ends (or is reset) mid-archive halts CONNECT_ERROR with a LOG_MESSAGE saying why", async () => {
      for (const how of ["end", "reset"] as const) {
        const c = await dma(srv.port);
        try {
          const cut = stream.subarray(0, stream.length - 1024 * 1024 - 1000); // inside zbig
          const r = await recover(c, [{ original_path: "", destination_path: join(W, `r3-${how}`) }], [], cut, how);
          expect(r.reason, `${how}: ${JSON.stringify(messages(c, r.since))}`).toBe(Halt.CONNECT_ERROR);
          const errors = messages(c, r.since).filter((m) => m.type === LogType.ERROR).map((m) => m.text);
          expect(errors.some((t) => /data connection/.test(t) && (how === "reset" || /before the end of the archive/.test(t))), JSON.stringify(errors)).toBe(true);
          checkOrder(c, r.since);
          expect((await dataState(c)).halt_reason).toBe(Halt.CONNECT_ERROR);
          await c.request(Message.DATA_STOP);
        } finally {
          await c.close();
        }
      }
      await fdsBackToBaseline();
    });
  });
});

/** Every FH, LOG_MESSAGE and LOG_FILE post of the job came before its one NOTIFY_DATA_HALTED. */
function checkOrder(c: NdmpClient, since: number): void {
  const list = c.posts.slice(since);
  const at = list.findIndex((p) => p.code === Message.NOTIFY_DATA_HALTED);
  expect(at).toBeGreaterThanOrEqual(0);
  const late = list.slice(at + 1).filter((p) => [Message.FH_ADD_FILE, Message.FH_ADD_DIR, Message.FH_ADD_NODE, Message.LOG_MESSAGE, Message.LOG_FILE].includes(p.code as never));
  expect(late.map((p) => p.code), "posts after NOTIFY_DATA_HALTED").toEqual([]);
}
