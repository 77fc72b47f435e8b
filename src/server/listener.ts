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
import { Session, sourceAddress, type Admission } from "./session.ts";
import { certificateUser, createNdmpsServer } from "./tls.ts";
import { snapshotsHeld, waitForSnapshots } from "../snapshot/index.ts";

/** How long a shutdown waits for stopped jobs to delete their snapshots. */
const SNAPSHOT_WAIT_MS = 60_000;

export class NdmpServer implements Admission {
  readonly sessions = new Set<Session>();
  /** Unauthenticated connections per source address (limits.max_unauthenticated_per_source). */
  private readonly unauthBySource = new Map<string, number>();
  private unauthTotal = 0;
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
    const wanted = [...this.config.listen.map((a) => ({ a, tls: false })), ...(this.config.tls?.listen ?? []).map((a) => ({ a, tls: true }))];
    for (const { a, tls } of wanted) {
      const onConnection = (sock: Socket) => this.accept(sock);
      const srv = tls ? createNdmpsServer(this.config.tls!, this.log, onConnection) : createServer({ allowHalfOpen: false }, onConnection);
      if (tls) srv.on("connection", (sock: Socket) => this.handshakeStarted(sock));
      // A hard stop far past the polite refusals below.
      srv.maxConnections = (this.config.maxSessions + this.config.limits.maxUnauthenticated) * 2;
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
      this.log.info("listening", { address: info.address, port: info.port, ...(tls ? { tls: true } : {}) });
    }
    return bound;
  }

  /** Sessions that authenticated and are still open. */
  get authenticatedCount(): number {
    let n = 0;
    for (const s of this.sessions) if (s.authenticated && !s.isClosed) n++;
    return n;
  }

  /**
   * Before a session exists: the server's state, max_sessions (authenticated sessions) and the
   * unauthenticated limits, in total and for the source address. Returns why it is refused.
   */
  private refusal(source: string): string | undefined {
    const l = this.config.limits;
    if (this.stopping) return "server shutting down";
    if (this.authenticatedCount >= this.config.maxSessions) return "too many sessions";
    if (this.unauthTotal >= l.maxUnauthenticated) return "too many unauthenticated connections";
    if ((this.unauthBySource.get(source) ?? 0) >= l.maxUnauthenticatedPerSource) return "too many unauthenticated connections from this address";
    return undefined;
  }

  /**
   * A TLS connection, before its handshake: it holds an unauthenticated slot from here, so idle
   * sockets that never finish a handshake cannot lock the TLS port up to handshake_timeout_ms
   * each. Nothing can be said to a peer refused here: NDMP starts after the handshake.
   */
  private handshakeStarted(sock: Socket): void {
    const source = sourceAddress(sock.remoteAddress);
    const why = this.refusal(source);
    if (why) {
      countConnection("refused");
      this.logRefusal(sock, why);
      sock.destroy();
      return;
    }
    const key = peerKey(sock);
    this.countUnauth(source, +1);
    let counted = true;
    const release = () => {
      if (!counted) return;
      counted = false;
      this.countUnauth(source, -1);
      this.handshaking.delete(key);
    };
    this.handshaking.set(key, release);
    sock.once("close", release);
  }

  /** TLS handshakes under way, by peer address and port (runtimes differ in which socket object the events carry). */
  private readonly handshaking = new Map<string, () => void>();

  private accept(sock: Socket): void {
    // A finished handshake gives its slot to the session, which is admitted like any other.
    this.handshaking.get(peerKey(sock))?.();
    const source = sourceAddress(sock.remoteAddress);
    const why = this.refusal(source);
    if (why) {
      countConnection("refused");
      this.refuse(sock, why);
      return;
    }
    countConnection("accepted");
    const session = new Session(this.nextId++, sock, this.config, this.devices, this.handlers, this.log, this);
    this.sessions.add(session);
    this.countUnauth(source, +1);
    let counted = true;
    const uncount = () => {
      if (counted) this.countUnauth(source, -1);
      counted = false;
    };
    this.pendingUncount.set(session, uncount);
    sock.once("close", () => {
      uncount();
      this.pendingUncount.delete(session);
      this.sessions.delete(session);
    });
    const byCert = certificateUser(sock, this.config);
    if (byCert && session.authenticate(byCert.user)) session.log.info("authenticated", { method: "tls-certificate", user: byCert.user, cn: byCert.cn });
    session.start();
  }

  /** How each unauthenticated session leaves the unauthenticated counts (once). */
  private readonly pendingUncount = new Map<Session, () => void>();

  private countUnauth(source: string, d: number): void {
    this.unauthTotal += d;
    const n = (this.unauthBySource.get(source) ?? 0) + d;
    if (n > 0) this.unauthBySource.set(source, n);
    else this.unauthBySource.delete(source);
  }

  /** Admission (called by the session at CONNECT_CLIENT_AUTH): within max_sessions? */
  admit(s: Session): boolean {
    if (this.stopping || this.authenticatedCount >= this.config.maxSessions) return false;
    this.pendingUncount.get(s)?.();
    this.pendingUncount.delete(s);
    return true;
  }

  /** Over the limit: NOTIFY_CONNECTION_STATUS(REFUSED), then close (digest §1.6). */
  private refuse(sock: Socket, why: string): void {
    this.logRefusal(sock, why);
    sock.on("error", () => {});
    const body = wireV4.encodePost(Message.NOTIFY_CONNECTION_STATUS, {
      reason: ConnectionStatusReason.REFUSED,
      protocol_version: this.config.versions[0]!,
      text_reason: why,
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

  private logRefusal(sock: Socket, why: string): void {
    const l = this.config.limits;
    this.log.warn(`connection refused: ${why}`, {
      peer: `${sock.remoteAddress}:${sock.remotePort}`,
      max_sessions: this.config.maxSessions,
      max_unauthenticated: l.maxUnauthenticated,
      max_unauthenticated_per_source: l.maxUnauthenticatedPerSource,
    });
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

function peerKey(sock: Socket): string {
  return `${sock.remoteAddress}|${sock.remotePort}`;
}
