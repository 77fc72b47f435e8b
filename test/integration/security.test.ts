/**
 * Security against the compiled binary, in a private network namespace:
 *  - data_peers: a data port refuses (and logs) a stranger at 127.0.0.2 without consuming the
 *    listen, the real peer at 127.0.0.1 still connects; without data_peers a port takes one
 *    connection; three-way backup and recovery with ndmjob work with data_peers set.
 *  - scopes: backup and restore outside a user's paths (or through a symlink leading out) are
 *    refused before any byte moves, a device outside its list too, a read-only user cannot
 *    recover; inside its scope ndmjob backs up and restores; the audit lines of all of it,
 *    field by field.
 *  - secrets: CONNECT_SERVER_AUTH answers MD5 only unless allow_text; no password (right or
 *    wrong) in the debug log, DATA_GET_ENV or an error.
 */
import { existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NdmpClient, NdmpClientError } from "../../src/client/client.ts";
import { ALL1, AddrType, AuthType, DataState, ErrorCode, LogType, Message, MoverMode, MoverState, TapeOpenMode } from "../../src/protocol/codes.ts";
import { md5Digest } from "../../src/server/auth.ts";
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
      const isRefusal = (l: Record<string, any>) => l.msg === "audit" && l.audit === "refused" && l.operation === "DATA_LISTEN connection";
      await until(() => bound.logs.some(isRefusal), 5000, "the refusal's audit line");
      const refusal = bound.logs.find(isRefusal)!;
      expect(refusal).toMatchObject({ level: "warn", service: "data", user: USER, outcome: "dropped", why: "not in data_peers" });
      // The line names the stranger, not the DMA.
      expect(refusal.peer).toMatch(/^127\.0\.0\.2:\d+$/);
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
      const isRefusal = (l: Record<string, any>) => l.msg === "audit" && l.audit === "refused" && l.operation === "MOVER_LISTEN connection";
      await closedByPeer(await dialer.dial(host, port, "127.0.0.2"));
      await until(() => bound.logs.some(isRefusal), 5000, "the mover's refusal");
      expect(bound.logs.find(isRefusal)).toMatchObject({ service: "mover", user: USER, peer: expect.stringMatching(/^127\.0\.0\.2:/) });
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

describe.runIf(ready)("per-user scopes and the audit trail", () => {
  let ns: Netns;
  let dialer: Dialer;
  let srv: RunningServer;
  const W = realpathSync(mkdtempSync(join(tmpdir(), "ndmpd-scope-")));
  const SCOPE = join(W, "scope");
  const OUTSIDE = join(W, "outside");
  const PORT = 10000;
  const users = { scoped: "scoped-SECRET-pw", reader: "reader-SECRET-pw" };
  const SERVER_SECRET = "server-SECRET-42";

  const session = async (user: keyof typeof users) => {
    const c = await NdmpClient.over(await dialer.dial("127.0.0.1", PORT));
    await c.open(4);
    await c.authMd5(user, users[user]);
    return c;
  };
  const audits = (event: string, operation?: string) =>
    srv.logs.filter((l) => l.msg === "audit" && l.audit === event && (operation === undefined || l.operation === operation));
  /** DATA_LISTEN(TCP) and a data peer of ours that counts what it receives. */
  const listenWithPeer = async (c: NdmpClient) => {
    const r = await c.request(Message.DATA_LISTEN, { addr_type: AddrType.TCP });
    const { host, port } = addrOf(r);
    const sock = await dialer.dial(host, port);
    let received = 0;
    sock.on("data", (b: Buffer) => (received += b.length));
    sock.on("error", () => {});
    sock.resume();
    await until(async () => (await c.request(Message.DATA_GET_STATE)).body.state === DataState.CONNECTED, 5000, "the data connection");
    return { sock, received: () => received };
  };
  const env = (pairs: Record<string, string>) => Object.entries(pairs).map(([name, value]) => ({ name, value }));
  const nlist = (dest: string) => [{ original_path: "/f", destination_path: dest, name: "", other_name: "", node: ALL1, fh_info: ALL1 }];
  const logText = (c: NdmpClient, since: number) =>
    c.posts
      .slice(since)
      .filter((p) => p.code === Message.LOG_MESSAGE)
      .map((p) => p.body.entry.toString());

  beforeAll(async () => {
    mkdirSync(join(SCOPE, "data"), { recursive: true });
    mkdirSync(OUTSIDE);
    writeFileSync(join(OUTSIDE, "secret"), "not yours\n");
    symlinkSync(OUTSIDE, join(SCOPE, "link"));
    await makeEdgeTree(join(SCOPE, "data", "tree"));
    ns = await createNetns();
    dialer = await startDialer(ns);
    srv = await startServer({
      netns: ns,
      config:
        `[server]\nlisten = "127.0.0.1:${PORT}"\nstate_dir = "$DIR/s"\nauth_failure_delay_ms = 0\n` +
        `[[user]]\nname = "scoped"\npassword = "${users.scoped}"\npaths = ["${SCOPE}"]\ndevices = ["vt0"]\n` +
        `[[user]]\nname = "reader"\npassword = "${users.reader}"\nread_only = true\n` +
        `[server_auth]\nid = "filer1"\npassword = "${SERVER_SECRET}"\n` +
        `[[tape]]\nname = "vt0"\npath = "$DIR/vt0.tape"\ncapacity = "256MiB"\n` +
        `[[tape]]\nname = "vt1"\npath = "$DIR/vt1.tape"\ncapacity = "256MiB"\n` +
        `[[tape]]\nname = "vt2"\n[[changer]]\nname = "lib0"\npath = "$DIR/lib0"\nslots = 2\ndrives = ["vt2"]\ncapacity = "1MiB"\n`,
    });
  }, 120_000);

  afterAll(async () => {
    await srv?.stop();
    await dialer?.stop();
    await ns?.stop();
    rmSync(W, { recursive: true, force: true });
  });

  it("backup outside the user's paths, or through a symlink in them that leads out: NOT_AUTHORIZED before any byte moves", async () => {
    const c = await session("scoped");
    try {
      for (const root of [OUTSIDE, join(SCOPE, "link")]) {
        const peer = await listenWithPeer(c);
        const since = c.posts.length;
        await expect(c.request(Message.DATA_START_BACKUP, { butype_name: "tar", env: env({ FILESYSTEM: root }) })).rejects.toMatchObject({
          error: ErrorCode.NOT_AUTHORIZED_ERR,
        });
        expect(logText(c, since).join("\n")).toMatch(new RegExp(`user scoped may not back up ${root}.*outside its paths ${SCOPE}`));
        // Nothing started: still CONNECTED, not one byte on the data connection.
        expect((await c.request(Message.DATA_GET_STATE)).body.state).toBe(DataState.CONNECTED);
        expect(peer.received()).toBe(0);
        peer.sock.destroy();
        await c.request(Message.DATA_ABORT);
        await c.request(Message.DATA_STOP);
      }
    } finally {
      await c.close();
    }
    const refused = audits("refused", "DATA_START_BACKUP");
    expect(refused).toHaveLength(2);
    expect(refused[0]).toMatchObject({ level: "warn", user: "scoped", paths: [OUTSIDE], outcome: "NOT_AUTHORIZED_ERR" });
    expect(refused[0]!.peer).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(refused[0]!.why).toBe(`user scoped may not back up ${OUTSIDE}: outside its paths ${SCOPE}`);
    expect(refused[1]).toMatchObject({ user: "scoped", paths: [join(SCOPE, "link")], outcome: "NOT_AUTHORIZED_ERR" });
    expect(refused[1]!.why).toContain(`(which leads to ${OUTSIDE})`);
  });

  it("restore outside the user's paths, or through the symlink: refused before any byte moves, nothing created", async () => {
    const c = await session("scoped");
    try {
      for (const dest of [join(OUTSIDE, "r1"), join(SCOPE, "link", "r2")]) {
        const peer = await listenWithPeer(c);
        const since = c.posts.length;
        await expect(
          c.request(Message.DATA_START_RECOVER, { butype_name: "tar", env: env({ FILESYSTEM: SCOPE }), nlist: nlist(dest) }),
        ).rejects.toMatchObject({ error: ErrorCode.NOT_AUTHORIZED_ERR });
        expect(logText(c, since).join("\n")).toMatch(/user scoped may not restore to/);
        // No NOTIFY_DATA_READ: the DMA was never asked for a byte of the image.
        expect(c.posts.slice(since).some((p) => p.code === Message.NOTIFY_DATA_READ)).toBe(false);
        expect((await c.request(Message.DATA_GET_STATE)).body.state).toBe(DataState.CONNECTED);
        peer.sock.destroy();
        await c.request(Message.DATA_ABORT);
        await c.request(Message.DATA_STOP);
      }
      expect(existsSync(join(OUTSIDE, "r1"))).toBe(false);
      expect(existsSync(join(OUTSIDE, "r2"))).toBe(false);
    } finally {
      await c.close();
    }
    const refused = audits("refused", "DATA_START_RECOVER");
    expect(refused.map((l) => l.paths)).toEqual([[join(OUTSIDE, "r1")], [join(SCOPE, "link", "r2")]]);
    for (const l of refused) expect(l).toMatchObject({ user: "scoped", outcome: "NOT_AUTHORIZED_ERR" });
  });

  it("a device outside the user's list: NOT_AUTHORIZED; its own device opens", async () => {
    const c = await session("scoped");
    try {
      const since = c.posts.length;
      await expect(c.request(Message.TAPE_OPEN, { device: "vt1", mode: TapeOpenMode.READ })).rejects.toMatchObject({ error: ErrorCode.NOT_AUTHORIZED_ERR });
      expect(logText(c, since)).toContain("user scoped may not open vt1: not among its devices");
      await c.request(Message.TAPE_OPEN, { device: "vt0", mode: TapeOpenMode.READ });
      await c.request(Message.TAPE_CLOSE);
      // A changer outside the list, and the tape by its path instead of its name, the same.
      await expect(c.request(Message.SCSI_OPEN, { device: "lib0" })).rejects.toMatchObject({ error: ErrorCode.NOT_AUTHORIZED_ERR });
      await expect(c.request(Message.TAPE_OPEN, { device: join(srv.dir, "vt1.tape"), mode: TapeOpenMode.READ })).rejects.toMatchObject({
        error: ErrorCode.NOT_AUTHORIZED_ERR,
      });
    } finally {
      await c.close();
    }
    expect(audits("refused", "TAPE_OPEN").map((l) => l.devices)).toEqual([["vt1"], ["vt1"]]);
    expect(audits("refused", "TAPE_OPEN")[0]).toMatchObject({ user: "scoped", outcome: "NOT_AUTHORIZED_ERR" });
    expect(audits("refused", "SCSI_OPEN").at(-1)).toMatchObject({ user: "scoped", devices: ["lib0"], outcome: "NOT_AUTHORIZED_ERR" });
    // Another user, without a device list, opens the changer.
    const r = await session("reader");
    try {
      await r.request(Message.SCSI_OPEN, { device: "lib0" });
      await r.request(Message.SCSI_CLOSE);
    } finally {
      await r.close();
    }
  });

  it("a read-only user cannot recover, anywhere", async () => {
    const c = await session("reader");
    try {
      const peer = await listenWithPeer(c);
      const since = c.posts.length;
      await expect(
        c.request(Message.DATA_START_RECOVER, { butype_name: "tar", env: env({ FILESYSTEM: W }), nlist: nlist(join(W, "ro")) }),
      ).rejects.toMatchObject({ error: ErrorCode.NOT_AUTHORIZED_ERR });
      expect(logText(c, since)).toContain("user reader is read-only: backups only, no recovery");
      expect(peer.received()).toBe(0);
      expect(existsSync(join(W, "ro"))).toBe(false);
      peer.sock.destroy();
    } finally {
      await c.close();
    }
    expect(audits("refused", "DATA_START_RECOVER").at(-1)).toMatchObject({ user: "reader", paths: [join(W, "ro")], outcome: "NOT_AUTHORIZED_ERR" });
  });

  it("inside its scope ndmjob backs up and restores; job-start and job-end lines for the data and the mover, field by field", async () => {
    const D = `127.0.0.1:${PORT}/4,scoped,${users.scoped}`;
    const src = join(SCOPE, "data");
    const before = srv.logs.length;
    const b = await ndmjob(ns, ["-c", "-v", "-D", D, "-f", "vt0", "-B", "tar", "-C", src]);
    expect(jobSucceeded(b.stdout), b.stdout).toBe(true);
    const out = join(SCOPE, "restored");
    const x = await ndmjob(ns, ["-x", "-v", "-D", D, "-f", "vt0", "-B", "tar", "-C", out, "/tree"]);
    expect(jobSucceeded(x.stdout), x.stdout).toBe(true);
    expect(await compareTrees(join(src, "tree"), join(out, "tree"))).toEqual([]);

    const lines = srv.logs.slice(before).filter((l) => l.msg === "audit");
    const one = (event: string, operation: string) => {
      const found = lines.filter((l) => l.audit === event && l.operation === operation);
      expect(found, `${event} ${operation}`).toHaveLength(1);
      return found[0]!;
    };
    const peer = expect.stringMatching(/^127\.0\.0\.1:\d+$/);
    const bStart = one("job-start", "DATA_OP_BACKUP");
    expect(bStart).toEqual({ time: expect.any(String), level: "info", msg: "audit", session: expect.any(Number), peer, service: "data", audit: "job-start", user: "scoped", operation: "DATA_OP_BACKUP", paths: [src], devices: ["vt0"], outcome: "started" });
    const bEnd = one("job-end", "DATA_OP_BACKUP");
    expect(bEnd).toMatchObject({ level: "info", session: bStart.session, peer: bStart.peer, user: "scoped", paths: [src], devices: ["vt0"], outcome: "SUCCESSFUL" });
    const mEnd = lines.find((l) => l.audit === "job-end" && l.operation === "MOVER_MODE_READ" && l.session === bStart.session)!;
    expect(mEnd).toMatchObject({ service: "mover", user: "scoped", devices: ["vt0"], outcome: "CONNECT_CLOSED" });
    // The data service's bytes are the stream's, which the mover wrote to tape: the same count.
    expect(Number(bEnd.bytes)).toBeGreaterThan(1024 * 1024);
    expect(Number(mEnd.bytes)).toBe(Number(bEnd.bytes));

    const rStart = one("job-start", "DATA_OP_RECOVER");
    // A restore names its nlist destinations.
    expect(rStart).toMatchObject({ user: "scoped", paths: [join(out, "tree")], devices: ["vt0"], outcome: "started" });
    const rEnd = one("job-end", "DATA_OP_RECOVER");
    expect(rEnd).toMatchObject({ user: "scoped", paths: [join(out, "tree")], outcome: "SUCCESSFUL" });
    expect(Number(rEnd.bytes)).toBeGreaterThan(0);
    expect(lines.some((l) => l.audit === "job-start" && l.operation === "MOVER_MODE_WRITE" && l.devices?.[0] === "vt0")).toBe(true);
  }, 300_000);

  it("a failed login and a request before login are refusals in the trail", async () => {
    const c = await NdmpClient.over(await dialer.dial("127.0.0.1", PORT));
    try {
      await c.open(4);
      await expect(c.authMd5("scoped", "wrong")).rejects.toMatchObject({ error: ErrorCode.NOT_AUTHORIZED_ERR });
      await expect(c.request(Message.DATA_GET_STATE)).rejects.toMatchObject({ error: ErrorCode.NOT_AUTHORIZED_ERR });
    } finally {
      await c.close();
    }
    expect(audits("refused", "CONNECT_CLIENT_AUTH").at(-1)).toMatchObject({ level: "warn", user: "scoped", outcome: "NOT_AUTHORIZED_ERR", why: "wrong user or password" });
    const early = audits("refused", "DATA_GET_STATE").at(-1)!;
    expect(early).toMatchObject({ outcome: "NOT_AUTHORIZED_ERR", why: "not authenticated" });
    expect(early.user).toBeUndefined();
  });
});

describe.runIf(ready)("secrets never in clear", () => {
  let ns: Netns;
  let dialer: Dialer;
  let strict: RunningServer;
  let lax: RunningServer;
  const W = realpathSync(mkdtempSync(join(tmpdir(), "ndmpd-secrets-")));
  const USER_SECRET = "user-SECRET-7f3a";
  const WRONG = "wrong-SECRET-9c1d";
  const SERVER_SECRET = "server-SECRET-b81e";
  const config = (port: number, extra = "") =>
    `[server]\nlisten = "127.0.0.1:${port}"\nstate_dir = "$DIR/s"\nauth_failure_delay_ms = 0\n[auth]\nmethods = ["md5", "text"]\n` +
    `[[user]]\nname = "ndmp"\npassword = "${USER_SECRET}"\n[server_auth]\nid = "filer1"\npassword = "${SERVER_SECRET}"\n${extra}`;
  const connect = async (port: number) => {
    const c = await NdmpClient.over(await dialer.dial("127.0.0.1", port));
    await c.open(4);
    return c;
  };
  /** Every form a secret could leak in. */
  const forms = (secret: string) => [secret, Buffer.from(secret).toString("base64"), Buffer.from(secret).toString("hex")];

  beforeAll(async () => {
    mkdirSync(join(W, "src"));
    writeFileSync(join(W, "src", "f"), "data\n");
    ns = await createNetns();
    dialer = await startDialer(ns);
    strict = await startServer({ netns: ns, config: config(10000) });
    lax = await startServer({ netns: ns, config: config(10002, "allow_text = true\n") });
  }, 120_000);

  afterAll(async () => {
    await strict?.stop();
    await lax?.stop();
    await dialer?.stop();
    await ns?.stop();
    rmSync(W, { recursive: true, force: true });
  });

  it("CONNECT_SERVER_AUTH: MD5 by default, TEXT refused; TEXT only with allow_text", async () => {
    const c = await connect(10000);
    try {
      await c.authMd5("ndmp", USER_SECRET);
      const challenge = Buffer.alloc(64, 7);
      const md5 = await c.request(Message.CONNECT_SERVER_AUTH, { client_attr: { auth_type: AuthType.MD5, challenge } });
      expect(md5.body.server_result.auth_md5.auth_id.toString()).toBe("filer1");
      expect(Buffer.from(md5.body.server_result.auth_md5.auth_digest).equals(md5Digest(Buffer.from(SERVER_SECRET), challenge))).toBe(true);
      await expect(c.request(Message.CONNECT_SERVER_AUTH, { client_attr: { auth_type: AuthType.TEXT } })).rejects.toMatchObject({
        error: ErrorCode.ILLEGAL_ARGS_ERR,
      });
    } finally {
      await c.close();
    }
    const l = await connect(10002);
    try {
      await l.authMd5("ndmp", USER_SECRET);
      const text = await l.request(Message.CONNECT_SERVER_AUTH, { client_attr: { auth_type: AuthType.TEXT } });
      expect(text.body.server_result.auth_text.auth_password.toString()).toBe(SERVER_SECRET);
    } finally {
      await l.close();
    }
  });

  it("no secret in the debug log, DATA_GET_ENV or an error, after logins right and wrong and a job", async () => {
    const c = await connect(10000);
    const errors: string[] = [];
    try {
      await c.authText("ndmp", WRONG).catch((e: Error) => errors.push(e.message));
      await c.authMd5("ndmp", WRONG).catch((e: Error) => errors.push(e.message));
      await c.authText("ndmp", USER_SECRET);
      await c.request(Message.CONNECT_SERVER_AUTH, { client_attr: { auth_type: AuthType.TEXT } }).catch((e: Error) => errors.push(e.message));
      const { host, port } = addrOf(await c.request(Message.DATA_LISTEN, { addr_type: AddrType.TCP }));
      const sink = await dialer.dial(host, port);
      sink.on("error", () => {});
      sink.resume();
      const since = c.posts.length;
      await until(async () => (await c.request(Message.DATA_GET_STATE)).body.state === DataState.CONNECTED, 5000, "the data connection");
      await c.request(Message.DATA_START_BACKUP, { butype_name: "tar", env: [{ name: "FILESYSTEM", value: join(W, "src") }] });
      await c.waitForPost(Message.NOTIFY_DATA_HALTED, 30_000, since);
      const got = (await c.request(Message.DATA_GET_ENV)).body.env as Array<{ name: Buffer; value: Buffer }>;
      const envText = got.map((p) => `${p.name}=${p.value}`).join("\n");
      expect(envText).toContain("TYPE=tar");
      const messages = c.posts.filter((p) => p.code === Message.LOG_MESSAGE).map((p) => p.body.entry.toString()).join("\n");
      const log = strict.stderr();
      expect(log).toContain("authentication failed"); // the failures were logged, without their passwords
      for (const secret of [USER_SECRET, WRONG, SERVER_SECRET]) {
        for (const f of forms(secret)) {
          expect(log, `log holds ${f}`).not.toContain(f);
          expect(envText).not.toContain(f);
          expect(messages).not.toContain(f);
          expect(errors.join("\n")).not.toContain(f);
        }
      }
      await c.request(Message.DATA_STOP);
    } finally {
      await c.close();
    }
  });
});
