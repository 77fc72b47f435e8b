/**
 * NDMPS against the compiled binary, in a private network namespace, with certificates made by
 * openssl at test time:
 *  - `ndmpd query --tls` and a CLI backup and recovery over TLS (`ndmpd remote ... --tls`);
 *  - a wrong CA on either side, an expired or a missing client certificate (when required) are
 *    refused, and so is plain NDMP on the TLS port (its handshake never starts);
 *  - a verified client certificate whose CN a [[user]] names logs the session in as that user.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NdmpClient } from "../../src/client/client.ts";
import { ErrorCode, Message } from "../../src/protocol/codes.ts";
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
