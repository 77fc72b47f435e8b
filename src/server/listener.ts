/**
 * The TCP listener: accepts control connections (IPv4 and IPv6), enforces the session
 * limit, and shuts down gracefully (NOTIFY_CONNECTION_STATUS SHUTDOWN to every session).
 */
import { countConnection } from "../metrics/metrics.ts";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import { ConnectionStatusReason, Message } from "../protocol/codes.ts";
import { encodeMessage } from "../protocol/message.ts";
import { frameRecord } from "../protocol/framing.ts";
import { wireV4 } from "../protocol/message.ts";
import { allHandlers } from "../services/index.ts";
import type { HandlerTable } from "../services/handler.ts";
import type { DeviceRegistry } from "../devices/registry.ts";
import { Session } from "./session.ts";
import { snapshotsHeld, waitForSnapshots } from "../snapshot/index.ts";

/** How long a shutdown waits for stopped jobs to delete their snapshots. */
const SNAPSHOT_WAIT_MS = 60_000;

export class NdmpServer {
  readonly sessions = new Set<Session>();
  private servers: Server[] = [];
  private nextId = 1;
  private stopping = false;

  constructor(
    readonly config: Config,
    readonly devices: DeviceRegistry,
    private readonly log: Logger,
    private readonly handlers: HandlerTable = allHandlers,
  ) {}

  /** Starts listening on every configured address; resolves with the bound addresses. */
  async listen(): Promise<AddressInfo[]> {
    const bound: AddressInfo[] = [];
    for (const a of this.config.listen) {
      const srv = createServer({ allowHalfOpen: false }, (sock) => this.accept(sock));
      srv.maxConnections = this.config.maxSessions * 2; // hard stop far past the polite refusal
      await new Promise<void>((resolve, reject) => {
        srv.once("error", reject);
        srv.listen({ host: a.host, port: a.port, backlog: 128 }, () => {
          srv.off("error", reject);
          resolve();
        });
      });
      srv.on("error", (err) => this.log.error("listener error", { err }));
      this.servers.push(srv);
      const info = srv.address() as AddressInfo;
      bound.push(info);
      this.log.info("listening", { address: info.address, port: info.port });
    }
    return bound;
  }

  private accept(sock: Socket): void {
    if (this.stopping || this.sessions.size >= this.config.maxSessions) {
      countConnection("refused");
      this.refuse(sock);
      return;
    }
    countConnection("accepted");
    const session = new Session(this.nextId++, sock, this.config, this.devices, this.handlers, this.log);
    this.sessions.add(session);
    sock.once("close", () => this.sessions.delete(session));
    session.start();
  }

  /** Over the limit: NOTIFY_CONNECTION_STATUS(REFUSED), then close (digest §1.6). */
  private refuse(sock: Socket): void {
    this.log.warn("connection refused: session limit reached", {
      peer: `${sock.remoteAddress}:${sock.remotePort}`,
      limit: this.config.maxSessions,
    });
    sock.on("error", () => {});
    const body = wireV4.encodePost(Message.NOTIFY_CONNECTION_STATUS, {
      reason: ConnectionStatusReason.REFUSED,
      protocol_version: this.config.versions[0]!,
      text_reason: this.stopping ? "server shutting down" : "too many sessions",
    });
    const header = {
      sequence: 1,
      time_stamp: Math.floor(Date.now() / 1000),
      message_type: 0,
      message_code: Message.NOTIFY_CONNECTION_STATUS,
      reply_sequence: 0,
      error_code: 0,
    };
    for (const part of frameRecord(encodeMessage(header, body))) sock.write(part);
    sock.end();
    setTimeout(() => sock.destroy(), 1000).unref();
  }

  /** Stops accepting, tells every session we are shutting down, and waits for them to end. */
  async shutdown(why = "server shutting down"): Promise<void> {
    this.stopping = true;
    const closing = this.servers.map((s) => new Promise<void>((r) => s.close(() => r())));
    for (const s of this.sessions) s.notifyAndClose(ConnectionStatusReason.SHUTDOWN, why);
    const deadline = Date.now() + 5000;
    while (this.sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    // Jobs that were stopped delete their snapshots as they wind down: give them time.
    if (snapshotsHeld() > 0 && !(await waitForSnapshots(SNAPSHOT_WAIT_MS))) {
      this.log.warn("snapshots still held at shutdown: the next start deletes them", { held: snapshotsHeld() });
    }
    await Promise.all(closing);
    this.log.info("server stopped", { why });
  }
}
