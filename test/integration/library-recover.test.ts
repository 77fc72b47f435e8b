/**
 * Restores that end on a cartridge (issue 14): the mover in recovery pauses only once the data
 * service has consumed what was read before the pause, so a DMA polling the two services never
 * sees "mover PAUSED, data ACTIVE" for an image that is about to end, and the mover of a
 * restore whose archive ended halts CONNECT_CLOSED. Against the compiled binary: ndmjob -x
 * through the virtual library with a spare cartridge named (three-way between two sessions of
 * ours, and the local configuration), an image that fills the first cartridge to its logical
 * end, and a DMA of ours that polls DATA_GET_STATE and MOVER_GET_STATE on every post.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NdmpClient, Post } from "../../src/client/client.ts";
import {
  AddrType,
  ALL1,
  DataHaltReason,
  DataState,
  Message,
  MoverHaltReason,
  MoverMode,
  MoverPauseReason,
  MoverState,
  TapeMtioOp,
  TapeOpenMode,
} from "../../src/protocol/codes.ts";
import { dma, seededBytes, tapeServerConfig } from "../helpers/dma.ts";
import { createNetns, type Netns } from "../helpers/netns.ts";
import { jobSucceeded, ndmjob, parseIndex } from "../helpers/ndmjob.ts";
import { BINARY, havePeers } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";
import { compareTrees } from "../helpers/tree.ts";

/** One drive in a 4-slot library of 1 MiB cartridges (LEOM at 960 KiB). */
function libraryConfig(): string {
  return `[server]
listen = "127.0.0.1:10000"
state_dir = "$DIR/state"
auth_failure_delay_ms = 0
[[user]]
name = "${USER}"
password = "${PASSWORD}"
[[tape]]
name = "vt0"
[[changer]]
name = "lib0"
path = "$DIR/lib0"
slots = 4
drives = ["vt0"]
capacity = "1MiB"
`;
}

/** A tree of `n` seeded files of `size` bytes. */
function makeTree(dir: string, n: number, size: number): void {
  mkdirSync(join(dir, "sub"), { recursive: true });
  for (let i = 0; i < n; i++) writeFileSync(join(dir, i === 0 ? "sub/f0.bin" : `f${i}.bin`), seededBytes(size, i));
}

/** The mover's pauses and halts in the server's log since `from`. */
function moverEvents(srv: RunningServer, from: number): string[] {
  return srv.logs.slice(from).flatMap((l) => (l.msg === "mover paused" ? [`paused ${l.reason}`] : l.msg === "mover halted" ? [`halted ${l.reason}`] : []));
}

describe.runIf(havePeers("binary", "ndmjob", "unshare"))("restores through a library that end on a cartridge (ndmjob -x)", () => {
  let ns: Netns;
  let srv: RunningServer;
  const W = mkdtempSync(join(tmpdir(), "ndmpd-librec-"));
  const A = `127.0.0.1:10000/4,${USER},${PASSWORD}`;
  const R = ["-R", A, "-r", "lib0"];

  beforeAll(async () => {
    ns = await createNetns();
    srv = await startServer({ netns: ns, config: libraryConfig() });
  }, 60_000);
  afterAll(async () => {
    await srv?.stop();
    await ns?.stop();
    rmSync(W, { recursive: true, force: true });
  });

  /** Backs `src` up onto the cartridge of `slot` (-T A: three-way between two of our sessions). */
  async function backup(src: string, slot: string): Promise<string[]> {
    const idx = join(W, `${slot}.idx`);
    const b = await ndmjob(ns, ["-c", "-v", "-D", A, "-T", A, ...R, "-f", "vt0", "-m", slot, "-B", "tar", "-C", src, "-I", idx], 120_000);
    expect(jobSucceeded(b.stdout), b.stdout).toBe(true);
    return parseIndex(readFileSync(idx, "latin1")).media;
  }

  /** ndmjob -x of the whole image with two cartridges named: only the first holds the image. */
  async function restore(src: string, slots: string[], agents: string[], name: string): Promise<void> {
    const out = join(W, name);
    const from = srv.logs.length;
    const x = await ndmjob(ns, ["-x", "-v", ...agents, ...R, "-f", "vt0", ...slots.flatMap((s) => ["-m", s]), "-B", "tar", "-C", out], 120_000);
    expect(jobSucceeded(x.stdout), x.stdout).toBe(true);
    expect(x.stdout).not.toContain("Operation requires next tape");
    expect(await compareTrees(src, out)).toEqual([]);
    // The data service found the archive's end and closed the connection: no pause at all.
    expect(moverEvents(srv, from)).toEqual(["halted CONNECT_CLOSED"]);
  }

  it("an image on the first cartridge: three-way (-D/-T) and local (-D only) restores end OKAY", async () => {
    const src = join(W, "small");
    makeTree(src, 3, 290_000);
    expect(await backup(src, "@1000")).toEqual(["01 +0/860K@1000"]);
    // The restore is ndmjob's own example: the spare cartridge named after the one that holds it.
    await restore(src, ["@1000", "@1001"], ["-D", A, "-T", A], "three-way");
    await restore(src, ["@1000", "@1001"], ["-D", A], "local");
  });

  it("an image that fills its cartridge to the logical end restores without asking for the next", async () => {
    const src = join(W, "full");
    // 96 records of 10240 bytes: the 96th crosses the early warning, so the cartridge is full.
    makeTree(src, 3, 324_000);
    expect(await backup(src, "@1002")).toEqual(["01 +0/960K@1002"]);
    expect(readFileSync(join(srv.dir, "lib0", "NDMP003L8.tape")).length).toBeGreaterThan(983_040);
    await restore(src, ["@1002", "@1003"], ["-D", A, "-T", A], "full-three-way");
    await restore(src, ["@1002", "@1003"], ["-D", A], "full-local");
  });

  it("DAR of files on each cartridge of a spanned image: SEEK pauses where the image crosses, only the needed records read", async () => {
    const src = join(W, "span");
    makeTree(src, 5, 280_000); // about 1.4 MB: over two 1 MiB cartridges
    const idx = join(W, "span.idx");
    const b = await ndmjob(ns, ["-c", "-v", "-D", A, "-T", A, ...R, "-f", "vt0", "-m", "@1000", "-m", "@1001", "-B", "tar", "-C", src, "-I", idx], 120_000);
    expect(jobSucceeded(b.stdout), b.stdout).toBe(true);
    const index = parseIndex(readFileSync(idx, "latin1"));
    expect(index.media).toEqual(["01 +0/960K@1000", "02 +0/420K@1001"]);
    const onFirst = index.files.get("/f1.bin")!.fhInfo; // f4.bin would straddle the two
    const onSecond = index.files.get("/sub/f0.bin")!.fhInfo;
    expect(onFirst + 290_000).toBeLessThan(960 * 1024);
    expect(onSecond).toBeGreaterThan(960 * 1024);
    for (const [agents, name] of [[["-D", A, "-T", A], "dar-three-way"], [["-D", A], "dar-local"]] as const) {
      const out = join(W, name);
      const from = srv.logs.length;
      const x = await ndmjob(ns, ["-x", "-v", ...agents, ...R, "-f", "vt0", "-m", "@1000", "-m", "@1001", "-B", "tar", "-E", "DIRECT=y", "-C", out, "-J", idx, "/f1.bin", "/sub/f0.bin"], 120_000);
      expect(jobSucceeded(x.stdout), x.stdout).toBe(true);
      expect(x.stdout).toContain('DLF "OK: /f1.bin"');
      expect(x.stdout).toContain('DLF "OK: /sub/f0.bin"');
      expect(x.stdout).toContain('"Commanding robot to load slot @1001 into drive @500"');
      expect(readFileSync(join(out, "f1.bin")).equals(seededBytes(280_000, 1))).toBe(true);
      expect(readFileSync(join(out, "sub/f0.bin")).equals(seededBytes(280_000, 0))).toBe(true);
      // One SEEK pause, at the record holding the second cartridge's file, reaching the DMA in the
      // local configuration too (where the data service asks our mover directly).
      const pauses = srv.logs.slice(from).filter((l) => l.msg === "mover paused");
      expect(pauses.map((p) => [p.reason, Number(p.seek_position)]), name).toEqual([["SEEK", Math.floor(onSecond / 10240) * 10240]]);
      expect(moverEvents(srv, from).at(-1)).toBe("halted CONNECT_CLOSED");
      // Direct access: the two files' records, not the whole 1.4 MB image.
      const done = /DLMn "recovery done: \d+ entries read, 2 restored, (\d+) bytes, (\d+) direct reads"/.exec(x.stdout);
      expect(done, x.stdout).not.toBeNull();
      expect(Number(done![1])).toBeLessThan(700_000);
    }

    // The CLI's library path: `ndmpd recover --slot 1 --slot 2` of the same image, on a copy of
    // the library (the running server holds this one).
    const dir = join(W, "cli");
    cpSync(join(srv.dir, "lib0"), join(dir, "lib0"), { recursive: true });
    rmSync(join(dir, "lib0", "library.lock"), { force: true });
    const cfg = join(dir, "c.toml");
    writeFileSync(cfg, libraryConfig().replaceAll("$DIR", dir), { mode: 0o600 });
    const cli = (...args: string[]) => run(BINARY, ["recover", "-c", cfg, "--tape-file", "0", "--record-size", "10240", ...args], { timeoutMs: 120_000 });
    const all = await cli("--slot", "1", "--slot", "2", "--to", join(dir, "all"));
    expect(all.code, all.stderr + all.stdout).toBe(0);
    expect(all.stdout).toMatch(/next cartridge NDMP002L8: the image goes on at byte 983040/);
    expect(await compareTrees(src, join(dir, "all"))).toEqual([]);
    // Two paths, one on each cartridge, by direct access at the offsets of ndmjob's index.
    const some = await cli("--slot", "1", "--slot", "2", "--index", idx, "--json", "--to", join(dir, "some"), "/f1.bin", "/sub/f0.bin");
    expect(some.code, some.stderr + some.stdout).toBe(0);
    const end = some.stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l)).find((e) => e.event === "end");
    expect(end, some.stdout).toMatchObject({ direct: true, restored: 2 });
    expect(end.bytesRead).toBeLessThan(700_000);
    expect(some.stdout).toMatch(/next cartridge NDMP002L8: the image goes on at byte 983040/);
    expect(readFileSync(join(dir, "some", "sub/f0.bin")).equals(seededBytes(280_000, 0))).toBe(true);
    expect(readFileSync(join(dir, "some", "f1.bin")).equals(seededBytes(280_000, 1))).toBe(true);
    // One cartridge named for an image that goes on: the job fails and says the image is cut short.
    const short = await cli("--slot", "1", "--to", join(dir, "short"));
    expect(short.code).toBe(1);
    // Several slots are for images another DMA wrote (our own backups fit on one cartridge).
    expect((await run(BINARY, ["recover", "-c", cfg, "--slot", "1", "--slot", "2", "--to", join(dir, "x")])).code).toBe(2);
  });
});

/**
 * A DMA of ours that asks for both states on every post, as a DMA that monitors by polling
 * does, and records each (mover, data) pair it sees until both have halted.
 */
async function pollingRecover(data: NdmpClient, tape: NdmpClient, out: string): Promise<{ seen: string[]; dataHalt: number; moverHalt: number }> {
  const seen: string[] = [];
  const local = data === tape;
  await tape.request(Message.MOVER_SET_RECORD_SIZE, { len: 10240 });
  await tape.request(Message.MOVER_SET_WINDOW, { offset: 0n, length: ALL1 });
  const l = await tape.request(Message.MOVER_LISTEN, { mode: MoverMode.WRITE, addr_type: local ? AddrType.LOCAL : AddrType.TCP });
  await data.request(Message.DATA_CONNECT, { addr: local ? { addr_type: AddrType.LOCAL } : l.body.connect_addr });
  const queue: Post[] = [];
  let wake: (() => void) | undefined;
  const onPost = (p: Post) => {
    queue.push(p);
    wake?.();
  };
  const agents = local ? [data] : [data, tape];
  for (const a of agents) a.on("post", onPost);
  try {
    await data.request(Message.DATA_START_RECOVER, { env: [{ name: "PREFIX", value: out }], nlist: [], butype_name: "tar" });
    for (;;) {
      if (queue.length === 0) await new Promise<void>((r) => ((wake = r), setTimeout(r, 1000)));
      const p = queue.shift();
      if (p?.code === Message.NOTIFY_DATA_READ) await tape.request(Message.MOVER_READ, { offset: p.body.offset, length: p.body.length });
      const ds = (await data.request(Message.DATA_GET_STATE)).body;
      const ms = (await tape.request(Message.MOVER_GET_STATE)).body;
      seen.push(`mover ${ms.state}/${ms.pause_reason}/${ms.halt_reason} data ${ds.state}`);
      if (ms.state === MoverState.PAUSED) {
        // Paused while the data service is still at work: what a DMA takes for "next cartridge".
        if (ds.state === DataState.ACTIVE) return { seen, dataHalt: -1, moverHalt: -1 };
        await tape.request(Message.MOVER_CLOSE);
      }
      if (ds.state === DataState.HALTED && ms.state === MoverState.HALTED) {
        await data.request(Message.DATA_STOP);
        await tape.request(Message.MOVER_STOP);
        return { seen, dataHalt: ds.halt_reason, moverHalt: ms.halt_reason };
      }
    }
  } finally {
    for (const a of agents) a.off("post", onPost);
  }
}

describe.runIf(havePeers("binary"))("a DMA that polls both services on every post", () => {
  let srv: RunningServer;
  let a: NdmpClient;
  let b: NdmpClient;
  const W = mkdtempSync(join(tmpdir(), "ndmpd-poll-"));
  const SRC = join(W, "src");

  beforeAll(async () => {
    makeTree(SRC, 4, 700_000);
    srv = await startServer({ config: tapeServerConfig([{ name: "vt0" }]) });
    a = await dma(srv.port);
    b = await dma(srv.port);
    // The image: a local backup onto vt0, then the filemark that ends it.
    await a.request(Message.TAPE_OPEN, { device: "vt0", mode: TapeOpenMode.RDWR });
    await a.request(Message.MOVER_SET_RECORD_SIZE, { len: 10240 });
    await a.request(Message.MOVER_SET_WINDOW, { offset: 0n, length: ALL1 });
    await a.request(Message.MOVER_LISTEN, { mode: MoverMode.READ, addr_type: AddrType.LOCAL });
    await a.request(Message.DATA_CONNECT, { addr: { addr_type: AddrType.LOCAL } });
    const since = a.posts.length;
    await a.request(Message.DATA_START_BACKUP, { butype_name: "tar", env: [{ name: "FILESYSTEM", value: SRC }] });
    expect((await a.waitForPost(Message.NOTIFY_DATA_HALTED, 60_000, since)).body.reason).toBe(DataHaltReason.SUCCESSFUL);
    await a.waitForPost(Message.NOTIFY_MOVER_HALTED, 60_000, since);
    await a.request(Message.DATA_STOP);
    await a.request(Message.MOVER_STOP);
    await a.request(Message.TAPE_MTIO, { tape_op: TapeMtioOp.EOF, count: 1 });
    await a.request(Message.TAPE_CLOSE);
  }, 60_000);
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await srv?.stop();
    rmSync(W, { recursive: true, force: true });
  });

  for (const [name, three] of [
    ["local (LOCAL data connection)", false],
    ["three-way between two sessions (TCP)", true],
  ] as const) {
    it(`${name}: never "mover PAUSED, data ACTIVE"; data SUCCESSFUL, mover CONNECT_CLOSED`, async () => {
      for (let round = 0; round < 3; round++) {
        await a.request(Message.TAPE_OPEN, { device: "vt0", mode: TapeOpenMode.READ });
        const out = join(W, `out-${three}-${round}`);
        const r = await pollingRecover(three ? b : a, a, out);
        await a.request(Message.TAPE_CLOSE);
        expect(r.dataHalt, r.seen.join("\n")).toBe(DataHaltReason.SUCCESSFUL);
        expect(r.moverHalt, r.seen.join("\n")).toBe(MoverHaltReason.CONNECT_CLOSED);
        expect(r.seen.some((s) => s.startsWith(`mover ${MoverState.PAUSED}/${MoverPauseReason.EOF}`))).toBe(false);
        expect(await compareTrees(SRC, out)).toEqual([]);
      }
    });
  }
});
