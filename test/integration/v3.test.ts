/**
 * NDMP version 3 end to end: ndmjob with `/3` agents against the compiled binary (query, tar
 * three-way and local backups and restores, a dump backup read by Linux `restore`, test-data,
 * test-tape, test-mover), and a v3 and a v4 backup running at the same time on one server.
 * ndmjob's daemon is the tape agent of the three-way jobs; everything runs inside a private
 * network namespace (shared/interop/ndmjob.md §1.1).
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NdmpClient, NdmpClientError } from "../../src/client/client.ts";
import { AddrType, ALL1, ALL1_32, ErrorCode, Message, MoverMode, MoverPauseReason, MoverState } from "../../src/protocol/codes.ts";
import { wireV4 } from "../../src/protocol/message.ts";
import { TAPE_PARTITION_INVALID, wireV3 } from "../../src/protocol/wire-v3.ts";
import { connectTo, moverState, postAfter, tapeServerConfig, until } from "../helpers/dma.ts";
import { createNetns, type Netns } from "../helpers/netns.ts";
import { jobSucceeded, ndmjob, simtapeFile, startNdmjobDaemon, type NdmjobDaemon } from "../helpers/ndmjob.ts";
import { havePeers } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";
import { compareTrees, makeEdgeTree, pattern } from "../helpers/tree.ts";

const ready = havePeers("binary", "ndmjob", "tar", "restore", "unshare");
const haveBinary = havePeers("binary");

/** A session opened at `version` and authenticated. */
async function session(port: number, version: number): Promise<NdmpClient> {
  const c = await NdmpClient.connect("127.0.0.1", port);
  await c.open(version);
  await c.authMd5(USER, PASSWORD);
  return c;
}

describe.runIf(haveBinary)("NDMP v3 sessions, driven by our client", () => {
  let srv: RunningServer;
  beforeAll(async () => {
    srv = await startServer({ config: tapeServerConfig([{ name: "vt0", capacity: "16MiB" }]) });
  });
  afterAll(async () => {
    expect(await srv.stop()).toBe(0);
  });

  it("CONNECT_OPEN(3) fixes the session at v3: v3 codes and structures on the wire, v3 mover defaults", async () => {
    const c = await session(srv.port, 3);
    try {
      expect(c.offeredVersion).toBe(4); // both are offered, the highest announced
      await expect(c.request(Message.CONNECT_OPEN, { protocol_version: 4 })).rejects.toMatchObject({ error: ErrorCode.ILLEGAL_STATE_ERR });
      // v4-only messages are unknown at v3 (header NOT_SUPPORTED); v3-only ones are answered.
      c.wire = wireV4; // our v3 codec cannot even encode it; its body is empty in v4
      const asking = c.request(Message.CONFIG_GET_EXT_LIST).catch((e) => e);
      c.wire = wireV3;
      const ext = await asking;
      expect(ext).toBeInstanceOf(NdmpClientError);
      expect(ext.message).toMatch(/NOT_SUPPORTED_ERR \(in the header\)/);
      for (const [code, body] of [
        [Message.SCSI_SET_TARGET, { device: "changer0", target_controller: 0, target_id: 1, target_lun: 0 }],
        [Message.SCSI_RESET_BUS, {}],
      ] as const) {
        const r = await c.request(code, body, { allowBodyError: true });
        expect(r.body.error).toBe(ErrorCode.NOT_SUPPORTED_ERR);
      }
      // The v3 mover: a default record size and an infinite window before any request.
      expect((await c.request(Message.MOVER_GET_STATE)).body).toMatchObject({
        state: MoverState.IDLE,
        mode: MoverMode.NOACTION, // v3 has no mode field: the translation's fill-in
        record_size: 10240,
        window_offset: 0n,
        window_length: ALL1,
      });
      // illumos' v3 "raw" open mode, and TAPE_GET_STATE's v3-only partition (sent invalid).
      await c.request(Message.TAPE_OPEN, { device: "vt0", mode: 0x7fffffff });
      const st = (await c.request(Message.TAPE_GET_STATE)).body;
      expect(st.partition).toBe(ALL1_32);
      expect(st.unsupported & TAPE_PARTITION_INVALID).toBe(TAPE_PARTITION_INVALID);
      await c.request(Message.TAPE_CLOSE);
    } finally {
      await c.close();
    }
  });

  it("PRECONDITION_ERR is v4 only: CONTINUE without a new window is ILLEGAL_STATE_ERR at v3", async () => {
    for (const [version, expected] of [
      [4, ErrorCode.PRECONDITION_ERR],
      [3, ErrorCode.ILLEGAL_STATE_ERR],
    ] as const) {
      const c = await session(srv.port, version);
      try {
        await c.request(Message.TAPE_OPEN, { device: "vt0", mode: 1 });
        await c.request(Message.MOVER_SET_RECORD_SIZE, { len: 10240 });
        await c.request(Message.MOVER_SET_WINDOW, { offset: 0n, length: ALL1 });
        const l = await c.request(Message.MOVER_LISTEN, { mode: MoverMode.WRITE, addr_type: AddrType.TCP });
        const sock = await connectTo(l.body.connect_addr); // v3's data_connection_addr, translated
        sock.resume();
        await until(async () => (await moverState(c)).state === MoverState.ACTIVE, 5000, "mover ACTIVE");
        const since = c.posts.length;
        await c.request(Message.MOVER_READ, { offset: 0n, length: ALL1 }); // blank tape: pauses at once
        const p = await postAfter(c, Message.NOTIFY_MOVER_PAUSED, since, 10_000);
        expect([MoverPauseReason.EOM, MoverPauseReason.EOF]).toContain(p.body.reason);
        const r = await c.request(Message.MOVER_CONTINUE, {}, { allowBodyError: true });
        expect({ version, error: r.body.error }).toEqual({ version, error: expected });
        await c.request(Message.MOVER_ABORT);
        await c.request(Message.MOVER_STOP);
        sock.destroy();
        await c.request(Message.TAPE_CLOSE);
      } finally {
        await c.close();
      }
    }
  });

  it("[server] versions: [3] announces 3 and refuses CONNECT_OPEN(4); [4] refuses CONNECT_OPEN(3)", async () => {
    for (const [versions, offered, refused] of [
      ["[3]", 3, 4],
      ["[4]", 4, 3],
    ] as const) {
      const only = await startServer({ config: tapeServerConfig([], `versions = ${versions}`) });
      try {
        const c = await NdmpClient.connect("127.0.0.1", only.port);
        expect(c.offeredVersion).toBe(offered);
        await expect(c.request(Message.CONNECT_OPEN, { protocol_version: refused })).rejects.toMatchObject({ error: ErrorCode.ILLEGAL_ARGS_ERR });
        await c.open(offered);
        await c.authMd5(USER, PASSWORD);
        expect((await c.request(Message.CONFIG_GET_HOST_INFO)).body.os_type.toString()).toBe("Linux");
        await c.close();
      } finally {
        expect(await only.stop()).toBe(0);
      }
    }
  });
});

describe.runIf(ready)("NDMP v3 with ndmjob /3 agents", () => {
  let ns: Netns;
  let srv: RunningServer;
  let daemon: NdmjobDaemon;
  const W = mkdtempSync(join(tmpdir(), "ndmpd-v3-"));
  const SRC = join(W, "src");
  const SMALL = join(W, "small");
  const TAPE = join(W, "tape");
  const D3 = `127.0.0.1:10000/3,${USER},${PASSWORD}`;
  const D4 = `127.0.0.1:10000/4,${USER},${PASSWORD}`;
  const T3 = "127.0.0.1:10001/3,ndmp,ndmp";

  /** What the server logged as the sessions' fixed versions. */
  const versionsFixed = () => srv.logs.filter((l) => l.msg === "protocol version fixed").map((l) => l.version);

  beforeAll(async () => {
    ns = await createNetns();
    mkdirSync(SRC);
    await makeEdgeTree(SRC);
    // A plain tree for dump: no pre-1970 times or nanoseconds, which dump cannot keep.
    mkdirSync(join(SMALL, "d/e"), { recursive: true });
    writeFileSync(join(SMALL, "a.txt"), "a\n");
    writeFileSync(join(SMALL, "d/e/f.bin"), Buffer.alloc(300_000, 7));
    symlinkSync("../a.txt", join(SMALL, "d/link"));
    const drives = ["vt0", "vt1", "vt2"].map((n) => `[[tape]]\nname = "${n}"\npath = "$DIR/${n}.tape"\ncapacity = "1GiB"\n`).join("");
    srv = await startServer({
      netns: ns,
      config: `[server]\nlisten = "127.0.0.1:10000"\nstate_dir = "$DIR/s"\nauth_failure_delay_ms = 0\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n${drives}`,
    });
    daemon = await startNdmjobDaemon(ns, 10001);
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    await srv?.stop();
    await ns?.stop();
    rmSync(W, { recursive: true, force: true });
  });

  it("query: -q at v3 lists the data and tape agents (v3 butype bits) without errors", async () => {
    const r = await ndmjob(ns, ["-q", "-v", "-D", D3, "-T", D3], 30_000);
    expect(r.stdout).toContain('QR "Data Agent 127.0.0.1 NDMPv3"');
    expect(r.stdout).toMatch(/QR "\s+addr_types \(3\)\s+NDMP3_ADDR_LOCAL NDMP3_ADDR_TCP NDMP3_ADDR_IPC"/);
    expect(r.stdout).toMatch(/QR "\s+Backup type info of tar format"/);
    // tar at v3: BACKUP_FILE_HISTORY 0x1, and no bit above NDMJOB's RECOVER_FILE_HISTORY 0x200.
    const attrs = Number(/Backup type info of tar format"\nQR "\s+attrs\s+(0x[0-9a-f]+)"/.exec(r.stdout)?.[1]);
    expect(attrs & 0x1).toBe(0x1);
    expect(attrs & ~0x3ff).toBe(0);
    expect(r.stdout).not.toMatch(/#[DT] "err/);
    expect(versionsFixed()).toContain(3);
  });

  it("three-way tar backup and restore at v3; renames land per the v3 nlist rules", async () => {
    freshTape(TAPE);
    const b = await ndmjob(ns, ["-c", "-v", "-D", D3, "-T", T3, "-f", TAPE, "-B", "tar", "-C", SRC, "-I", join(W, "3way.idx")]);
    expect(jobSucceeded(b.stdout), b.stdout).toBe(true);
    // The tape holds a tar stream GNU tar reads.
    const image = join(W, "3way.tar");
    writeFileSync(image, simtapeFile(readFileSync(TAPE), 0));
    expect((await run("tar", ["-t", "-f", image])).code).toBe(0);

    const all = join(W, "restore-3way");
    const x = await ndmjob(ns, ["-x", "-v", "-D", D3, "-T", T3, "-f", TAPE, "-B", "tar", "-C", all]);
    expect(jobSucceeded(x.stdout), x.stdout).toBe(true);
    expect(await compareTrees(SRC, all)).toEqual([]);

    // ndmjob sends `NEW=OLD` at v3 as (destination_dir "", new_name = the whole target path),
    // and a plain path as (destination_dir = PREFIX, new_name "").
    const sel = join(W, "restore-3way-sel");
    const x2 = await ndmjob(ns, ["-x", "-v", "-D", D3, "-T", T3, "-f", TAPE, "-B", "tar", "-C", sel, "/renamed=/files/b512", "/files/one", "/links"]);
    expect(jobSucceeded(x2.stdout), x2.stdout).toBe(true);
    expect(x2.stdout).toContain("LOG_FILE messages: 3 OK, 0 ERROR, total 3 of 3");
    expect(readFileSync(join(sel, "renamed"))).toEqual(readFileSync(join(SRC, "files/b512")));
    expect(readFileSync(join(sel, "files/one"))).toEqual(readFileSync(join(SRC, "files/one")));
    expect(readdirSync(join(sel, "links")).sort()).toEqual(readdirSync(join(SRC, "links")).sort());
    expect(readdirSync(sel).sort()).toEqual(["files", "links", "renamed"]);
  });

  it("v3 swap-connect (DATA_LISTEN, then SET_WINDOW in IDLE, then MOVER_CONNECT) with our server as both agents", async () => {
    // ndmjob's own daemon cannot be the mover here: its v3 mover refuses SET_WINDOW in IDLE
    // (ndmjob.md §8.3), and at v3 swap-connect sends SET_WINDOW before MOVER_CONNECT.
    const b = await ndmjob(ns, ["-c", "-v", "-D", D3, "-T", D3, "-f", "vt1", "-B", "tar", "-C", SRC]);
    expect(jobSucceeded(b.stdout), b.stdout).toBe(true);
    const out = join(W, "restore-swap");
    const x = await ndmjob(ns, ["-x", "-v", "-D", D3, "-T", D3, "-f", "vt1", "-B", "tar", "-o", "swap-connect", "-C", out]);
    expect(jobSucceeded(x.stdout), x.stdout).toBe(true);
    expect(await compareTrees(SRC, out)).toEqual([]);
  });

  it("local configuration at v3: our server is data and tape agent with a virtual drive", async () => {
    const b = await ndmjob(ns, ["-c", "-v", "-D", D3, "-f", "vt0", "-B", "tar", "-C", SRC, "-I", join(W, "local.idx")]);
    expect(jobSucceeded(b.stdout), b.stdout).toBe(true);
    const dst = join(W, "restore-local");
    const x = await ndmjob(ns, ["-x", "-v", "-D", D3, "-f", "vt0", "-B", "tar", "-C", dst]);
    expect(jobSucceeded(x.stdout), x.stdout).toBe(true);
    expect(await compareTrees(SRC, dst)).toEqual([]);
  });

  it("a v3 dump backup (three-way) is restored by Linux restore -r", async () => {
    freshTape(TAPE);
    const b = await ndmjob(ns, ["-c", "-v", "-D", D3, "-T", T3, "-f", TAPE, "-B", "dump", "-C", SMALL]);
    expect(jobSucceeded(b.stdout), b.stdout).toBe(true);
    const image = join(W, "v3.dump");
    writeFileSync(image, simtapeFile(readFileSync(TAPE), 0));
    const out = join(W, "restore-dump");
    mkdirSync(out);
    const r = await run("restore", ["-r", "-f", image], { cwd: out });
    expect(r.code, r.stderr).toBe(0);
    rmSync(join(out, "restoresymtable"));
    // dump keeps microseconds; restore -r does not set the times of ".".
    expect(await compareTrees(SMALL, out, { timePrecisionNs: 1000, rootTimes: false })).toEqual([]);
  });

  it("ndmjob -o test-data at v3 passes every series", async () => {
    const r = await ndmjob(ns, ["-o", "test-data", "-D", D3, "-v"], 60_000);
    expect(r.stdout).toMatch(/TEST "FINAL test-data Passed -- pass=\d+ warn=0 fail=0/);
    expect(r.code).toBe(0);
  });

  it("ndmjob -o test-mover at v3 passes every step (SET_WINDOW allowed in IDLE and in LISTEN)", async () => {
    const r = await ndmjob(ns, ["-o", "test-mover", "-T", D3, "-f", "vt1", "-v"], 60_000);
    expect(r.stdout).toMatch(/TEST "FINAL test-mover Passed -- pass=100 warn=0 fail=0 \(total 100\)"/);
    expect(r.stdout).not.toMatch(/Failed|Almost/);
    expect(r.code).toBe(0);
  });

  it("ndmjob -o test-tape at v3 passes T-OC and T-BGS; its only failure is T-BW #6 (its own zero-length write bug)", async () => {
    const r = await ndmjob(ns, ["-o", "test-tape", "-T", D3, "-f", "vt1", "-v"], 60_000);
    expect(r.stdout).toContain('TEST "Test T-OC Passed -- pass=8 warn=0 fail=0 (total 8)"');
    expect(r.stdout).toContain('TEST "Test T-BGS Passed -- pass=4 warn=0 fail=0 (total 4)"');
    const failures = r.stdout.split("\n").filter((l) => /-- (Failed|Almost)/.test(l));
    expect(failures).toEqual(['Test "T-BW #6 -- Failed NDMP3_TAPE_OPEN/NDMP9_NO_ERR got NDMP9_NO_ERR (error expected)"']);
    expect(r.stdout).not.toMatch(/T-BW #[1-5] --/);
    expect(r.code).toBe(1); // ndmjob exits 1 at its first failed step
  });

  it("a v3 and a v4 session back up at the same time on one server, and both restore", async () => {
    freshTape(TAPE);
    // Big enough that each backup takes a while: the two must overlap to prove anything.
    const BIG = join(W, "big");
    mkdirSync(BIG);
    writeFileSync(join(BIG, "big.bin"), pattern(48 * 1024 * 1024, 5));
    writeFileSync(join(BIG, "small.txt"), "small\n");
    const since = srv.logs.length;
    const [b3, b4] = await Promise.all([
      ndmjob(ns, ["-c", "-v", "-D", D3, "-T", T3, "-f", TAPE, "-B", "tar", "-C", BIG]),
      ndmjob(ns, ["-c", "-v", "-D", D4, "-f", "vt2", "-B", "tar", "-C", BIG]),
    ]);
    expect(jobSucceeded(b3.stdout), b3.stdout).toBe(true);
    expect(jobSucceeded(b4.stdout), b4.stdout).toBe(true);
    const logs = srv.logs.slice(since);
    expect(new Set(logs.filter((l) => l.msg === "protocol version fixed").map((l) => l.version))).toEqual(new Set([3, 4]));
    // Both backups started before either data service halted: the sessions really ran at once.
    const events = logs.filter((l) => (l.msg === "request" && l.message === "DATA_START_BACKUP") || l.msg === "data halted");
    const firstHalt = events.findIndex((l) => l.msg === "data halted");
    expect(events.slice(0, firstHalt).map((l) => l.msg)).toEqual(["request", "request"]);

    const out3 = join(W, "both-v3");
    const out4 = join(W, "both-v4");
    const [x3, x4] = await Promise.all([
      ndmjob(ns, ["-x", "-v", "-D", D3, "-T", T3, "-f", TAPE, "-B", "tar", "-C", out3]),
      ndmjob(ns, ["-x", "-v", "-D", D4, "-f", "vt2", "-B", "tar", "-C", out4]),
    ]);
    expect(jobSucceeded(x3.stdout), x3.stdout).toBe(true);
    expect(jobSucceeded(x4.stdout), x4.stdout).toBe(true);
    expect(await compareTrees(BIG, out3)).toEqual([]);
    expect(await compareTrees(BIG, out4)).toEqual([]);
  });
});

/** An empty simulated tape for ndmjob's daemon, without the lock a failed job may have left. */
function freshTape(path: string): void {
  rmSync(`${path}.lck`, { force: true });
  writeFileSync(path, "");
}
