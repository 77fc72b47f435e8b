/**
 * The compiled binary on a loopback port, driven by ndmjob (the real DMA), by `ndmpd query`
 * and by our own client for what ndmjob cannot send (hostile input).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NdmpClient, NdmpClientError } from "../../src/client/client.ts";
import { ConnectionStatusReason, ErrorCode, Message } from "../../src/protocol/codes.ts";
import { encodeHeader } from "../../src/protocol/message.ts";
import { BINARY, havePeers, NDMJOB } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";

const ready = havePeers("binary", "ndmjob");

/** QR lines of `ndmjob -q`, unquoted. */
function qr(out: string): string[] {
  return out
    .split("\n")
    .filter((l) => l.startsWith("QR "))
    .map((l) => JSON.parse(l.slice(3)) as string);
}

async function ndmjobQuery(port: number, flags: string, password = PASSWORD) {
  return run(NDMJOB, ["-q", "-v", "-D", `127.0.0.1:${port}/${flags},${USER},${password}`], { timeoutMs: 30_000 });
}

async function client(port: number): Promise<NdmpClient> {
  return NdmpClient.connect("127.0.0.1", port);
}

async function authed(port: number): Promise<NdmpClient> {
  const c = await client(port);
  await c.open(4);
  await c.authMd5(USER, PASSWORD);
  return c;
}

/** Sends raw bytes on a fresh socket; resolves when the server closes it or after `ms`. */
function rawExchange(port: number, bytes: Buffer, ms = 1000): Promise<{ closed: boolean; received: Buffer }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = connect({ host: "127.0.0.1", port }, () => s.write(bytes));
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("error", () => {});
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ closed: false, received: Buffer.concat(chunks) });
    }, ms);
    s.on("close", () => {
      clearTimeout(timer);
      resolve({ closed: true, received: Buffer.concat(chunks) });
    });
  });
}

function record(code: number, body: Buffer, seq = 1): Buffer {
  const h = encodeHeader({ sequence: seq, time_stamp: 0, message_type: 0, message_code: code, reply_sequence: 0, error_code: 0 });
  const rec = Buffer.concat([h, body]);
  const mark = Buffer.alloc(4);
  mark.writeUInt32BE((0x80000000 | rec.length) >>> 0);
  return Buffer.concat([mark, rec]);
}

describe.runIf(ready)("ndmpd binary: control connection", () => {
  let srv: RunningServer;
  beforeAll(async () => {
    srv = await startServer({
      config: `[server]\nlisten = "127.0.0.1:0"\nstate_dir = "$DIR/state"\nauth_failure_delay_ms = 0\n\n[identity]\nvendor = "ACME Test"\nproduct = "Filer X"\nrevision = "7.1"\n\n[auth]\nmethods = ["md5", "text"]\n\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n`,
    });
  });
  afterAll(async () => {
    expect(await srv.stop()).toBe(0);
  });

  for (const [flag, what] of [["4m", "MD5"], ["4t", "text"]] as const) {
    it(`ndmjob -q with ${what} auth prints host, server, auth, connection types, butypes and filesystems`, async () => {
      const r = await ndmjobQuery(srv.port, flag);
      expect(r.stdout).not.toMatch(/#D "err/);
      const lines = qr(r.stdout);
      expect(lines).toContain(`Data Agent 127.0.0.1 NDMPv4`);
      expect(lines.some((l) => /^ {4}hostname {3}\S+/.test(l))).toBe(true);
      expect(lines.some((l) => /^ {4}os_type {4}Linux$/.test(l))).toBe(true);
      expect(lines.some((l) => /^ {4}hostid {5}[0-9a-f]{8}$/.test(l))).toBe(true);
      expect(lines).toContain("    vendor     ACME Test");
      expect(lines).toContain("    product    Filer X");
      expect(lines).toContain("    revision   7.1");
      expect(lines).toContain("    auths      (2)  NDMP4_AUTH_MD5 NDMP4_AUTH_TEXT");
      expect(lines).toContain("    addr_types (3)  NDMP4_ADDR_LOCAL NDMP4_ADDR_TCP NDMP4_ADDR_IPC");
      expect(lines).toContain("  Backup type info of tar format");
      expect(lines).toContain("  Backup type info of dump format");
      expect(lines).toContain("  File system /");
      expect(lines).toContain("    set        AVAILABLE_BACKUP=tar,dump");
      expect(r.stdout).toContain('SESS "Operation complete"');
    });
  }

  it("`ndmpd query` prints the same facts as ndmjob -q", async () => {
    const [ours, theirs] = await Promise.all([
      run(BINARY, ["query", `127.0.0.1:${srv.port}`, "--user", USER, "--password", PASSWORD], { timeoutMs: 30_000 }),
      ndmjobQuery(srv.port, "4m"),
    ]);
    expect(ours.code).toBe(0);
    const lines = qr(theirs.stdout);
    const host = lines.find((l) => l.startsWith("    hostname"))!.split(/\s+/).pop()!;
    expect(ours.stdout).toContain(`Host ${host}`);
    expect(ours.stdout).toContain("  vendor     ACME Test");
    expect(ours.stdout).toContain("  auths      (2) AUTH_MD5 AUTH_TEXT");
    expect(ours.stdout).toContain("  addr_types (3) ADDR_LOCAL ADDR_TCP ADDR_IPC");
    const attrs = lines.filter((l) => l.startsWith("    attrs")).map((l) => l.split(/\s+/).pop());
    expect(ours.stdout).toContain(`Backup type tar\n  attrs      ${attrs[0]}`);
    expect(ours.stdout).toContain(`Backup type dump\n  attrs      ${attrs[1]}`);
    for (const fs of lines.filter((l) => l.startsWith("  File system ")).map((l) => l.slice(14))) {
      expect(ours.stdout).toContain(`File system ${fs}\n`);
    }
    const text = await run(BINARY, ["query", `127.0.0.1:${srv.port}`, "--user", USER, "--auth", "text"], {
      env: { ...process.env, NDMPD_PASSWORD: PASSWORD },
      timeoutMs: 30_000,
    });
    expect(text.code).toBe(0);
    expect(text.stdout).toContain("vendor     ACME Test");
  });

  it("refuses a wrong password (text and MD5) with NOT_AUTHORIZED_ERR and logs the attempt", async () => {
    for (const flag of ["4t", "4m"]) {
      const r = await ndmjobQuery(srv.port, flag, "wrong");
      expect(r.stdout).toMatch(/#D "err connect-auth-(text|md5)-failed"|#D "err/);
      expect(qr(r.stdout)).not.toContain("  Backup type info of tar format");
    }
    for (const method of ["text", "md5"] as const) {
      const c = await client(srv.port);
      await c.open(4);
      const attempt = method === "text" ? c.authText(USER, "nope") : c.authMd5("intruder", PASSWORD);
      await expect(attempt).rejects.toMatchObject({ error: ErrorCode.NOT_AUTHORIZED_ERR });
      await c.close();
    }
    const failures = srv.logs.filter((l) => l.msg === "authentication failed");
    expect(failures.map((l) => `${l.method}:${l.user}`)).toEqual(expect.arrayContaining(["text:ndmp", "md5:ndmp", "md5:intruder"]));
    expect(failures.every((l) => typeof l.peer === "string")).toBe(true);
  });

  it("answers DATA, TAPE and CONFIG_GET_HOST_INFO before authentication with NOT_AUTHORIZED_ERR", async () => {
    const c = await client(srv.port);
    for (const [code, body] of [
      [Message.DATA_GET_STATE, {}],
      [Message.TAPE_OPEN, { device: "x", mode: 0 }],
      [Message.MOVER_GET_STATE, {}],
      [Message.CONFIG_GET_HOST_INFO, {}],
    ] as const) {
      const e = await c.request(code, body).catch((x) => x);
      expect(e).toBeInstanceOf(NdmpClientError);
      expect(e).toMatchObject({ error: ErrorCode.NOT_AUTHORIZED_ERR });
    }
    // What the spec allows before authentication works, without the vendor strings.
    const info = await c.request(Message.CONFIG_GET_SERVER_INFO);
    expect(info.body.auth_type).toEqual([2, 1]);
    expect(info.body.vendor_name.length).toBe(0);
    await c.close();
  });

  it("negotiates versions: 4 offered, CONNECT_OPEN 2 refused, twice refused, implicit open works", async () => {
    const c = await client(srv.port);
    expect(c.offeredVersion).toBe(4);
    await expect(c.request(Message.CONNECT_OPEN, { protocol_version: 2 })).rejects.toMatchObject({ error: ErrorCode.ILLEGAL_ARGS_ERR });
    await expect(c.request(Message.CONNECT_OPEN, { protocol_version: 5 })).rejects.toMatchObject({ error: ErrorCode.ILLEGAL_ARGS_ERR });
    await c.request(Message.CONNECT_OPEN, { protocol_version: 4 });
    await expect(c.request(Message.CONNECT_OPEN, { protocol_version: 4 })).rejects.toMatchObject({ error: ErrorCode.ILLEGAL_STATE_ERR });
    await c.close();
    const implicit = await client(srv.port);
    await implicit.authText(USER, PASSWORD); // no CONNECT_OPEN at all
    expect((await implicit.request(Message.CONFIG_GET_HOST_INFO)).body.os_type.toString()).toBe("Linux");
    await implicit.close();
  });

  it("CONFIG_GET_AUTH_ATTR, EXT_LIST negotiation and CONNECT_SERVER_AUTH behave per spec", async () => {
    const c = await authed(srv.port);
    await expect(c.request(Message.CONFIG_GET_AUTH_ATTR, { auth_type: 0 })).rejects.toMatchObject({ error: ErrorCode.ILLEGAL_ARGS_ERR });
    await expect(c.request(Message.CONFIG_SET_EXT_LIST, { ndmp_selected_ext: [] })).rejects.toMatchObject({ error: ErrorCode.PRECONDITION_ERR });
    expect((await c.request(Message.CONFIG_GET_EXT_LIST)).body.class_list).toEqual([]);
    await expect(c.request(Message.CONFIG_SET_EXT_LIST, { ndmp_selected_ext: [{ class_id: 0x2050, class_version: 1 }] })).rejects.toMatchObject({
      error: ErrorCode.CLASS_NOT_SUPPORTED_ERR,
    });
    await c.request(Message.CONFIG_SET_EXT_LIST, { ndmp_selected_ext: [] });
    await expect(c.request(Message.CONFIG_GET_EXT_LIST)).rejects.toMatchObject({ error: ErrorCode.EXT_DANDN_ILLEGAL_ERR });
    await expect(c.request(Message.CONNECT_SERVER_AUTH, { client_attr: { auth_type: 1 } })).rejects.toMatchObject({ error: ErrorCode.NOT_SUPPORTED_ERR });
    const tape = await c.request(Message.CONFIG_GET_TAPE_INFO);
    expect(tape.body.tape_info).toEqual([]);
    await c.close();
  });

  it("survives hostile input and still serves ndmjob -q afterwards, without leaking descriptors", async () => {
    const fdsBefore = srv.fdCount();
    // Random bytes: the framing asks for an absurd record or garbage; the server closes.
    const junk = Buffer.alloc(4096);
    for (let i = 0; i < junk.length; i++) junk[i] = (i * 7919 + 13) & 0xff;
    expect((await rawExchange(srv.port, junk, 3000)).closed).toBe(true);
    // A fragment header claiming 2 GiB: refused at once, nothing allocated.
    expect((await rawExchange(srv.port, Buffer.from("ffffffff", "hex"), 3000)).closed).toBe(true);
    expect(srv.logs.some((l) => /bad framing/.test(l.msg) && /exceeds the limit/.test(l.err))).toBe(true);

    const c = await client(srv.port);
    // A truncated body (CONNECT_OPEN with 2 of its 4 bytes): XDR_DECODE_ERR in the header.
    c.sendRaw(record(Message.CONNECT_OPEN, Buffer.from("0000", "hex"), 100));
    // An unknown message code: NOT_SUPPORTED_ERR.
    c.sendRaw(record(0x7ff00000, Buffer.alloc(0), 101));
    // A body with trailing garbage is decoded and answered normally.
    c.sendRaw(record(Message.CONNECT_OPEN, Buffer.from("00000004deadbeefcafe0000", "hex"), 102));
    await new Promise((r) => setTimeout(r, 300));
    await c.authText(USER, PASSWORD);
    expect((await c.request(Message.CONFIG_GET_SERVER_INFO)).body.vendor_name.toString()).toBe("ACME Test");
    // The replies to the raw records, in order.
    const replies = c.unmatchedReplies;
    expect(replies.get(100)).toBe(ErrorCode.XDR_DECODE_ERR);
    expect(replies.get(101)).toBe(ErrorCode.NOT_SUPPORTED_ERR);
    expect(replies.get(102)).toBe(ErrorCode.NO_ERR);
    await c.close();

    // 1,000 connections opened and dropped.
    for (let batch = 0; batch < 10; batch++) {
      await Promise.all(
        Array.from({ length: 100 }, () =>
          new Promise<void>((resolve) => {
            const s = connect({ host: "127.0.0.1", port: srv.port }, () => s.destroy());
            s.on("error", () => resolve());
            s.on("close", () => resolve());
          }),
        ),
      );
    }
    await new Promise((r) => setTimeout(r, 300));
    const after = await ndmjobQuery(srv.port, "4m");
    if (!after.stdout.includes("ACME")) console.log(after.stdout, after.stderr);
    expect(qr(after.stdout)).toContain("    vendor     ACME Test");
    // Sessions are gone and descriptors are back where they were.
    await new Promise((r) => setTimeout(r, 500));
    expect(srv.fdCount()).toBeLessThanOrEqual(fdsBefore + 2);
    expect(srv.proc.exitCode).toBeNull();
  });
});

describe.runIf(ready)("ndmpd binary: limits and shutdown", () => {
  it("refuses sessions past max_sessions with NOTIFY_CONNECTION_STATUS(REFUSED)", async () => {
    const srv = await startServer({
      config: `[server]\nlisten = "127.0.0.1:0"\nstate_dir = "$DIR/s"\nmax_sessions = 2\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n`,
    });
    try {
      // max_sessions counts authenticated sessions (strangers are bounded apart: limits.test.ts).
      const a = await authed(srv.port);
      const b = await authed(srv.port);
      await expect(client(srv.port)).rejects.toThrow(/refused the connection: too many sessions/);
      await a.close();
      await new Promise((r) => setTimeout(r, 200));
      const d = await authed(srv.port);
      await d.close();
      await b.close();
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  });

  it("on SIGTERM sends NOTIFY_CONNECTION_STATUS(SHUTDOWN) to open sessions and exits 0", async () => {
    const srv = await startServer();
    const c = await authed(srv.port);
    const shutdown = c.waitForPost(Message.NOTIFY_CONNECTION_STATUS, 10_000, 1);
    const code = srv.stop("SIGTERM");
    const post = await shutdown;
    expect(post.body.reason).toBe(ConnectionStatusReason.SHUTDOWN);
    expect(await code).toBe(0);
  });
});

describe.runIf(havePeers("binary"))("a configuration file without [[user]]", () => {
  const cfg = (extra = "") => `[server]\nlisten = "127.0.0.1:0"\nstate_dir = "$DIR/state"\nauth_failure_delay_ms = 0\n${extra}`;

  it("`serve` refuses to start (exit 2), naming the file and what to add; also for auth.methods no user can satisfy", async () => {
    for (const extra of ["", '[auth]\nmethods = ["md5"]\n', "user = []\n"]) {
      const dir = mkdtempSync(join(tmpdir(), "ndmpd-nouser-"));
      try {
        const file = join(dir, "ndmpd.toml");
        writeFileSync(file, extra.startsWith("user") ? extra + cfg().replaceAll("$DIR", dir) : cfg(extra).replaceAll("$DIR", dir), { mode: 0o600 });
        const env = { ...process.env };
        delete env.NDMPD_PASSWORD;
        const r = await run(BINARY, ["serve", "--config", file], { env, timeoutMs: 15_000 });
        expect(r.code, extra).toBe(2);
        expect(r.stderr).toContain(`${file}: no [[user]], so no DMA can log in`);
        expect(r.stderr).toMatch(/add a \[\[user\]\] table .* or set NDMPD_PASSWORD for the user ndmp/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  it("with $NDMPD_PASSWORD the embedded user ndmp logs in; auth.methods = [\"none\"] needs no user", async () => {
    const srv = await startServer({ config: cfg(), env: { NDMPD_PASSWORD: "from-env" } });
    try {
      const c = await client(srv.port);
      await c.open(4);
      await c.authMd5("ndmp", "from-env");
      await c.close();
      const bad = await client(srv.port);
      await bad.open(4);
      await expect(bad.authMd5("ndmp", "wrong")).rejects.toThrow();
      await bad.close();
    } finally {
      await srv.stop();
    }
    const open = await startServer({ config: cfg('[auth]\nmethods = ["none"]\n'), env: { NDMPD_PASSWORD: "" } });
    try {
      const c = await client(open.port);
      await c.open(4);
      await c.request(Message.CONNECT_CLIENT_AUTH, { auth_data: { auth_type: 0 } });
      expect((await c.request(Message.CONFIG_GET_HOST_INFO)).body.error).toBe(ErrorCode.NO_ERR);
      await c.close();
    } finally {
      await open.stop();
    }
  });
});
