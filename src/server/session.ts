/**
 * One NDMP session per control connection: framing in, dispatch through the handler tables,
 * replies and posts out. It owns the per-session state (version, authentication) and lets
 * services register clean-up for when the connection goes away.
 */
import type { Socket } from "node:net";
import { TLSSocket } from "node:tls";
import type { Duplex } from "node:stream";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import {
  ConnectionStatusReason,
  DataState,
  MoverState,
  ErrorCode,
  errorName,
  LogType,
  Message,
  MessageType,
  messageName,
  NdmpError,
} from "../protocol/codes.ts";
import { releaseRecord, stampRecord } from "../protocol/fh-record.ts";
import { FramingError, frameRecord, MAX_SEND_FRAGMENT, RecordReader } from "../protocol/framing.ts";
import { decodeHeader, encodeMessage, wireFor, type Header, type WireVersion } from "../protocol/message.ts";
import type { DeviceRegistry } from "../devices/registry.ts";
import { audit } from "../security/audit.ts";
import { Refusal } from "../security/refusal.ts";
import type { UserScope } from "../security/scope.ts";
import type { HandlerTable } from "../services/handler.ts";
import type { MoverService } from "../mover/mover.ts";
import type { OpenScsi } from "../services/scsi.ts";
import type { OpenTape } from "../services/tape.ts";

/**
 * What services use to talk back to the DMA (NOTIFY, LOG, FH posts). Every post goes into one
 * queue, the control connection's send buffer: jobs wait (drained, or pace once per entry) while
 * it holds CONTROL_HIGH_WATER bytes the DMA has not read, so a DMA that stops reading pauses the
 * job at a fixed memory bound, and one that goes away ends it (the session's clean-up aborts it).
 */
export interface Peer {
  post(code: number, body: unknown): void;
  /** Resolves when the control connection can take more (or has closed). */
  drained(): Promise<void>;
  /** drained() while the DMA is behind, undefined when there is room (cheap to call per entry). */
  pace(): Promise<void> | undefined;
  /**
   * Whether FH posts may be handed over pre-encoded (postRecord): not while a DMA in this
   * process taps them as objects (fileHistoryTap).
   */
  takesRecords?(): boolean;
  /** Sends a record built by protocol/fh-record.ts's FhRecordWriter, which it then owns. */
  postRecord?(record: Buffer): void;
}

/** Bytes queued on the control connection before a job waits for the DMA to read. */
export const CONTROL_HIGH_WATER = 4 * 1024 * 1024;
/**
 * Past this a DMA is not reading posts that every job paces itself by: something posts without
 * waiting (a bug), and the session is closed rather than let memory grow.
 */
export const CONTROL_HARD_LIMIT = 64 * 1024 * 1024;

/** Records waiting to be handled before we stop reading from a flooding peer. */
const MAX_QUEUED_RECORDS = 64;
/** The same before authentication: a stranger gets little buffering (limits.preauth_max_message_size each). */
const MAX_QUEUED_RECORDS_PREAUTH = 4;

/** The listener's say when a session authenticates: false = over max_sessions, refuse it. */
export interface Admission {
  admit(s: Session): boolean;
}

/** The source address of a connection, IPv4-mapped IPv6 unwrapped (the key of per-source limits). */
export function sourceAddress(a: string | undefined): string {
  if (!a) return "?";
  return a.startsWith("::ffff:") ? a.slice(7) : a;
}

export class Session implements Peer {
  /** The version fixed by CONNECT_OPEN or by the first other request; undefined until then. */
  version: number | undefined;
  authenticated = false;
  authUser: string | undefined;
  /** The most recent MD5 challenge handed out by CONFIG_GET_AUTH_ATTR. */
  md5Challenge: Buffer | undefined;
  /** Extension negotiation state for CONFIG_GET/SET_EXT_LIST (digest §7.3). */
  extListQueried = false;
  extListSelected = false;
  /** The DMA selected NDMPD_DATA_TLS: this session's TCP data connections are in TLS. */
  dataTls = false;
  /** The tape drive this session has open (TAPE interface), if any. */
  tape: OpenTape | undefined;
  /** The SCSI device (changer) this session has open, if any: only one of tape and scsi is set. */
  scsi: OpenScsi | undefined;
  /** The session's mover (MOVER interface), made on first use. */
  mover: MoverService | undefined;
  /** The session's data service, as far as the mover needs it (LOCAL connections). */
  data: { acceptLocalFromMover(mode: number): Duplex | undefined; takePending(): Promise<void> } | undefined;
  readonly log: Logger;
  /** When the connection was accepted (ms since the epoch), for `ndmpd sessions`. */
  readonly openedAt = Date.now();
  /** Resolves when the session has ended and released what it held. */
  readonly ended: Promise<void>;
  private markEnded!: () => void;
  private sequence = 0;
  /** LOG_MESSAGE ids of the session's own messages (refusals); the data service counts its own. */
  private messageId = 0x10000;
  private readonly reader: RecordReader;
  private queue: Buffer[] = [];
  private processing = false;
  private closed = false;
  private readonly cleanups: Array<() => void | Promise<void>> = [];
  /** limits.auth_timeout_s, then limits.idle_timeout_s once authenticated. */
  private timer: NodeJS.Timeout | undefined;
  private lastRequestAt = Date.now();

  constructor(
    readonly id: number,
    private readonly socket: Socket,
    readonly config: Config,
    readonly devices: DeviceRegistry,
    private readonly handlers: HandlerTable,
    log: Logger,
    private readonly admission?: Admission,
  ) {
    this.ended = new Promise((r) => (this.markEnded = r));
    this.log = log.child({ session: id, peer: `${socket.remoteAddress}:${socket.remotePort}` });
    // Before authentication a record may be small: a stranger cannot make us buffer 32 MiB.
    this.reader = new RecordReader(Math.min(config.limits.preAuthMessageSize, config.maxMessageSize));
    socket.setNoDelay(true);
    // A DMA whose host vanished (no RST) is found by keepalive and ends its jobs like a close.
    socket.setKeepAlive(true, 60_000);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (err) => this.log.debug("socket error", { err }));
    socket.on("close", () => void this.teardown("connection closed"));
  }

  /** The wire codec of the session: the offered (highest) version until one is fixed. */
  get wire(): WireVersion {
    return wireFor(this.version ?? this.config.versions[0]!)!;
  }

  get localAddress(): string | undefined {
    return this.socket.localAddress;
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  /** What the authenticated user may touch ([[user]] paths, devices, read_only); undefined = anything. */
  get scope(): UserScope | undefined {
    return this.authUser === undefined ? undefined : this.config.scopes.get(this.authUser);
  }

  /** The control connection is NDMPS (TLS): nothing on it is in clear. */
  get secure(): boolean {
    return this.socket instanceof TLSSocket;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** The connection's source address (the key of the per-source limits). */
  get source(): string {
    return sourceAddress(this.socket.remoteAddress);
  }

  /**
   * CONNECT_CLIENT_AUTH succeeded: admits the session (unless max_sessions authenticated ones
   * are open: then it is refused and closed, and this returns false), lifts the record limit to
   * max_message_size and trades the authentication deadline for the idle timeout.
   */
  authenticate(user: string): boolean {
    // A session that logs in again (after a certificate login, or twice) already holds its slot.
    if (this.authenticated) {
      if (user !== this.authUser) this.log.info("authenticated again as another user", { was: this.authUser, user });
      this.authUser = user;
      return true;
    }
    if (this.admission && !this.admission.admit(this)) {
      this.log.warn("connection refused at authentication: session limit reached", { limit: this.config.maxSessions });
      this.notifyAndClose(ConnectionStatusReason.REFUSED, "too many sessions");
      return false;
    }
    this.authenticated = true;
    this.authUser = user;
    this.reader.maxRecord = this.config.maxMessageSize;
    this.armIdleTimer();
    return true;
  }

  private armAuthTimer(): void {
    const ms = this.config.limits.authTimeoutS * 1000;
    this.timer = setTimeout(() => {
      if (this.authenticated || this.closed) return;
      this.log.warn("connection closed: no authentication in time", { limit_s: this.config.limits.authTimeoutS });
      this.notifyAndClose(ConnectionStatusReason.SHUTDOWN, "authentication timeout");
    }, ms);
    this.timer.unref();
  }

  /** Closes the session after limits.idle_timeout_s without a request while it has no job. */
  private armIdleTimer(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const idleMs = this.config.limits.idleTimeoutS * 1000;
    if (idleMs <= 0 || this.closed) return;
    const wait = Math.max(0, this.lastRequestAt + idleMs - Date.now());
    this.timer = setTimeout(() => {
      if (this.closed) return;
      if (Date.now() - this.lastRequestAt < idleMs || this.hasJob()) {
        if (this.hasJob()) this.lastRequestAt = Date.now(); // a job counts as activity
        return this.armIdleTimer();
      }
      this.log.warn("session closed: idle with no job", { limit_s: this.config.limits.idleTimeoutS });
      this.notifyAndClose(ConnectionStatusReason.SHUTDOWN, "idle timeout");
    }, wait);
    this.timer.unref();
  }

  /** A data or mover operation is under way (not idle, not halted). */
  hasJob(): boolean {
    const data = this.data as { state?: number } | undefined;
    const busy = (st: number | undefined, idle: number[]) => st !== undefined && !idle.includes(st);
    return busy(data?.state, [DataState.IDLE, DataState.HALTED]) || busy(this.mover?.state, [MoverState.IDLE, MoverState.HALTED]);
  }

  /** Sends NOTIFY_CONNECTION_STATUS(CONNECTED) — the first thing a DMA expects. */
  start(): void {
    this.log.info("session opened");
    this.armAuthTimer();
    this.post(Message.NOTIFY_CONNECTION_STATUS, {
      reason: ConnectionStatusReason.CONNECTED,
      protocol_version: this.config.versions[0]!,
      text_reason: "",
    });
  }

  /** Registers clean-up to run once when the session ends (devices, data connections). */
  onClose(fn: () => void | Promise<void>): void {
    this.cleanups.push(fn);
  }

  /**
   * Set by a DMA living in this same process (the CLI's local jobs): file history posts are
   * handed to it as they are, instead of being XDR-encoded here and decoded again on the other
   * end of a loopback socket. Every other post still goes on the wire, in order; the FH posts of
   * a job all precede its NOTIFY_DATA_HALTED either way (they are delivered before it is sent).
   */
  fileHistoryTap: ((code: number, body: unknown) => void) | undefined;

  post(code: number, body: unknown): void {
    if (this.closed) return;
    if (this.fileHistoryTap && (code === Message.FH_ADD_FILE || code === Message.FH_ADD_DIR || code === Message.FH_ADD_NODE)) {
      this.fileHistoryTap(code, body);
      return;
    }
    let bytes: Buffer;
    try {
      bytes = this.wire.encodePost(code, body);
    } catch (e) {
      this.log.error("cannot encode post", { message: messageName(code), err: e });
      return;
    }
    this.send(this.header(MessageType.REQUEST, code, 0, ErrorCode.NO_ERR), bytes);
    if (this.socket.writableLength > CONTROL_HARD_LIMIT) {
      this.log.error("closing: the DMA does not read its posts", { queued: this.socket.writableLength, limit: CONTROL_HARD_LIMIT });
      this.close("post queue over its hard limit");
    }
  }

  takesRecords(): boolean {
    return this.fileHistoryTap === undefined;
  }

  /**
   * One pre-encoded post (FhRecordWriter.take): this fills in the header fields the session
   * owns and writes the bytes as they are. On a plain socket the buffer goes back to the pool
   * in the write callback, when the kernel has the bytes; on TLS it is never reused, since
   * what tls.ts's layer keeps of it is not ours to know (engine/backup.ts's FrameRecycler does
   * the same with the data connection's buffers).
   */
  postRecord(record: Buffer): void {
    if (this.closed || this.socket.destroyed) return;
    this.sequence = (this.sequence + 1) >>> 0;
    stampRecord(record, this.sequence, Math.floor(Date.now() / 1000));
    const recycle = !(this.socket instanceof TLSSocket);
    if (record.length - 4 <= MAX_SEND_FRAGMENT) {
      if (recycle) this.socket.write(record, () => releaseRecord(record));
      else this.socket.write(record);
    } else {
      // Too big for one fragment (a batch of very long names): framed anew, copied, not recycled.
      for (const part of frameRecord(Buffer.from(record.subarray(4)))) this.socket.write(part);
    }
    if (this.socket.writableLength > CONTROL_HARD_LIMIT) {
      this.log.error("closing: the DMA does not read its posts", { queued: this.socket.writableLength, limit: CONTROL_HARD_LIMIT });
      this.close("post queue over its hard limit");
    }
  }

  pace(): Promise<void> | undefined {
    return this.closed || this.socket.writableLength < CONTROL_HIGH_WATER ? undefined : this.drained();
  }

  drained(): Promise<void> {
    if (this.closed || this.socket.writableLength < CONTROL_HIGH_WATER) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off("drain", done);
        this.socket.off("close", done);
        resolve();
      };
      this.socket.on("drain", done);
      this.socket.on("close", done);
    });
  }

  /** Tells the DMA we are going away, then closes (shutdown or refusal). */
  notifyAndClose(reason: number, text: string): void {
    this.post(Message.NOTIFY_CONNECTION_STATUS, {
      reason,
      protocol_version: this.version ?? this.config.versions[0]!,
      text_reason: text,
    });
    this.close(text);
  }

  close(why: string): void {
    if (this.closed) return;
    this.socket.end();
    // A peer that never reads could keep the socket half-open forever: force it shut.
    setTimeout(() => this.socket.destroy(), 2000).unref();
    void this.teardown(why);
  }

  private async teardown(why: string): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.queue = [];
    for (const fn of this.cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch (e) {
        this.log.error("clean-up failed", { err: e });
      }
    }
    this.socket.destroy();
    this.log.info("session closed", { why });
    this.markEnded();
  }

  get peer(): string {
    const a = this.socket.remoteAddress ?? "?";
    return `${a.includes(":") ? `[${a}]` : a}:${this.socket.remotePort}`;
  }

  /** Bytes written to the control connection that the DMA has not read yet. */
  get controlBacklog(): number {
    return this.socket.writableLength;
  }

  /** Requests received and waiting to be handled. */
  get requestBacklog(): number {
    return this.queue.length;
  }

  /**
   * Ends the session from the server's side (an administrator's kill): the jobs halt first, so
   * the DMA hears NOTIFY_DATA_HALTED / NOTIFY_MOVER_HALTED (ABORTED), then
   * NOTIFY_CONNECTION_STATUS (SHUTDOWN); closing releases the drive and the changer.
   * Resolves when all of that is done.
   */
  async kill(why: string): Promise<void> {
    const halt = (name: string, fn: (() => unknown) | undefined) => {
      const idleNow = (e: unknown) => this.log.debug(`${name} not aborted`, { err: e }); // idle: nothing to halt
      try {
        const r = fn?.();
        if (r instanceof Promise) r.catch(idleNow); // the mover's abort waits for its tape operation
      } catch (e) {
        idleNow(e);
      }
    };
    const data = this.data as { abort?(): void; state?: number } | undefined;
    const idle = (st: number, idleStates: number[]) => idleStates.includes(st);
    if (data?.state !== undefined && !idle(data.state, [DataState.IDLE, DataState.HALTED])) halt("data", () => data.abort?.());
    if (this.mover && !idle(this.mover.state, [MoverState.IDLE, MoverState.HALTED])) halt("mover", () => this.mover!.abort());
    this.log.warn("session ended by the administrator", { why });
    this.notifyAndClose(ConnectionStatusReason.SHUTDOWN, why);
    await this.ended;
  }

  private header(type: number, code: number, replyTo: number, error: number): Header {
    this.sequence = (this.sequence + 1) >>> 0;
    return {
      sequence: this.sequence,
      time_stamp: Math.floor(Date.now() / 1000) >>> 0,
      message_type: type,
      message_code: code,
      reply_sequence: replyTo,
      error_code: error,
    };
  }

  private send(h: Header, body?: Buffer): void {
    if (this.closed || this.socket.destroyed) return;
    for (const part of frameRecord(encodeMessage(h, body))) this.socket.write(part);
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    let records: Buffer[];
    try {
      records = this.reader.push(chunk);
    } catch (e) {
      if (e instanceof FramingError) {
        this.log.warn("bad framing, closing the connection", { err: e });
        this.close("framing error");
        return;
      }
      throw e;
    }
    if (records.length === 0) return;
    this.queue.push(...records);
    if (this.queue.length >= this.maxQueued) this.socket.pause();
    void this.drain();
  }

  private get maxQueued(): number {
    return this.authenticated ? MAX_QUEUED_RECORDS : MAX_QUEUED_RECORDS_PREAUTH;
  }

  private async drain(): Promise<void> {
    if (this.processing) return;
    this.processing = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        await this.dispatch(this.queue.shift()!);
        if (this.queue.length < this.maxQueued / 2 && this.socket.isPaused()) this.socket.resume();
      }
    } finally {
      this.processing = false;
    }
  }

  /** Handles one record; never throws (a handler's failure becomes an error reply). */
  private async dispatch(record: Buffer): Promise<void> {
    let h: Header;
    try {
      h = decodeHeader(record);
    } catch {
      this.log.warn("undecodable message header dropped", { bytes: record.length });
      return;
    }
    if (h.message_type !== MessageType.REQUEST) {
      // A server sends no requests, so a reply from the DMA answers nothing: ignore it.
      this.log.debug("ignored a message that is not a request", { code: messageName(h.message_code) });
      return;
    }
    const code = h.message_code;
    const name = messageName(code);
    const handler = this.handlers[code];
    const wire = this.wire;
    // Authentication is checked before support, so an unauthenticated peer learns nothing
    // about which interfaces this server implements.
    if (wire.schema(code) && !this.authenticated && !handler?.preAuth) {
      this.log.warn("request before authentication refused", { message: name });
      audit(this.log, { event: "refused", user: undefined, peer: this.peer, operation: name, outcome: "NOT_AUTHORIZED_ERR", why: "not authenticated" });
      return this.replyHeaderError(h, ErrorCode.NOT_AUTHORIZED_ERR);
    }
    if (!handler || !wire.schema(code)) {
      this.log.debug("unsupported request", { message: name });
      return this.replyHeaderError(h, ErrorCode.NOT_SUPPORTED_ERR);
    }
    let request: unknown;
    try {
      request = wire.decodeRequest(code, record.subarray(24));
    } catch (e) {
      this.log.warn("undecodable request body", { message: name, err: e });
      return this.replyHeaderError(h, ErrorCode.XDR_DECODE_ERR);
    }
    // Any request but CONNECT_OPEN accepts the offered version ("implicit open", digest §1.6).
    if (this.version === undefined && code !== Message.CONNECT_OPEN && code !== Message.CONNECT_CLOSE) {
      this.version = this.config.versions[0];
    }
    this.log.debug("request", { message: name, seq: h.sequence });
    this.lastRequestAt = Date.now();
    let reply: unknown;
    try {
      // A DMA that has just connected to our LISTEN address and sends a request at once must
      // find the connection made (the kernel has completed it; we may not have looked yet).
      await this.mover?.takePending();
      await this.data?.takePending();
      reply = await handler.handle(this, request, h);
    } catch (e) {
      if (e instanceof NdmpError) {
        this.log.debug("request refused", { message: name, error: errorName(e.code), why: e.message });
        if (e instanceof Refusal || e.code === ErrorCode.NOT_AUTHORIZED_ERR) this.refused(name, e);
        reply = this.wire.errorReply(code, e.code);
      } else {
        this.log.error("handler failed", { message: name, err: e, stack: (e as Error)?.stack });
        reply = this.wire.errorReply(code, ErrorCode.UNDEFINED_ERR);
      }
    }
    if (this.wire.schema(code)?.reply === null) return; // CONNECT_CLOSE: no reply
    this.reply(h, reply);
  }

  /** A request refused for who asks or where it points: the audit line, and the DMA told why. */
  private refused(operation: string, e: NdmpError): void {
    const r = e instanceof Refusal ? e : undefined;
    audit(this.log, {
      event: "refused",
      user: r?.detail.user ?? this.authUser,
      peer: this.peer,
      operation,
      paths: r?.detail.paths,
      devices: r?.detail.devices,
      outcome: errorName(e.code),
      why: r?.why ?? e.message,
    });
    if (!this.authenticated || !r) return;
    this.post(Message.LOG_MESSAGE, {
      log_type: LogType.ERROR,
      message_id: ++this.messageId,
      entry: r.why,
      associated_message_valid: 0,
      associated_message_sequence: 0,
    });
  }

  private reply(req: Header, body: unknown): void {
    let bytes: Buffer;
    try {
      bytes = this.wire.encodeReply(req.message_code, body);
    } catch (e) {
      this.log.error("cannot encode reply", { message: messageName(req.message_code), err: e });
      return this.replyHeaderError(req, ErrorCode.XDR_ENCODE_ERR);
    }
    this.send(this.header(MessageType.REPLY, req.message_code, req.sequence, ErrorCode.NO_ERR), bytes);
  }

  private replyHeaderError(req: Header, error: number): void {
    if (req.message_code === Message.CONNECT_CLOSE) return;
    this.send(this.header(MessageType.REPLY, req.message_code, req.sequence, error));
  }
}
