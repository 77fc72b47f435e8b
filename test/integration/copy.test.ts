/**
 * `ndmpd remote copy` (data migration, data service to data service) against two compiled
 * servers, A on 127.0.0.1:10000 and B on 127.0.0.1:10002, in one private network namespace:
 *  - the edge-case corpus A -> B in tar (B listens) and in dump (A listens), equal after;
 *  - A -> A into another directory: two sessions of one server joined by NDMP IPC;
 *  - incremental copies: level 0, then the chain tree's step 1 (every change kind, deletions
 *    included), then a level 1 copy: the destination equals the source again (tar and dump);
 *  - a level 1 copy the source refuses (no level 0 of that path): the source's reason is shown;
 *  - copies whose DMA is killed midway (either side listening), one interrupted by SIGINT
 *    (aborted the NDMP way), and one whose source, then destination, session the server ends
 *    (kill-session on its admin socket): both servers stay usable (the next copy succeeds) and
 *    hold no more sockets than before.
 *  - ndmjob as the DMA of one side (-c or -x with -o tape-tcp, which DATA_CONNECTs A's data
 *    service to B's DATA_LISTEN) while our client drives B: a copy in each direction.
 * The destination's recovery is our own server's; the source's file history reaches the DMA.
 */
import { spawn } from "node:child_process";
import { connect } from "node:net";
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyChainStep, compareTrees, makeChainTree, type ChainSpec } from "../helpers/chain.ts";
import { NdmpClient } from "../../src/client/client.ts";
import { AddrType, DataHaltReason, DataState, Message } from "../../src/protocol/codes.ts";
import { jobSucceeded, ndmjob } from "../helpers/ndmjob.ts";
import { startDialer, type Dialer } from "../helpers/netns-dial.ts";
import { createNetns, type Netns } from "../helpers/netns.ts";
import { BINARY, havePeers } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";
import { makeEdgeTree } from "../helpers/tree.ts";

const ready = havePeers("binary", "unshare");
const withNdmjob = havePeers("binary", "unshare", "ndmjob");
const A = "127.0.0.1:10000";
const B = "127.0.0.1:10002";

const serverConfig = (port: number) =>
  `[server]\nlisten = "127.0.0.1:${port}"\nstate_dir = "$DIR/s"\nauth_failure_delay_ms = 0\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n`;

/** One request on a server's admin socket (what `ndmpd sessions` and `kill-session` send). */
function admin(server: RunningServer, req: object): Promise<any> {
  return new Promise((resolve, reject) => {
    const s = connect(join(server.dir, "s", "admin.sock"));
    let buf = "";
    s.on("data", (c) => (buf += c));
    s.once("error", reject);
    s.once("close", () => resolve(JSON.parse(buf)));
    s.write(JSON.stringify(req) + "\n"); // not end(): the server would close before it answers
  });
}

type Events = Array<Record<string, any>>;
const events = (stdout: string): Events => stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
const endOf = (stdout: string): Record<string, any> | undefined => events(stdout).find((e) => e.event === "end");

describe.runIf(ready)("ndmpd remote copy between two servers", () => {
  let ns: Netns;
  let a: RunningServer;
  let b: RunningServer;
  const W = mkdtempSync(join(tmpdir(), "ndmpd-copy-"));
  const SRC = join(W, "src");
  const CHAIN = join(W, "chain");
  let spec: ChainSpec;
  let dialer: Dialer;

  const argv = (...args: string[]) => [...ns.prefix(), BINARY, "remote", "copy", ...args, "--json"];
  const copy = (...args: string[]) => {
    const v = argv(...args);
    return run(v[0]!, v.slice(1), { timeoutMs: 120_000, env: { ...process.env, NDMPD_PASSWORD: PASSWORD } });
  };

  beforeAll(async () => {
    ns = await createNetns();
    await makeEdgeTree(SRC);
    mkdirSync(CHAIN);
    spec = await makeChainTree(CHAIN);
    [a, b] = await Promise.all([startServer({ netns: ns, config: serverConfig(10000) }), startServer({ netns: ns, config: serverConfig(10002) })]);
    dialer = await startDialer(ns);
  }, 180_000);

  afterAll(async () => {
    await dialer?.stop();
    await a?.stop();
    await b?.stop();
    await ns?.stop();
    rmSync(W, { recursive: true, force: true });
  });

  it("tar, A -> B, the destination listening: the edge-case corpus is equal after; file history reached the DMA", async () => {
    const dst = join(W, "tar-b");
    const r = await copy(`${A}:${SRC}`, `${B}:${dst}`);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const ev = events(r.stdout);
    expect(ev[0]).toMatchObject({ event: "start", job: "copy", format: "tar", connection: "TCP (destination listens)" });
    const end = endOf(r.stdout)!;
    // The destination's LOG_FILE outcome for the tree.
    expect(end).toMatchObject({ ok: true, outcome: "SUCCESSFUL" });
    expect(end.entries).toBeGreaterThan(20);
    expect(end.restored).toBeGreaterThan(20);
    expect(end.bytes).toBeGreaterThan(1024 * 1024);
    expect(await compareTrees(SRC, dst)).toEqual([]);
  });

  it("dump, A -> B, the source listening: equal after", async () => {
    const dst = join(W, "dump-b");
    const r = await copy(`${A}:${SRC}`, `${B}:${dst}`, "--format", "dump", "--listen", "src");
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(events(r.stdout)[0]).toMatchObject({ connection: "TCP (source listens)", format: "dump" });
    expect(endOf(r.stdout)).toMatchObject({ ok: true });
    expect(await compareTrees(SRC, dst)).toEqual([]);
  });

  for (const format of ["tar", "dump"]) {
    it(`${format}, A -> A (one server, two sessions joined by IPC): equal after`, async () => {
      const dst = join(W, `${format}-a`);
      const r = await copy(`${A}:${SRC}`, `${A}:${dst}`, "--format", format);
      expect(r.code, r.stderr + r.stdout).toBe(0);
      expect(events(r.stdout)[0]).toMatchObject({ connection: "IPC" });
      expect(endOf(r.stdout)).toMatchObject({ ok: true });
      expect(await compareTrees(SRC, dst)).toEqual([]);
    });
  }

  it("incremental copies: level 0, every change kind on the source, level 1: the destinations are up to date, deletions included", async () => {
    const dsts = { tar: join(W, "chain-tar"), dump: join(W, "chain-dump") };
    const level0: Record<string, number> = {};
    for (const [format, dst] of Object.entries(dsts)) {
      const r = await copy(`${A}:${CHAIN}`, `${B}:${dst}`, "--format", format, "--level", "0");
      expect(r.code, format + r.stderr + r.stdout).toBe(0);
      level0[format] = endOf(r.stdout)!.bytes;
      expect(await compareTrees(CHAIN, dst), `${format} level 0`).toEqual([]);
    }
    const step = applyChainStep(spec, 1);
    expect(step.removed.length).toBeGreaterThan(0);
    for (const [format, dst] of Object.entries(dsts)) {
      const r = await copy(`${A}:${CHAIN}`, `${B}:${dst}`, "--format", format, "--level", "1");
      expect(r.code, format + r.stderr + r.stdout).toBe(0);
      const end = endOf(r.stdout)!;
      expect(end).toMatchObject({ ok: true });
      // An incremental: a small part of the level 0 stream.
      expect(end.bytes, format).toBeLessThan(level0[format]! / 2);
      expect(await compareTrees(CHAIN, dst), `${format} level 1`).toEqual([]);
    }
  });

  it("--exclude leaves out what matches, as for a backup", async () => {
    const dst = join(W, "excluded");
    const r = await copy(`${A}:${join(SRC, "files")}`, `${B}:${dst}`, "--exclude", "mode0*", "--exclude", "b51*");
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const left = readdirSync(join(SRC, "files")).filter((n) => !/^(mode0|b51)/.test(n)).sort();
    expect(left.length).toBeGreaterThan(0);
    expect(readdirSync(dst).sort()).toEqual(left);
  });

  it("bad usage exits 2 with what is wrong, before connecting anywhere", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["copy", "x", "y"], /the source must be HOST\[:PORT\]:\/PATH/],
      [["copy", `${A}:/a`, `127.0.0.1:/a`], /the same directory/],
      [["copy", `${A}:/a`, `${B}:/b`, "--format", "zip"], /--format must be tar or dump/],
      [["copy", `${A}:/a`, `${B}:/b`, "--level", "99"], /--level must be a number from 0 to/],
      [["duplicate", "--from", `${A}/vt0`], /usage: ndmpd remote duplicate/],
      [["duplicate", "--from", `${A}/vt0`, "--to", `127.0.0.1/vt0`], /the same drive/],
      [["duplicate", "--from", `${A}/vt0`, "--to", `${B}/vt0`, "--files", "5-2"], /backwards/],
    ];
    for (const [args, why] of cases) {
      const r = await run(BINARY, ["remote", ...args], { timeoutMs: 30_000 });
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr, args.join(" ")).toMatch(why);
    }
  });

  it("a level 1 copy with no level 0 of that path is refused with the source's reason", async () => {
    // (No other test copies times/: the other copies record level 0s in A's dumpdates.)
    const r = await copy(`${A}:${join(SRC, "times")}`, `${B}:${join(W, "never")}`, "--level", "1");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/source refused to start.*level/i);
    const ok = await copy(`${A}:${join(SRC, "times")}`, `${B}:${join(W, "after-refusal")}`);
    expect(ok.code, ok.stderr + ok.stdout).toBe(0);
  });

  it("aborts and dropped connections leave both servers usable", async () => {
    const BIG = join(W, "big");
    mkdirSync(BIG);
    // Enough to be still running when we interrupt it (incompressible, written for real).
    const chunk = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE((i * 2654435761) >>> 0, i);
    for (let f = 0; f < 8; f++) writeFileSync(join(BIG, `f${f}`), Buffer.concat(Array.from({ length: 64 }, (_, k) => (chunk[0] = k + f, chunk))));

    // Sockets only: the scan workers' pool (bounded) keeps a thread's descriptors between backups.
    const sockets = (srv: RunningServer) =>
      readdirSync(`/proc/${srv.pid}/fd`).filter((f) => {
        try {
          return readlinkSync(`/proc/${srv.pid}/fd/${f}`).startsWith("socket:");
        } catch {
          return false; // closed meanwhile
        }
      }).length;
    const fds = [sockets(a), sockets(b)];
    // The DMA is killed (SIGKILL) once the job runs: both control connections drop.
    for (const [listen, sig] of [["dst", "SIGKILL"], ["src", "SIGKILL"], ["dst", "SIGINT"]] as const) {
      const v = argv(`${A}:${BIG}`, `${B}:${join(W, `cut-${listen}-${sig}`)}`, "--listen", listen);
      const p = spawn(v[0]!, v.slice(1), { env: { ...process.env, NDMPD_PASSWORD: PASSWORD }, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let sent = false;
      const code = await new Promise<number | null>((resolve) => {
        p.stdout!.on("data", (c: Buffer) => {
          out += c.toString();
          // The first progress event comes as the loop starts: both data services are ACTIVE.
          if (!sent && out.includes('"event":"progress"')) sent = p.kill(sig);
        });
        p.stderr!.resume();
        p.once("close", (c) => resolve(c));
      });
      if (sig === "SIGINT") {
        // Aborted the NDMP way: the job fails, and says so.
        expect(code).toBe(1);
        expect(endOf(out)).toMatchObject({ ok: false });
      } else {
        expect(code).toBe(null);
        expect(endOf(out), "killed before the end").toBeUndefined();
      }
      // Both servers take the next copy at once (their sessions were torn down).
      const dst = join(W, `after-${listen}-${sig}`);
      const r = await copy(`${A}:${join(SRC, "files")}`, `${B}:${dst}`, "--listen", listen);
      expect(r.code, `${listen} ${sig}: ` + r.stderr + r.stdout).toBe(0);
      expect(await compareTrees(join(SRC, "files"), dst)).toEqual([]);
    }
    // One server ends its side's session mid-copy (as an administrator would): the DMA reports
    // it, the other side is aborted, and both servers take the next copy.
    for (const [victim, op] of [[a, "BACKUP"], [b, "RECOVER"]] as const) {
      const v = argv(`${A}:${BIG}`, `${B}:${join(W, `killed-${op}`)}`);
      const p = spawn(v[0]!, v.slice(1), { env: { ...process.env, NDMPD_PASSWORD: PASSWORD }, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      let killed: Promise<any> | undefined;
      const code = await new Promise<number | null>((resolve) => {
        p.stdout!.on("data", (c: Buffer) => {
          out += c.toString();
          if (!killed && out.includes('"event":"progress"')) {
            killed = admin(victim, { op: "sessions" }).then((r) => {
              const s = r.sessions.find((x: any) => x.data.operation === op);
              return admin(victim, { op: "kill", id: s.id });
            });
          }
        });
        p.stderr!.on("data", (c: Buffer) => (err += c.toString()));
        p.once("close", (c) => resolve(c));
      });
      expect(await killed, op).toMatchObject({ ok: true });
      expect(code, out + err).toBe(1);
      expect(err + out, op).toMatch(/lost the connection to the (source|destination)|ABORTED/);
      const dst = join(W, `after-killed-${op}`);
      const r = await copy(`${A}:${join(SRC, "files")}`, `${B}:${dst}`);
      expect(r.code, `${op}: ` + r.stderr + r.stdout).toBe(0);
      expect(await compareTrees(join(SRC, "files"), dst)).toEqual([]);
    }
    // Sessions, data connections and listeners are all gone (the sessions end as the DMA exits).
    for (let i = 0; i < 50 && (sockets(a) > fds[0]! || sockets(b) > fds[1]!); i++) await new Promise((r) => setTimeout(r, 100));
    expect([sockets(a), sockets(b)]).toEqual(fds);
    // Neither server crashed or logged an internal error.
    for (const s of [a, b]) {
      expect(s.proc.exitCode).toBe(null);
      expect(s.logs.filter((l) => /internal|uncaught/i.test(String(l.msg)))).toEqual([]);
    }
  }, 180_000);

  it.runIf(withNdmjob)("ndmjob drives one side (-o tape-tcp: DATA_CONNECT to our other server's DATA_LISTEN), we drive the other: both directions", async () => {
    const agentA = `${A}/4,${USER},${PASSWORD}`;
    /** Our client on B (through the namespace), with B's data service listening on TCP. */
    const listenOnB = async () => {
      const c = await NdmpClient.over(await dialer.dial("127.0.0.1", 10002));
      await c.open(4);
      await c.authMd5(USER, PASSWORD);
      const l = await c.request(Message.DATA_LISTEN, { addr_type: AddrType.TCP });
      const t = l.body.connect_addr.tcp_addr[0];
      return { c, port: t.port as number };
    };
    const connected = async (c: NdmpClient) => {
      for (let i = 0; i < 1500; i++) {
        if ((await c.request(Message.DATA_GET_STATE)).body.state === DataState.CONNECTED) return;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error("ndmjob's data agent never connected");
    };

    // ndmjob backs A up into B's listener; we have B recover what arrives.
    {
      const { c, port } = await listenOnB();
      const dst = join(W, "by-ndmjob-c");
      const job = ndmjob(ns, ["-c", "-v", "-D", agentA, "-o", `tape-tcp=127.0.0.1:${port}`, "-f", "unused", "-B", "tar", "-C", SRC], 120_000);
      await connected(c);
      const halted = c.waitForPost(Message.NOTIFY_DATA_HALTED, 120_000);
      await c.request(Message.DATA_START_RECOVER, { butype_name: "tar", env: [{ name: "FILESYSTEM", value: dst }], nlist: [] });
      const [h, r] = await Promise.all([halted, job]);
      expect(jobSucceeded(r.stdout), r.stdout).toBe(true);
      expect(h.body.reason).toBe(DataHaltReason.SUCCESSFUL);
      await c.request(Message.DATA_STOP);
      await c.close();
      expect(await compareTrees(SRC, dst)).toEqual([]);
    }
    // ndmjob has A recover from B's listener; we have B back up into it.
    {
      const { c, port } = await listenOnB();
      const dst = join(W, "by-ndmjob-x");
      const job = ndmjob(ns, ["-x", "-v", "-D", agentA, "-o", `tape-tcp=127.0.0.1:${port}`, "-f", "unused", "-B", "tar", "-C", dst], 120_000);
      await connected(c);
      const halted = c.waitForPost(Message.NOTIFY_DATA_HALTED, 120_000);
      await c.request(Message.DATA_START_BACKUP, { butype_name: "tar", env: [{ name: "FILESYSTEM", value: SRC }] });
      const [h, r] = await Promise.all([halted, job]);
      expect(jobSucceeded(r.stdout), r.stdout).toBe(true);
      expect(h.body.reason).toBe(DataHaltReason.SUCCESSFUL);
      await c.request(Message.DATA_STOP);
      await c.close();
      expect(await compareTrees(SRC, dst)).toEqual([]);
    }
  }, 240_000);
});
