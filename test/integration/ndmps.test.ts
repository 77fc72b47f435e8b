/**
 * NDMPS against the compiled binary, in a private network namespace, with certificates made by
 * openssl at test time:
 *  - `ndmpd query --tls` and a CLI backup and recovery over TLS (`ndmpd remote ... --tls`);
 *  - a wrong CA on either side, an expired or a missing client certificate (when required) are
 *    refused, and so is plain NDMP on the TLS port (its handshake never starts);
 *  - a verified client certificate whose CN a [[user]] names logs the session in as that user;
 *  - NDMPD_DATA_TLS: a DMA selects the extension class on two servers' sessions, and a backup
 *    and its recovery between them run over TLS data connections (a plain peer is dropped).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NdmpClient } from "../../src/client/client.ts";
import { ALL1, AddrType, DataHaltReason, ErrorCode, Message, MoverMode, MoverState, TapeMtioOp, TapeOpenMode } from "../../src/protocol/codes.ts";
import { u32ToIp } from "../../src/transport/tcp.ts";
import { DATA_TLS_CLASS } from "../../src/transport/tls.ts";
import { makeCerts, type Certs } from "../helpers/certs.ts";
import { until } from "../helpers/dma.ts";
import { createNetns, type Netns } from "../helpers/netns.ts";
import { startDialer, type Dialer } from "../helpers/netns-dial.ts";
import { BINARY, havePeers } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";
import { compareTrees, makeEdgeTree } from "../helpers/tree.ts";

const ready = havePeers("binary", "unshare", "openssl");

describe.runIf(ready)("NDMPS (NDMP over TLS)", () => {
  let ns: Netns;
  let dialer: Dialer;
  let certs: Certs;
  let open: RunningServer; // TLS on 30002, no client certificates asked for
  let mutual: RunningServer; // TLS on 30000, a client certificate required
  const W = mkdtempSync(join(tmpdir(), "ndmpd-ndmps-"));

  const config = (plain: number, tls: number, extra: string) =>
    `[server]\nlisten = "127.0.0.1:${plain}"\nstate_dir = "$DIR/s"\nauth_failure_delay_ms = 0\n` +
    `[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n` +
    `[[user]]\nname = "dma"\ncert_cn = "dma-1"\n` +
    `[[tape]]\nname = "vt0"\npath = "$DIR/vt0.tape"\ncapacity = "256MiB"\n` +
    `[tls]\nlisten = "127.0.0.1:${tls}"\ncert = "${certs.serverCert}"\nkey = "${certs.serverKey}"\nhandshake_timeout_ms = 1000\n${extra}`;
  /** The binary inside the namespace. */
  const cli = (...args: string[]) => {
    const argv = [...ns.prefix(), BINARY, ...args];
    return run(argv[0]!, argv.slice(1), { timeoutMs: 60_000, env: { ...process.env, NDMPD_PASSWORD: PASSWORD } });
  };
  const query = (port: number, ...tls: string[]) => cli("query", `127.0.0.1:${port}`, "--user", USER, "--tls", ...tls);
  const refusals = (srv: RunningServer) => srv.logs.filter((l) => l.msg === "audit" && l.audit === "refused" && l.operation === "TLS handshake");
  const tlsClient = async (port: number, files: { cert?: string; key?: string; ca?: string } = {}) =>
    NdmpClient.connectTls("127.0.0.1", port, {
      socket: await dialer.dial("127.0.0.1", port),
      ca: readFileSync(files.ca ?? certs.ca),
      cert: files.cert ? readFileSync(files.cert) : undefined,
      key: files.key ? readFileSync(files.key) : undefined,
    });

  beforeAll(async () => {
    certs = await makeCerts(join(W, "pki"));
    ns = await createNetns();
    dialer = await startDialer(ns);
    open = await startServer({ netns: ns, config: config(10002, 30002, "") });
    mutual = await startServer({ netns: ns, config: config(10000, 30000, `client_ca = "${certs.ca}"\nrequire_client_cert = true\n`) });
  }, 120_000);

  afterAll(async () => {
    await open?.stop();
    await mutual?.stop();
    await dialer?.stop();
    await ns?.stop();
    rmSync(W, { recursive: true, force: true });
  });

  it("ndmpd query --tls verifies the server against --tls-ca and asks its questions over TLS 1.2+", async () => {
    const r = await query(30002, "--tls-ca", certs.ca);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Server 127\.0\.0\.1:30002 NDMPv4 \(TLS\)\n/);
    expect(r.stdout).toMatch(/vendor\s+ndmpd/);
    expect(open.logs.some((l) => l.msg === "listening" && l.port === 30002 && l.tls === true)).toBe(true);
  });

  it("a server whose certificate does not chain to --tls-ca (or the system's CAs) is refused by the client", async () => {
    const wrong = await query(30002, "--tls-ca", certs.otherCa);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/certificate/i);
    const system = await query(30002);
    expect(system.code).not.toBe(0);
    expect(system.stderr).toMatch(/certificate/i);
  });

  it("plain NDMP on the TLS port is refused: no NOTIFY_CONNECTION_STATUS, the connection closed at the handshake timeout", async () => {
    const before = refusals(open).length;
    await expect(NdmpClient.over(await dialer.dial("127.0.0.1", 30002), { timeoutMs: 10_000 })).rejects.toThrow(/closed/);
    await until(() => refusals(open).length > before, 5000, "the refusal's audit line");
    expect(refusals(open).at(-1)).toMatchObject({ level: "warn", outcome: "ERR_TLS_HANDSHAKE_TIMEOUT", peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
  });

  it("a TLS handshake under way holds an unauthenticated slot: a stranger's idle sockets on the TLS port are bounded, others still get in", async () => {
    const srv = await startServer({ netns: ns, config: config(10004, 30004, `[limits]\nmax_unauthenticated_per_source = 2\n`).replace("handshake_timeout_ms = 1000", "handshake_timeout_ms = 60000") });
    const idle: Socket[] = [];
    try {
      // startServer returns once the plain port listens; the TLS one may follow.
      await until(() => srv.logs.some((l) => l.msg === "listening" && l.port === 30004 && l.tls === true), 10_000, "the TLS listener");
      // Two sockets from 127.0.0.2 that never start a handshake hold its two slots.
      for (let i = 0; i < 2; i++) idle.push(await dialer.dial("127.0.0.1", 30004, "127.0.0.2"));
      const third = await dialer.dial("127.0.0.1", 30004, "127.0.0.2");
      third.on("error", () => {});
      third.resume();
      // Closed at once: without the count it would wait out the 60 s handshake timeout.
      await new Promise<void>((r) => third.once("close", () => r()));
      expect(srv.logs.some((l) => l.msg === "connection refused: too many unauthenticated connections from this address")).toBe(true);
      // Another address is not held up.
      const r = await query(30004, "--tls-ca", certs.ca);
      expect(r.code, r.stderr).toBe(0);
      // Once the stranger lets go, it may connect again.
      for (const s of idle) s.destroy();
      await until(async () => {
        try {
          const c = await NdmpClient.connectTls("127.0.0.1", 30004, { socket: await dialer.dial("127.0.0.1", 30004, "127.0.0.2"), ca: readFileSync(certs.ca) });
          await c.close();
          return true;
        } catch {
          return false;
        }
      }, 10_000, "a TLS session from 127.0.0.2 after its idle sockets closed");
    } finally {
      for (const s of idle) s.destroy();
      expect(await srv.stop()).toBe(0);
    }
  }, 30_000);

  it("mutual TLS: the client certificate is required; missing, expired or from another CA is refused", async () => {
    const ok = await query(30000, "--tls-ca", certs.ca, "--tls-cert", certs.clientCert, "--tls-key", certs.clientKey);
    expect(ok.code, ok.stderr).toBe(0);
    const cases: Array<[string, string[], RegExp]> = [
      ["missing", [], /CERTIFICATE_REQUIRED|PEER_DID_NOT_RETURN_A_CERTIFICATE|certificate/i],
      ["expired", ["--tls-cert", certs.expiredCert, "--tls-key", certs.clientKey], /CERT_HAS_EXPIRED|expired/i],
      ["other CA", ["--tls-cert", certs.otherClientCert, "--tls-key", certs.otherClientKey], /UNABLE_TO_GET_ISSUER_CERT|unknown ca|issuer|certificate/i],
    ];
    for (const [what, files, outcome] of cases) {
      const before = refusals(mutual).length;
      const r = await query(30000, "--tls-ca", certs.ca, ...files);
      expect(r.code, `${what}: ${r.stdout}`).not.toBe(0);
      await until(() => refusals(mutual).length > before, 5000, `the server's refusal (${what})`);
      const line = refusals(mutual).at(-1)!;
      expect(`${line.outcome} ${line.why}`, what).toMatch(outcome);
    }
    expect(refusals(mutual).some((l) => l.outcome === "CERT_HAS_EXPIRED")).toBe(true);
  });

  it("a verified certificate with a [[user]]'s cert_cn logs in as that user, with no CONNECT_CLIENT_AUTH", async () => {
    const c = await tlsClient(30000, { cert: certs.clientCert, key: certs.clientKey });
    try {
      await c.open(4);
      const st = await c.request(Message.DATA_GET_STATE);
      expect(st.body.error).toBe(ErrorCode.NO_ERR);
    } finally {
      await c.close();
    }
    expect(mutual.logs.find((l) => l.msg === "authenticated" && l.method === "tls-certificate")).toMatchObject({ user: "dma", cn: "dma-1" });
    // Without the certificate (on the open server, which asks for none) the same user has no
    // password to log in with, and nothing is allowed before a login.
    const p = await tlsClient(30002);
    try {
      await p.open(4);
      await expect(p.request(Message.DATA_GET_STATE)).rejects.toMatchObject({ error: ErrorCode.NOT_AUTHORIZED_ERR });
      await expect(p.authMd5("dma", "")).rejects.toMatchObject({ error: ErrorCode.NOT_AUTHORIZED_ERR });
    } finally {
      await p.close();
    }
  });

  it("a CLI backup and recovery over TLS: ndmpd remote backup|recover --tls", async () => {
    const src = join(W, "src");
    await makeEdgeTree(src);
    const state = join(W, "cli-state");
    mkdirSync(state);
    const tls = ["--tls", "--tls-ca", certs.ca];
    const b = await cli("remote", "backup", src, "--data", "127.0.0.1:30002", "--device", "vt0", "--state-dir", state, "--json", ...tls);
    expect(b.code, b.stderr + b.stdout).toBe(0);
    const out = join(W, "out");
    const r = await cli("remote", "recover", "--data", "127.0.0.1:30002", "--device", "vt0", "--file", "1", "--to", out, "--state-dir", state, "--json", ...tls);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(await compareTrees(src, out)).toEqual([]);
    // The jobs came in on the TLS port: the server's sessions were opened there.
    const jobs = open.logs.filter((l) => l.msg === "audit" && l.audit === "job-end" && l.outcome === "SUCCESSFUL" && l.operation?.startsWith("DATA_OP_"));
    expect(jobs.map((l) => l.operation)).toEqual(["DATA_OP_BACKUP", "DATA_OP_RECOVER"]);
  }, 300_000);
});

describe.runIf(ready)("TLS data connections between two ndmpd servers (NDMPD_DATA_TLS)", () => {
  let ns: Netns;
  let dialer: Dialer;
  let certs: Certs;
  let dataSrv: RunningServer;
  let tapeSrv: RunningServer;
  const W = mkdtempSync(join(tmpdir(), "ndmpd-datatls-"));

  const config = (plain: number, tls: number) =>
    `[server]\nlisten = "127.0.0.1:${plain}"\nstate_dir = "$DIR/s"\nauth_failure_delay_ms = 0\n` +
    `[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n` +
    `[[tape]]\nname = "vt0"\npath = "$DIR/vt0.tape"\ncapacity = "256MiB"\n` +
    `[tls]\nlisten = "127.0.0.1:${tls}"\ncert = "${certs.serverCert}"\nkey = "${certs.serverKey}"\npeer_ca = "${certs.ca}"\n`;
  const session = async (port: number, selectTls: boolean) => {
    const c = await NdmpClient.over(await dialer.dial("127.0.0.1", port));
    await c.open(4);
    await c.authMd5(USER, PASSWORD);
    const ext = await c.request(Message.CONFIG_GET_EXT_LIST);
    expect(ext.body.class_list).toEqual([{ class_id: DATA_TLS_CLASS, class_version: [1] }]);
    await c.request(Message.CONFIG_SET_EXT_LIST, { ndmp_selected_ext: selectTls ? [{ class_id: DATA_TLS_CLASS, class_version: 1 }] : [] });
    return c;
  };
  const audits = (srv: RunningServer, event: string, operation: string) =>
    srv.logs.filter((l) => l.msg === "audit" && l.audit === event && l.operation === operation);

  beforeAll(async () => {
    certs = await makeCerts(join(W, "pki"));
    ns = await createNetns();
    dialer = await startDialer(ns);
    dataSrv = await startServer({ netns: ns, config: config(10004, 30004) });
    tapeSrv = await startServer({ netns: ns, config: config(10006, 30006) });
  }, 120_000);

  afterAll(async () => {
    await dataSrv?.stop();
    await tapeSrv?.stop();
    await dialer?.stop();
    await ns?.stop();
    rmSync(W, { recursive: true, force: true });
  });

  it("SET_EXT_LIST: an unknown class or version is refused and selects nothing", async () => {
    const c = await NdmpClient.over(await dialer.dial("127.0.0.1", 10004));
    try {
      await c.open(4);
      await c.authMd5(USER, PASSWORD);
      await c.request(Message.CONFIG_GET_EXT_LIST);
      await expect(c.request(Message.CONFIG_SET_EXT_LIST, { ndmp_selected_ext: [{ class_id: 0x2050, class_version: 1 }] })).rejects.toMatchObject({ error: ErrorCode.CLASS_NOT_SUPPORTED_ERR });
      await expect(c.request(Message.CONFIG_SET_EXT_LIST, { ndmp_selected_ext: [{ class_id: DATA_TLS_CLASS, class_version: 2 }] })).rejects.toMatchObject({ error: ErrorCode.VERSION_NOT_SUPPORTED_ERR });
      await c.request(Message.CONFIG_SET_EXT_LIST, { ndmp_selected_ext: [{ class_id: DATA_TLS_CLASS, class_version: 1 }] });
      await expect(c.request(Message.CONFIG_SET_EXT_LIST, { ndmp_selected_ext: [] })).rejects.toMatchObject({ error: ErrorCode.EXT_DANDN_ILLEGAL_ERR });
    } finally {
      await c.close();
    }
  });

  it("right after DATA_CONNECT returns, the listening mover reports the TLS connection made (ACTIVE, never LISTEN)", async () => {
    const d = await session(10004, true);
    const t = await session(10006, true);
    try {
      await t.request(Message.TAPE_OPEN, { device: "vt0", mode: TapeOpenMode.RDWR });
      await t.request(Message.MOVER_SET_RECORD_SIZE, { len: 10240 });
      for (let i = 0; i < 20; i++) {
        await t.request(Message.MOVER_SET_WINDOW, { offset: 0n, length: ALL1 });
        const l = await t.request(Message.MOVER_LISTEN, { mode: MoverMode.READ, addr_type: AddrType.TCP });
        await d.request(Message.DATA_CONNECT, { addr: l.body.connect_addr });
        // The client's side of the handshake ends first: the mover must still count it as made.
        expect((await t.request(Message.MOVER_GET_STATE)).body.state, `round ${i}`).toBe(MoverState.ACTIVE);
        await d.request(Message.DATA_ABORT);
        await d.request(Message.DATA_STOP);
        await t.request(Message.MOVER_ABORT);
        await t.request(Message.MOVER_STOP);
      }
      await t.request(Message.TAPE_CLOSE);
    } finally {
      await d.close();
      await t.close();
    }
  });

  it("a backup (our mover listens, our data service connects) and its recovery (the other way round), both in TLS", async () => {
    const src = join(W, "src");
    await makeEdgeTree(src);
    const d = await session(10004, true);
    const t = await session(10006, true);
    try {
      await t.request(Message.TAPE_OPEN, { device: "vt0", mode: TapeOpenMode.RDWR });
      await t.request(Message.MOVER_SET_RECORD_SIZE, { len: 10240 });
      await t.request(Message.MOVER_SET_WINDOW, { offset: 0n, length: ALL1 });
      const listen = await t.request(Message.MOVER_LISTEN, { mode: MoverMode.READ, addr_type: AddrType.TCP });
      const a = listen.body.connect_addr.tcp_addr[0];

      // A plain peer cannot take the port: its handshake fails, it is dropped, the listen goes on.
      const plain = await dialer.dial(u32ToIp(a.ip_addr), a.port);
      plain.on("error", () => {});
      plain.end("NDMP data in clear\n");
      plain.resume();
      await until(() => audits(tapeSrv, "refused", "MOVER_LISTEN connection").length > 0, 10_000, "the plain peer's refusal");
      expect(audits(tapeSrv, "refused", "MOVER_LISTEN connection")[0]!.why).toMatch(/^TLS: /);

      const since = d.posts.length;
      const tSince = t.posts.length;
      await d.request(Message.DATA_CONNECT, { addr: listen.body.connect_addr });
      await d.request(Message.DATA_START_BACKUP, { butype_name: "tar", env: [{ name: "FILESYSTEM", value: src }] });
      expect((await d.waitForPost(Message.NOTIFY_DATA_HALTED, 60_000, since)).body.reason).toBe(DataHaltReason.SUCCESSFUL);
      await t.waitForPost(Message.NOTIFY_MOVER_HALTED, 30_000, tSince);
      await d.request(Message.DATA_STOP);
      await t.request(Message.MOVER_STOP);
      await t.request(Message.TAPE_MTIO, { tape_op: TapeMtioOp.REW, count: 1 });

      const dStart = audits(dataSrv, "job-start", "DATA_OP_BACKUP").at(-1)!;
      const mStart = audits(tapeSrv, "job-start", "MOVER_MODE_READ").at(-1)!;
      expect(dStart.tls).toBe(true);
      expect(mStart.tls).toBe(true);
      const dEnd = audits(dataSrv, "job-end", "DATA_OP_BACKUP").at(-1)!;
      const mEnd = audits(tapeSrv, "job-end", "MOVER_MODE_READ").at(-1)!;
      expect(Number(mEnd.bytes)).toBe(Number(dEnd.bytes));

      // Recovery: our data service listens, the other server's mover connects.
      const dl = await d.request(Message.DATA_LISTEN, { addr_type: AddrType.TCP });
      await t.request(Message.MOVER_SET_WINDOW, { offset: 0n, length: ALL1 });
      await t.request(Message.MOVER_CONNECT, { mode: MoverMode.WRITE, addr: dl.body.connect_addr });
      const out = join(W, "out");
      const since2 = d.posts.length;
      await d.request(Message.DATA_START_RECOVER, { butype_name: "tar", env: [{ name: "PREFIX", value: out }], nlist: [] });
      const read = await d.waitForPost(Message.NOTIFY_DATA_READ, 30_000, since2);
      await t.request(Message.MOVER_READ, { offset: read.body.offset, length: read.body.length });
      expect((await d.waitForPost(Message.NOTIFY_DATA_HALTED, 60_000, since2)).body.reason).toBe(DataHaltReason.SUCCESSFUL);
      expect(await compareTrees(src, out)).toEqual([]);
      expect(audits(dataSrv, "job-start", "DATA_OP_RECOVER").at(-1)!.tls).toBe(true);
      expect(audits(tapeSrv, "job-start", "MOVER_MODE_WRITE").at(-1)!.tls).toBe(true);
    } finally {
      await d.close();
      await t.close();
    }
  }, 300_000);
});
