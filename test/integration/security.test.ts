/**
 * Security against the compiled binary, in a private network namespace:
 *  - data_peers: a data port refuses (and logs) a stranger at 127.0.0.2 without consuming the
 *    listen, the real peer at 127.0.0.1 still connects; without data_peers a port takes one
 *    connection; three-way backup and recovery with ndmjob work with data_peers set.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NdmpClient, NdmpClientError } from "../../src/client/client.ts";
import { AddrType, DataState, ErrorCode, LogType, Message, MoverMode, MoverState, TapeOpenMode } from "../../src/protocol/codes.ts";
import { u32ToIp } from "../../src/transport/tcp.ts";
import { until } from "../helpers/dma.ts";
import { jobSucceeded, ndmjob, startNdmjobDaemon, type NdmjobDaemon } from "../helpers/ndmjob.ts";
import { createNetns, type Netns } from "../helpers/netns.ts";
import { startDialer, type Dialer } from "../helpers/netns-dial.ts";
import { havePeers } from "../helpers/peers.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";
import { compareTrees, makeEdgeTree } from "../helpers/tree.ts";

const ready = havePeers("binary", "ndmjob", "unshare");

const serverConfig = (port: number, extra = "") =>
  `[server]\nlisten = "127.0.0.1:${port}"\nstate_dir = "$DIR/s"\nauth_failure_delay_ms = 0\n${extra}\n` +
  `[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n` +
  `[[tape]]\nname = "vt0"\npath = "$DIR/vt0.tape"\ncapacity = "256MiB"\n`;

/** Resolves when the other side closes the connection (a refusal after the accept). */
function closedByPeer(s: Socket): Promise<void> {
  s.on("error", () => {});
  s.resume();
  return new Promise((r) => (s.destroyed ? r() : s.once("close", () => r())));
}

const addrOf = (reply: { body: { connect_addr: { tcp_addr: Array<{ ip_addr: number; port: number }> } } }) => {
  const a = reply.body.connect_addr.tcp_addr[0]!;
  return { host: u32ToIp(a.ip_addr), port: a.port };
};

describe.runIf(ready)("data connections bound to their peers (data_peers)", () => {
  let ns: Netns;
  let dialer: Dialer;
  let bound: RunningServer; // data_peers = ["127.0.0.1/32"]
  let open: RunningServer; // no data_peers
  let daemon: NdmjobDaemon;
  const W = mkdtempSync(join(tmpdir(), "ndmpd-peers-"));

  const session = async (port: number) => {
    const c = await NdmpClient.over(await dialer.dial("127.0.0.1", port));
    await c.open(4);
    await c.authMd5(USER, PASSWORD);
    return c;
  };
  const dataState = async (c: NdmpClient) => (await c.request(Message.DATA_GET_STATE)).body.state as number;
  const moverState = async (c: NdmpClient) => (await c.request(Message.MOVER_GET_STATE)).body.state as number;

  beforeAll(async () => {
    ns = await createNetns();
    dialer = await startDialer(ns);
    bound = await startServer({ netns: ns, config: serverConfig(10000, 'data_peers = ["127.0.0.1/32"]') });
    open = await startServer({ netns: ns, config: serverConfig(10002) });
    daemon = await startNdmjobDaemon(ns, 10001);
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await bound?.stop();
    await open?.stop();
    await dialer?.stop();
    await ns?.stop();
    rmSync(W, { recursive: true, force: true });
  });

  it("DATA_LISTEN: a stranger at 127.0.0.2 is logged and dropped, the listen goes on, 127.0.0.1 gets in, then the port is gone", async () => {
    const c = await session(10000);
    try {
      const { host, port } = addrOf(await c.request(Message.DATA_LISTEN, { addr_type: AddrType.TCP }));
      expect(host).toBe("127.0.0.1");
      const stranger = await dialer.dial(host, port, "127.0.0.2");
      await closedByPeer(stranger);
      await until(() => bound.logs.some((l) => l.msg === "data connection refused: not in data_peers"), 5000, "the refusal's log line");
      const refusal = bound.logs.find((l) => l.msg === "data connection refused: not in data_peers")!;
      expect(refusal).toMatchObject({ level: "warn", service: "data", audit: "refused" });
      expect(refusal.from).toMatch(/^127\.0\.0\.2:\d+$/);
      expect(await dataState(c)).toBe(DataState.LISTEN);

      const real = await dialer.dial(host, port, "127.0.0.1");
      real.on("error", () => {});
      await until(async () => (await dataState(c)) === DataState.CONNECTED, 5000, "the data service to accept");
      const st = (await c.request(Message.DATA_GET_STATE)).body;
      expect(u32ToIp(st.data_connection_addr.tcp_addr[0].ip_addr)).toBe("127.0.0.1");
      // One connection only: the port closed behind it.
      await expect(dialer.dial(host, port, "127.0.0.1")).rejects.toMatchObject({ code: "ECONNREFUSED" });
      real.destroy();
      await c.request(Message.DATA_ABORT);
      await c.request(Message.DATA_STOP);
    } finally {
      await c.close();
    }
  });

  it("MOVER_LISTEN: the same, on the tape server's side", async () => {
    const c = await session(10000);
    try {
      await c.request(Message.TAPE_OPEN, { device: "vt0", mode: TapeOpenMode.RDWR });
      await c.request(Message.MOVER_SET_RECORD_SIZE, { len: 10240 });
      await c.request(Message.MOVER_SET_WINDOW, { offset: 0n, length: 2n ** 64n - 1n });
      const { host, port } = addrOf(await c.request(Message.MOVER_LISTEN, { mode: MoverMode.READ, addr_type: AddrType.TCP }));
      const before = bound.logs.filter((l) => l.msg === "data connection refused: not in data_peers" && l.service === "mover").length;
      await closedByPeer(await dialer.dial(host, port, "127.0.0.2"));
      await until(
        () => bound.logs.filter((l) => l.msg === "data connection refused: not in data_peers" && l.service === "mover").length > before,
        5000,
        "the mover's refusal",
      );
      expect(await moverState(c)).toBe(MoverState.LISTEN);
      const real = await dialer.dial(host, port, "127.0.0.1");
      real.on("error", () => {});
      await until(async () => (await moverState(c)) === MoverState.ACTIVE, 5000, "the mover to accept");
      await expect(dialer.dial(host, port)).rejects.toMatchObject({ code: "ECONNREFUSED" });
      real.destroy();
      await until(async () => (await moverState(c)) !== MoverState.ACTIVE, 5000, "the mover to halt");
      await c.request(Message.MOVER_STOP);
      await c.request(Message.TAPE_CLOSE);
    } finally {
      await c.close();
    }
  });

  it("DATA_CONNECT and MOVER_CONNECT to an address outside data_peers: ILLEGAL_ARGS and a LOG_MESSAGE, nothing dialled", async () => {
    const c = await session(10000);
    try {
      const far = { addr_type: AddrType.TCP, tcp_addr: [{ ip_addr: 0x7f000002, port: 9, addr_env: [] }] };
      const since = c.posts.length;
      await expect(c.request(Message.DATA_CONNECT, { addr: far })).rejects.toMatchObject({ error: ErrorCode.ILLEGAL_ARGS_ERR });
      const log = c.posts.slice(since).find((p) => p.code === Message.LOG_MESSAGE);
      expect(log?.body.log_type).toBe(LogType.ERROR);
      expect(log?.body.entry.toString()).toMatch(/127\.0\.0\.2:9: not in data_peers/);
      expect(await dataState(c)).toBe(DataState.IDLE);
      await c.request(Message.TAPE_OPEN, { device: "vt0", mode: TapeOpenMode.RDWR });
      await c.request(Message.MOVER_SET_RECORD_SIZE, { len: 10240 });
      await c.request(Message.MOVER_SET_WINDOW, { offset: 0n, length: 2n ** 64n - 1n });
      const err = await c.request(Message.MOVER_CONNECT, { mode: MoverMode.READ, addr: far }).catch((e: NdmpClientError) => e);
      expect(err).toMatchObject({ error: ErrorCode.ILLEGAL_ARGS_ERR });
      expect(await moverState(c)).toBe(MoverState.IDLE);
      await c.request(Message.TAPE_CLOSE);
    } finally {
      await c.close();
    }
  });

  it("without data_peers: the first connection from anywhere is served, a second one is refused", async () => {
    const c = await session(10002);
    try {
      const { host, port } = addrOf(await c.request(Message.DATA_LISTEN, { addr_type: AddrType.TCP }));
      const first = await dialer.dial(host, port, "127.0.0.2");
      first.on("error", () => {});
      await until(async () => (await dataState(c)) === DataState.CONNECTED, 5000, "the data service to accept");
      const st = (await c.request(Message.DATA_GET_STATE)).body;
      expect(u32ToIp(st.data_connection_addr.tcp_addr[0].ip_addr)).toBe("127.0.0.2");
      await expect(dialer.dial(host, port, "127.0.0.1")).rejects.toMatchObject({ code: "ECONNREFUSED" });
      first.destroy();
      await c.request(Message.DATA_ABORT).catch(() => {});
      await c.request(Message.DATA_STOP);
    } finally {
      await c.close();
    }
  });

  it("three-way backup and recovery with ndmjob work with data_peers set (our data server, ndmjob's tape agent)", async () => {
    const src = join(W, "src");
    await makeEdgeTree(src);
    const tape = join(W, "three.tape");
    writeFileSync(tape, "");
    const D = `127.0.0.1:10000/4,${USER},${PASSWORD}`;
    const T = "127.0.0.1:10001/4,ndmp,ndmp";
    const b = await ndmjob(ns, ["-c", "-v", "-D", D, "-T", T, "-f", tape, "-B", "tar", "-C", src]);
    expect(jobSucceeded(b.stdout), b.stdout).toBe(true);
    rmSync(`${tape}.lck`, { force: true });
    const out = join(W, "out");
    const x = await ndmjob(ns, ["-x", "-v", "-D", D, "-T", T, "-f", tape, "-B", "tar", "-C", out]);
    expect(jobSucceeded(x.stdout), x.stdout).toBe(true);
    expect(await compareTrees(src, out)).toEqual([]);
  }, 300_000);
});
