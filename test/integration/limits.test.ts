/**
 * [limits] on the compiled binary: what an unauthenticated or idle peer may hold. Strangers
 * cannot take the slots of authenticated sessions, must authenticate in time, may send only
 * small records, and wait longer after each failed login from their address.
 */
import { connect, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { NdmpClient } from "../../src/client/client.ts";
import { ConnectionStatusReason, ErrorCode, Message } from "../../src/protocol/codes.ts";
import { encodeHeader } from "../../src/protocol/message.ts";
import { havePeers } from "../helpers/peers.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";
import { until } from "../helpers/dma.ts";

const ready = havePeers("binary");

function config(limits: string, server = "auth_failure_delay_ms = 0"): string {
  return `[server]\nlisten = "127.0.0.1:0"\nstate_dir = "$DIR/state"\n${server}\n[limits]\n${limits}\n\n[auth]\nmethods = ["md5", "text"]\n\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n`;
}

async function authed(port: number): Promise<NdmpClient> {
  const c = await NdmpClient.connect("127.0.0.1", port);
  await c.open(4);
  await c.authMd5(USER, PASSWORD);
  return c;
}

/** A raw connection from `from` (a loopback address): what it received, and whether it closed. */
interface Raw {
  sock: Socket;
  received: () => Buffer;
  closed: Promise<void>;
}
function raw(port: number, from = "127.0.0.1"): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = connect({ host: "127.0.0.1", port, localAddress: from });
    const closed = new Promise<void>((r) => sock.once("close", () => r()));
    sock.on("data", (c: Buffer) => chunks.push(c));
    sock.once("error", reject);
    sock.once("connect", () => {
      sock.off("error", reject);
      sock.on("error", () => {});
      resolve({ sock, received: () => Buffer.concat(chunks), closed });
    });
  });
}

/** Waits until the connection has its NOTIFY_CONNECTION_STATUS (a session exists for it). */
async function greeted(r: Raw): Promise<void> {
  await until(() => r.received().length >= 32, 10_000, "NOTIFY_CONNECTION_STATUS");
  expect(r.received().readUInt32BE(28)).toBe(ConnectionStatusReason.CONNECTED); // mark, header, reason
}

function record(code: number, body: Buffer, seq = 1): Buffer {
  const h = encodeHeader({ sequence: seq, time_stamp: 0, message_type: 0, message_code: code, reply_sequence: 0, error_code: 0 });
  const rec = Buffer.concat([h, body]);
  const mark = Buffer.alloc(4);
  mark.writeUInt32BE((0x80000000 | rec.length) >>> 0);
  return Buffer.concat([mark, rec]);
}

async function withServer(cfg: string, fn: (srv: RunningServer) => Promise<void>): Promise<void> {
  const srv = await startServer({ config: cfg });
  try {
    await fn(srv);
  } finally {
    expect(await srv.stop()).toBe(0);
  }
}

describe.runIf(ready)("ndmpd binary: [limits]", () => {
  it("unauthenticated connections are bounded per address and in total, and never take max_sessions' slots", async () => {
    await withServer(config("max_unauthenticated = 3\nmax_unauthenticated_per_source = 2", "auth_failure_delay_ms = 0\nmax_sessions = 2"), async (srv) => {
      // A scanner on 127.0.0.2 holds its two connections; a third from there is refused.
      const s1 = await raw(srv.port, "127.0.0.2");
      const s2 = await raw(srv.port, "127.0.0.2");
      await greeted(s1);
      await greeted(s2);
      const s3 = await raw(srv.port, "127.0.0.2");
      await s3.closed;
      expect(s3.received().toString("latin1")).toContain("too many unauthenticated connections from this address");
      // The DMA on 127.0.0.1 still gets in, twice (max_sessions = 2), with the scanner's two open.
      const a = await authed(srv.port);
      const b = await authed(srv.port);
      expect((await a.request(Message.CONFIG_GET_SERVER_INFO)).body.vendor_name.toString()).toBe("ndmpd");
      // At max_sessions, a session that logs in again (a DMA that does not know it already is) keeps its slot.
      await a.authMd5(USER, PASSWORD);
      expect((await a.request(Message.CONFIG_GET_SERVER_INFO)).body.vendor_name.toString()).toBe("ndmpd");
      // Authenticated sessions are at max_sessions: a new connection is refused outright.
      await expect(NdmpClient.connect("127.0.0.1", srv.port)).rejects.toThrow(/too many sessions/);
      await b.close();
      await until(() => srv.logs.some((l) => l.msg === "session closed" && l.why === "CONNECT_CLOSE"), 10_000, "b closed");
      // The total: one more stranger fits (3), the next, from yet another address, does not.
      const s4 = await raw(srv.port, "127.0.0.3");
      await greeted(s4);
      const s5 = await raw(srv.port, "127.0.0.4");
      await s5.closed;
      expect(s5.received().toString("latin1")).toContain("too many unauthenticated connections");
      expect(srv.logs.filter((l) => /^connection refused: too many unauthenticated/.test(l.msg)).length).toBe(2);
      for (const s of [s1, s2, s4]) s.sock.destroy();
      await a.close();
    });
  });

  it("closes a connection that does not authenticate within auth_timeout_s, with NOTIFY_CONNECTION_STATUS(SHUTDOWN)", async () => {
    await withServer(config("auth_timeout_s = 1"), async (srv) => {
      const c = await NdmpClient.connect("127.0.0.1", srv.port);
      const post = await c.waitForPost(Message.NOTIFY_CONNECTION_STATUS, 10_000, 1);
      expect(post.body.reason).toBe(ConnectionStatusReason.SHUTDOWN);
      expect(post.body.text_reason.toString()).toBe("authentication timeout");
      await expect(c.request(Message.CONFIG_GET_SERVER_INFO)).rejects.toThrow(/closed|EPIPE|ECONNRESET/);
      expect(srv.logs.some((l) => l.msg === "connection closed: no authentication in time" && l.limit_s === 1)).toBe(true);
      // A session that authenticated in time is not touched by the deadline.
      const ok = await authed(srv.port);
      await new Promise((r) => setTimeout(r, 1500));
      expect((await ok.request(Message.CONFIG_GET_SERVER_INFO)).body.vendor_name.toString()).toBe("ndmpd");
      await ok.close();
    });
  });

  it("refuses a record over preauth_max_message_size before authentication, and takes it after", async () => {
    await withServer(config(""), async (srv) => {
      // CONFIG_GET_HOST_INFO has no body: 100 KiB of trailing bytes are ignored once allowed.
      const big = record(Message.CONFIG_GET_HOST_INFO, Buffer.alloc(100 * 1024), 7);
      const stranger = await raw(srv.port);
      stranger.sock.write(big);
      await stranger.closed;
      expect(srv.logs.some((l) => /bad framing/.test(l.msg) && /exceeds the limit of 65536/.test(l.err))).toBe(true);
      const c = await authed(srv.port);
      c.sendRaw(big);
      await until(() => c.unmatchedReplies.has(7), 10_000, "the reply to the big record");
      expect(c.unmatchedReplies.get(7)).toBe(ErrorCode.NO_ERR);
      await c.close();
    });
  });

  it("doubles the delay after each failed login from an address, up to auth_failure_delay_max_ms; a success resets it", async () => {
    await withServer(config("auth_failure_delay_max_ms = 200", "auth_failure_delay_ms = 50"), async (srv) => {
      const delays = () => srv.logs.filter((l) => l.msg === "authentication failed").map((l) => l.delay_ms);
      for (let i = 0; i < 4; i++) {
        const c = await NdmpClient.connect("127.0.0.1", srv.port);
        await expect(c.authText(USER, "wrong")).rejects.toMatchObject({ error: ErrorCode.NOT_AUTHORIZED_ERR });
        await c.close();
      }
      expect(delays()).toEqual([50, 100, 200, 200]);
      (await authed(srv.port)).close();
      const c = await NdmpClient.connect("127.0.0.1", srv.port);
      await expect(c.authText(USER, "wrong")).rejects.toMatchObject({ error: ErrorCode.NOT_AUTHORIZED_ERR });
      await c.close();
      expect(delays()).toEqual([50, 100, 200, 200, 50]);
    });
  });

  it("closes an authenticated session with no job after idle_timeout_s silent seconds", async () => {
    await withServer(config("idle_timeout_s = 1"), async (srv) => {
      const c = await authed(srv.port);
      const post = await c.waitForPost(Message.NOTIFY_CONNECTION_STATUS, 10_000, 1);
      expect(post.body.reason).toBe(ConnectionStatusReason.SHUTDOWN);
      expect(post.body.text_reason.toString()).toBe("idle timeout");
      expect(srv.logs.some((l) => l.msg === "session closed: idle with no job" && l.limit_s === 1)).toBe(true);
    });
  });
});
