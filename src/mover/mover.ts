/**
 * The mover (digest §3.2, §3.3): moves a backup stream between a data connection and the
 * session's tape, in whole records, inside the window the DMA sets.
 *
 * Backup (mode READ: data connection -> tape): bytes are collected into records of
 * `record_size` and written one record at a time; the last record is zero-padded and
 * `bytes_moved` excludes the padding. Writing a record that would cross the window end pauses
 * EOW; the tape's end of medium pauses EOM; the record that did not fit is kept and written
 * after MOVER_CONTINUE (on the next cartridge).
 *
 * Recovery (mode WRITE: tape -> data connection): MOVER_READ(offset, length) positions the
 * tape by records inside the window and sends exactly [offset, offset + length). Outside the
 * window the mover pauses SEEK; a filemark under a maximum window pauses EOF, blank tape EOM.
 *
 * Version 3 differs in a few rules (digest §6.1), each marked "v3" below: the record size has a
 * default (10240, as NDMJOB), the window defaults to infinite and SET_RECORD_SIZE leaves it
 * alone, SET_WINDOW is also legal in LISTEN, and a tape error pauses MEDIA_ERROR (v4 halts).
 *
 * The mover streams: it holds one record (and the last record read, for DAR reads that start
 * where the previous one ended), and reads from the data connection only as fast as the tape
 * takes the records, so a slow tape or a slow peer applies back-pressure.
 */
import { countMoverHalt } from "../metrics/metrics.ts";
import type { Duplex } from "node:stream";
import { TLSSocket } from "node:tls";
import type { Config } from "../config.ts";
import { isTapeError, type TapeDevice } from "../devices/tape/device.ts";
import type { Logger } from "../log.ts";
import {
  AddrType,
  ALL1,
  ErrorCode,
  Message,
  MoverHaltReason as Halt,
  MoverMode as Mode,
  MoverPauseReason as Pause,
  MoverState as State,
  NdmpError,
} from "../protocol/codes.ts";
import type { Addr } from "../protocol/xdr/v4.ts";
import { audit } from "../security/audit.ts";
import { ConnectionGone, writeAll } from "../transport/backpressure.ts";
import { consumed, noteSent, releasedByReader, sentOnConnection } from "../transport/consumers.ts";
import { createLocalPair } from "../transport/local.ts";
import { connectIpc, listenIpc } from "../transport/ipc.ts";
import { peerFilter } from "../transport/peers.ts";
import type { DataTls } from "../transport/tls.ts";
import { connectableAddrs, connectData, ipv4Of, listenData, MAX_CONNECT_ADDRS, tcpAddr, type DataListener } from "../transport/tcp.ts";

/** The largest record the mover accepts (the virtual tape's limit is 4 MiB). */
export const MAX_RECORD_SIZE = 4 * 1024 * 1024;

/** v3: the record size before SET_RECORD_SIZE, an implementation default (NDMJOB's 20 x 512). */
export const V3_DEFAULT_RECORD_SIZE = 10240;

/** What the mover needs from its session. */
export interface MoverHost {
  readonly config: Config;
  readonly log: Logger;
  readonly localAddress: string | undefined;
  /** Data connections in TLS, when the DMA selected NDMPD_DATA_TLS on this session. */
  dataTls?(): DataTls | undefined;
  /** Who authenticated on the control connection (the audit trail). */
  readonly user?: string;
  /** The control connection's peer, "addr:port" (the audit trail). */
  readonly peer?: string;
  /** The configured name of the open tape (the audit trail). */
  deviceName?(): string | undefined;
  /** The session's NDMP version (fixed before the mover is made); 3 changes a few rules. */
  readonly version: number;
  post(code: number, body: unknown): void;
  /** The tape the session has open right now (it may change while the mover is paused). */
  tape(): { device: TapeDevice; writable: boolean } | undefined;
  /** LOCAL: the session's data service end, when it is listening for the mover. */
  connectLocalData?(mode: number): Duplex | undefined;
}

class Halted extends Error {}

export class MoverService {
  state: number = State.IDLE;
  mode: number = Mode.NOACTION;
  pauseReason: number = Pause.NA;
  haltReason: number = Halt.NA;
  recordSize = 0;
  recordNum = 0;
  bytesMoved = 0n;
  /** The running transfer as the audit trail names it, until its end is written. */
  private audited: { operation: string; devices: string[] } | undefined;
  seekPosition = 0n;
  bytesLeftToRead = 0n;
  windowOffset = 0n;
  windowLength = 0n;
  /** The data connection's peer, for GET_STATE (LOCAL when idle or local). */
  private connAddr: Addr = { addr_type: AddrType.LOCAL };

  /** TCP or IPC: waiting for the peer's CONNECT. */
  private listener: { accepted: Promise<Duplex>; close(): void; pending?(): Promise<void> } | undefined;
  /** LISTEN(LOCAL): waiting for the session's data service to connect. */
  private localListen = false;
  private conn: Duplex | undefined;
  private windowSetSincePause = false;
  /** Recovery: the data service closed the connection (seen while paused; see fromTape). */
  private peerClosed = false;
  private resume: (() => void) | undefined;
  /** Recovery: the record index (from the window start) the tape reads next. */
  private tapeRecord = 0;
  /** Recovery: the last record read, kept so a read that starts inside it needs no tape motion. */
  private lastRecord: { index: number; data: Buffer } | undefined;
  /**
   * Records sent (recovery) to a LOCAL reader that is done with a chunk once it asks for the
   * next: each with the stream offset where what was sent from it ends. Given back to the drive
   * (recycle) once the reader is past that, unless it is lastRecord (it may be served again).
   */
  private lent: Array<{ data: Buffer; sentEnd: number }> = [];
  private readWaiter: (() => void) | undefined;
  private pump: Promise<void> | undefined;
  /**
   * The tape operation the pump has under way, settled once its counters are updated. ABORT
   * waits for it: the record being written lands and is counted before the halt is reported,
   * so bytes_moved is what the tape holds and the tape is still when the DMA gets it back.
   */
  private tapeBusy: Promise<void> | undefined;
  /** ABORT is waiting for tapeBusy: the pump starts no further tape operation. */
  private aborting = false;

  /** v3 rules apply (digest §6.1): the session speaks version 3. */
  private readonly v3: boolean;

  constructor(private readonly host: MoverHost) {
    this.v3 = host.version === 3;
    // v3: a record size exists before SET_RECORD_SIZE, and the window starts infinite.
    if (this.v3) this.recordSize = V3_DEFAULT_RECORD_SIZE;
    this.windowLength = this.defaultWindowLength();
  }

  /** v4 has no default window (0, 0: nothing may move); v3's default is the infinite window. */
  private defaultWindowLength(): bigint {
    return this.v3 ? ALL1 : 0n;
  }

  // ---- requests (preconditions per the digest's table; the handlers call these) ----

  setRecordSize(len: number): void {
    this.requireState([State.IDLE], "MOVER_SET_RECORD_SIZE");
    if (len === 0 || len > MAX_RECORD_SIZE) {
      throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `record size must be 1..${MAX_RECORD_SIZE}`);
    }
    this.recordSize = len;
    // v4: a successful SET_RECORD_SIZE resets the window. v3 has no such rule, and its window
    // (infinite by default) would otherwise be lost by the DMA's routine SET_RECORD_SIZE.
    if (!this.v3) {
      this.windowOffset = 0n;
      this.windowLength = 0n;
    }
  }

  setWindow(offset: bigint, length: bigint): void {
    // v3 also allows LISTEN: v3 DMAs (NDMJOB) send MOVER_LISTEN first, then SET_WINDOW, and
    // ndmjob's v3 test-mover requires it. IDLE is allowed at every version (digest §3.2).
    this.requireState(this.v3 ? [State.IDLE, State.LISTEN, State.PAUSED] : [State.IDLE, State.PAUSED], "MOVER_SET_WINDOW");
    // (0, 0) is v4's "no window" state that SET_RECORD_SIZE and STOP leave. Setting it needs no
    // record size (ndmjob's conformance test does so first thing in IDLE); as a window it is
    // empty, so any transfer pauses at once until the DMA sets a real one.
    if (offset === 0n && length === 0n) {
      this.windowOffset = 0n;
      this.windowLength = 0n;
      this.recordNum = 0;
      this.tapeRecord = 0;
      this.lastRecord = undefined;
      this.windowSetSincePause = true;
      return;
    }
    if (this.recordSize === 0) throw new NdmpError(ErrorCode.PRECONDITION_ERR, "set the record size first");
    if (length === 0n) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, "window length 0");
    if (offset + length > ALL1 && length !== ALL1) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, "window overflows");
    const rs = BigInt(this.recordSize);
    if (this.mode === Mode.READ && this.state === State.PAUSED && length !== ALL1 && length % rs !== 0n) {
      throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, "a backup window must be a whole number of records");
    }
    if (offset % rs !== 0n) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, "the window must start on a record boundary");
    this.windowOffset = offset;
    this.windowLength = length;
    this.recordNum = Number(offset / rs);
    this.tapeRecord = 0;
    this.lastRecord = undefined;
    this.windowSetSincePause = true;
  }

  async listen(mode: number, addrType: number): Promise<Addr> {
    this.requireState([State.IDLE], "MOVER_LISTEN");
    this.checkStart(mode, addrType);
    if (addrType === AddrType.LOCAL) {
      this.localListen = true;
      this.enter(State.LISTEN, mode);
      return { addr_type: AddrType.LOCAL };
    }
    if (addrType === AddrType.IPC) {
      // Another session of this server (a duplication between two of its drives) connects.
      const l = listenIpc();
      this.await(l, mode, l.addr);
      return l.addr;
    }
    let l: DataListener;
    try {
      l = await listenData(this.host.localAddress, {
        ports: this.host.config.dataPorts,
        peers: peerFilter(this.host.config.dataPeers),
        refused: (peer, why) => audit(this.host.log, { event: "refused", user: this.host.user, peer, operation: "MOVER_LISTEN connection", outcome: "dropped", why }),
        tls: this.host.dataTls?.(),
      });
    } catch (e) {
      throw new NdmpError(ErrorCode.CONNECT_ERR, (e as Error).message);
    }
    this.await(l, mode);
    return { addr_type: AddrType.TCP, tcp_addr: l.addrs };
  }

  /** LISTEN over TCP or IPC: the first connection is the data connection. */
  private await(l: { accepted: Promise<Duplex>; close(): void }, mode: number, addr?: Addr): void {
    this.listener = l;
    this.enter(State.LISTEN, mode);
    l.accepted.then(
      (conn) => {
        if (this.state !== State.LISTEN || this.listener !== l) {
          conn.destroy();
          return;
        }
        this.listener = undefined;
        const sock = conn as { remoteAddress?: string; remotePort?: number };
        this.connAddr = addr ?? peerAddr(sock.remoteAddress, sock.remotePort);
        this.attach(conn);
      },
      () => {},
    );
  }

  async connect(mode: number, addr: Addr): Promise<void> {
    this.requireState([State.IDLE], "MOVER_CONNECT");
    this.checkStart(mode, addr.addr_type);
    if (addr.addr_type === AddrType.LOCAL) {
      const end = this.host.connectLocalData?.(mode);
      if (!end) throw new NdmpError(ErrorCode.ILLEGAL_STATE_ERR, "the data service is not listening (LOCAL)");
      this.enter(State.ACTIVE, mode);
      this.connAddr = { addr_type: AddrType.LOCAL };
      this.attach(end);
      return;
    }
    if (addr.addr_type === AddrType.IPC) {
      const end = addr.ipc_addr ? connectIpc(addr.ipc_addr.comm_data as Uint8Array) : undefined;
      if (!end) throw new NdmpError(ErrorCode.CONNECT_ERR, "no session of this server listens at that IPC address");
      this.enter(State.ACTIVE, mode);
      this.connAddr = addr;
      this.attach(end);
      return;
    }
    const addrs = addr.tcp_addr ?? [];
    if (addrs.length === 0) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, "no TCP address");
    if (addrs.length > MAX_CONNECT_ADDRS) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `${addrs.length} addresses (at most ${MAX_CONNECT_ADDRS})`);
    const allowed = connectableAddrs(addrs, peerFilter(this.host.config.dataPeers));
    let sock;
    try {
      sock = await connectData(allowed, undefined, this.host.dataTls?.());
    } catch (e) {
      throw new NdmpError(ErrorCode.CONNECT_ERR, (e as Error).message);
    }
    if (this.state !== State.IDLE) {
      sock.destroy();
      throw new NdmpError(ErrorCode.ILLEGAL_STATE_ERR, "the mover changed state while connecting");
    }
    this.enter(State.ACTIVE, mode);
    this.connAddr = peerAddr(sock.remoteAddress, sock.remotePort);
    this.attach(sock);
  }

  /** Takes in a data connection the peer has already made, before a request looks at the state. */
  async takePending(): Promise<void> {
    if (this.state === State.LISTEN) await this.listener?.pending?.();
  }


  /** DATA_CONNECT(LOCAL) on this session: hands the data service its end of the pipe. */
  acceptLocal(): Duplex {
    if (this.state !== State.LISTEN || !this.localListen) {
      throw new NdmpError(ErrorCode.ILLEGAL_STATE_ERR, "the mover is not listening (LOCAL)");
    }
    this.localListen = false;
    const pair = createLocalPair();
    this.connAddr = { addr_type: AddrType.LOCAL };
    this.attach(pair.mover);
    return pair.data;
  }

  read(offset: bigint, length: bigint): void {
    this.requireState([State.ACTIVE], "MOVER_READ");
    if (this.mode !== Mode.WRITE) throw new NdmpError(ErrorCode.ILLEGAL_STATE_ERR, "MOVER_READ needs a mover in WRITE mode");
    if (this.bytesLeftToRead > 0n) throw new NdmpError(ErrorCode.READ_IN_PROGRESS_ERR, "a read is already in progress");
    if (length === 0n || (length !== ALL1 && offset + length > ALL1)) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, "bad read range");
    this.seekPosition = offset;
    this.bytesLeftToRead = length;
    this.readWaiter?.();
  }

  continue(): void {
    this.requireState([State.PAUSED], "MOVER_CONTINUE");
    if (!this.windowSetSincePause) throw new NdmpError(ErrorCode.PRECONDITION_ERR, "set a new window before continuing");
    if (!this.host.tape()) throw new NdmpError(ErrorCode.DEV_NOT_OPEN_ERR, "no tape is open");
    if (this.peerClosed) {
      // The data service closed the connection while we were paused: nothing to continue.
      this.halt(Halt.CONNECT_CLOSED);
      return;
    }
    this.state = State.ACTIVE;
    this.pauseReason = Pause.NA;
    const r = this.resume;
    this.resume = undefined;
    r?.();
  }

  /** Checks the state at once (throws), then halts once the tape operation under way is done. */
  abort(): Promise<void> {
    if (this.state === State.HALTED) return Promise.resolve(); // recommended: no change, no second notify
    this.requireState([State.LISTEN, State.ACTIVE, State.PAUSED], "MOVER_ABORT");
    if (!this.tapeBusy) {
      this.halt(Halt.ABORTED);
      return Promise.resolve();
    }
    this.aborting = true;
    return this.tapeBusy.then(() => {
      this.aborting = false;
      this.halt(Halt.ABORTED); // no-op if the mover halted by itself meanwhile
    });
  }

  stop(): void {
    this.requireState([State.HALTED], "MOVER_STOP");
    const rs = this.recordSize;
    this.reset();
    this.recordSize = rs; // the one thing that persists across STOP
  }

  close(): void {
    this.requireState([State.PAUSED], "MOVER_CLOSE");
    this.halt(Halt.CONNECT_CLOSED);
  }

  getState() {
    const inHalted = this.state === State.HALTED;
    const inPaused = this.state === State.PAUSED;
    return {
      error: ErrorCode.NO_ERR,
      mode: this.mode,
      state: this.state,
      pause_reason: inPaused ? this.pauseReason : Pause.NA,
      halt_reason: inHalted ? this.haltReason : Halt.NA,
      record_size: this.recordSize,
      record_num: this.recordNum >>> 0,
      bytes_moved: this.bytesMoved,
      seek_position: this.seekPosition,
      bytes_left_to_read: this.bytesLeftToRead,
      window_offset: this.windowOffset,
      window_length: this.windowLength,
      data_connection_addr: this.connAddr,
    };
  }

  /** The control connection went away: abort and wait for the pump to let go of the tape. */
  async teardown(): Promise<void> {
    if (this.state === State.LISTEN || this.state === State.ACTIVE || this.state === State.PAUSED) this.halt(Halt.ABORTED);
    await this.pump?.catch(() => {});
  }

  // ---- state changes ----

  private requireState(ok: number[], what: string): void {
    if (!ok.includes(this.state)) throw new NdmpError(ErrorCode.ILLEGAL_STATE_ERR, `${what} in state ${stateName(this.state)}`);
  }

  /** LISTEN and CONNECT checks, in the order ndmjob's conformance tests expect. */
  private checkStart(mode: number, addrType: number): void {
    if (mode !== Mode.READ && mode !== Mode.WRITE) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `mover mode ${mode}`);
    if (addrType !== AddrType.LOCAL && addrType !== AddrType.TCP && addrType !== AddrType.IPC) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `address type ${addrType}`);
    if (this.recordSize === 0) throw new NdmpError(ErrorCode.PRECONDITION_ERR, "set the record size first");
    const tape = this.host.tape();
    if (!tape) throw new NdmpError(ErrorCode.DEV_NOT_OPEN_ERR, "no tape is open");
    if (mode === Mode.READ && !tape.writable) throw new NdmpError(ErrorCode.PERMISSION_ERR, "the tape is open for reading only");
  }

  private enter(state: number, mode: number): void {
    this.state = state;
    this.mode = mode;
    this.haltReason = Halt.NA;
    this.pauseReason = Pause.NA;
  }

  private reset(): void {
    this.listener?.close();
    this.listener = undefined;
    this.localListen = false;
    this.peerClosed = false;
    this.conn = undefined;
    this.lent = []; // what the last job's reader still held is the collector's
    this.state = State.IDLE;
    this.mode = Mode.NOACTION;
    this.pauseReason = Pause.NA;
    this.haltReason = Halt.NA;
    this.recordNum = 0;
    this.bytesMoved = 0n;
    this.seekPosition = 0n;
    this.bytesLeftToRead = 0n;
    this.windowOffset = 0n;
    this.windowLength = this.defaultWindowLength();
    this.connAddr = { addr_type: AddrType.LOCAL };
    this.lastRecord = undefined;
    this.tapeRecord = 0;
    this.pump = undefined;
    this.tapeBusy = undefined;
    this.aborting = false;
  }

  private halt(reason: number): void {
    if (this.state === State.HALTED || this.state === State.IDLE) return;
    this.state = State.HALTED;
    this.haltReason = reason;
    this.pauseReason = Pause.NA;
    this.listener?.close();
    this.listener = undefined;
    this.localListen = false;
    // A normal end (CONNECT_CLOSED) lets the peer read what was already sent; anything else resets.
    if (this.conn) {
      if (reason === Halt.CONNECT_CLOSED) closeAfterFlush(this.conn);
      else this.conn.destroy();
    }
    // Wake a pump waiting for CONTINUE or MOVER_READ so it sees the halt and lets go.
    const r = this.resume;
    this.resume = undefined;
    r?.();
    this.readWaiter?.();
    countMoverHalt(this.mode, reason, this.bytesMoved);
    this.host.log.info("mover halted", { reason: haltName(reason), bytes_moved: this.bytesMoved });
    if (this.audited) {
      audit(this.host.log, { event: "job-end", user: this.host.user, peer: this.host.peer, ...this.audited, bytes: this.bytesMoved, outcome: haltName(reason) });
      this.audited = undefined;
    }
    this.host.post(Message.NOTIFY_MOVER_HALTED, { reason });
  }

  /** Pauses and waits for CONTINUE; throws Halted if the mover halts instead. */
  private async pause(reason: number, seek = this.seekPosition): Promise<void> {
    // Recovery: not before the data service has consumed what was read before the pause. A DMA
    // seeing "mover PAUSED, data ACTIVE" takes the image to go on elsewhere (the next cartridge),
    // while the data service may be about to find the archive's end in those bytes and halt;
    // then the connection closes meanwhile and the mover halts CONNECT_CLOSED instead.
    if (this.mode === Mode.WRITE && this.conn) {
      await consumed(this.conn);
      if (this.state !== State.ACTIVE) throw new Halted();
    }
    this.state = State.PAUSED;
    this.pauseReason = reason;
    this.windowSetSincePause = false;
    this.host.log.info("mover paused", { reason: pauseName(reason), seek_position: seek });
    this.host.post(Message.NOTIFY_MOVER_PAUSED, { reason, seek_position: seek });
    await new Promise<void>((r) => (this.resume = r));
    if (this.state !== State.ACTIVE) throw new Halted();
  }

  private attach(conn: Duplex): void {
    this.conn = conn;
    this.peerClosed = false;
    this.state = State.ACTIVE;
    conn.on("error", (e) => this.host.log.debug("data connection error", { err: e }));
    this.host.log.info("mover active", { mode: this.mode === Mode.READ ? "READ" : "WRITE" });
    const device = this.host.deviceName?.();
    // READ: the data connection to tape (a backup); WRITE: tape to the data connection.
    this.audited = { operation: this.mode === Mode.READ ? "MOVER_MODE_READ" : "MOVER_MODE_WRITE", devices: device ? [device] : [] };
    const tls = conn instanceof TLSSocket ? { tls: true } : {};
    audit(this.host.log, { event: "job-start", user: this.host.user, peer: this.host.peer, ...this.audited, ...tls, outcome: "started" });
    this.pump = (this.mode === Mode.READ ? this.toTape(conn) : this.fromTape(conn)).catch((e) => {
      if (e instanceof Halted) return;
      this.host.log.error("mover failed", { err: e });
      this.halt(Halt.INTERNAL_ERROR);
    });
  }

  private currentTape(): TapeDevice {
    const t = this.host.tape();
    if (!t) throw new NdmpError(ErrorCode.DEV_NOT_OPEN_ERR, "the tape was closed under the mover");
    return t.device;
  }

  /** Runs one tape operation (and the bookkeeping that goes with it) as tapeBusy. */
  private async onTape<T>(op: (tape: TapeDevice) => Promise<T>): Promise<T> {
    if (this.aborting) throw new Halted();
    const run = op(this.currentTape());
    const busy = run.then(
      () => {},
      () => {},
    );
    this.tapeBusy = busy;
    try {
      return await run;
    } finally {
      if (this.tapeBusy === busy) this.tapeBusy = undefined;
    }
  }

  private windowEnd(): bigint {
    return this.windowLength === ALL1 ? ALL1 : this.windowOffset + this.windowLength;
  }

  // ---- backup: data connection -> tape ----

  private async toTape(conn: Duplex): Promise<void> {
    const rs = this.recordSize;
    const record = Buffer.allocUnsafe(rs);
    let fill = 0;
    const chunks = (conn as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    try {
      for (;;) {
        let next: IteratorResult<Buffer>;
        try {
          next = await chunks.next();
        } catch (e) {
          if (this.state === State.HALTED) throw new Halted();
          // The peer reset the connection: the stream is over. What it sent goes on tape,
          // including the partial record collected so far (padded as at a clean end).
          this.host.log.warn("data connection failed", { err: e });
          break;
        }
        if (next.done) break;
        const chunk = next.value;
        let off = 0;
        while (off < chunk.length) {
          const n = Math.min(rs - fill, chunk.length - off);
          chunk.copy(record, fill, off, off + n);
          fill += n;
          off += n;
          if (fill === rs) {
            await this.writeRecord(record, rs);
            fill = 0;
          }
        }
      }
    } finally {
      if (!conn.destroyed) void chunks.return?.(); // a halt or a tape failure: let go of the connection
    }
    if (this.state === State.HALTED) throw new Halted();
    if (fill > 0) {
      record.fill(0, fill);
      await this.writeRecord(record, fill);
    }
    this.halt(Halt.CONNECT_CLOSED);
  }

  /** Writes one record (payload bytes of stream in it), pausing for window end or end of tape. */
  private async writeRecord(record: Buffer, payload: number): Promise<void> {
    const rs = BigInt(this.recordSize);
    for (;;) {
      if (this.state !== State.ACTIVE) throw new Halted();
      if (BigInt(this.recordNum) * rs + rs > this.windowEnd()) {
        await this.pause(Pause.EOW, BigInt(this.recordNum) * rs);
        continue;
      }
      try {
        await this.onTape(async (tape) => {
          await tape.write(record);
          this.recordNum++;
          this.bytesMoved += BigInt(payload);
        });
      } catch (e) {
        if (this.state !== State.ACTIVE) throw new Halted();
        if (isTapeError(e, "EOM")) {
          await this.pause(Pause.EOM, BigInt(this.recordNum) * rs);
          continue;
        }
        if (e instanceof NdmpError || isTapeError(e)) {
          this.host.log.error("tape write failed", { err: e });
          if (this.v3) {
            // v3: a media error pauses; the DMA may change the tape, set a window and continue,
            // and the record is written again.
            await this.pause(Pause.MEDIA_ERROR, BigInt(this.recordNum) * rs);
            continue;
          }
          this.halt(Halt.MEDIA_ERROR);
          throw new Halted();
        }
        throw e;
      }
      return;
    }
  }

  // ---- recovery: tape -> data connection ----

  private async fromTape(conn: Duplex): Promise<void> {
    let peerGone = false;
    conn.once("close", () => {
      peerGone = true;
      this.peerClosed = true;
      // ACTIVE: the data service is done with the stream (digest §3.2: ACTIVE -> HALTED on
      // close). PAUSED: the tape side is the DMA's for now; it ends the job with MOVER_CLOSE.
      // Halting here as well would race the data service's own halt, and a DMA that polls
      // the two services one after the other (ndmjob) could see "mover halted, data active".
      if (this.state === State.ACTIVE) this.halt(Halt.CONNECT_CLOSED);
      this.readWaiter?.();
    });
    conn.resume(); // nothing is expected from the data service on a recovery: drain and ignore
    while (!peerGone && this.state !== State.HALTED) {
      if (this.bytesLeftToRead === 0n) {
        await new Promise<void>((r) => (this.readWaiter = r));
        this.readWaiter = undefined;
        continue;
      }
      await this.serveRead(conn);
    }
  }

  /** Serves the current MOVER_READ until it is complete (or the mover pauses or halts). */
  private async serveRead(conn: Duplex): Promise<void> {
    const rs = BigInt(this.recordSize);
    while (this.bytesLeftToRead > 0n) {
      if (this.state !== State.ACTIVE) throw new Halted();
      const pos = this.seekPosition;
      if (pos < this.windowOffset || pos >= this.windowEnd()) {
        await this.pause(Pause.SEEK, pos);
        continue;
      }
      const index = Number((pos - this.windowOffset) / rs);
      const data = await this.recordAt(index);
      if (data === undefined) continue; // paused and resumed: look again
      const recordStart = this.windowOffset + BigInt(index) * rs;
      const within = Number(pos - recordStart);
      if (within >= data.length) {
        // A short record ends the stream on this tape: nothing more to read here.
        await this.pause(this.windowLength === ALL1 ? Pause.EOF : Pause.SEEK, pos);
        continue;
      }
      let take = data.length - within;
      if (BigInt(take) > this.bytesLeftToRead) take = Number(this.bytesLeftToRead);
      const windowLeft = this.windowEnd() - pos;
      if (BigInt(take) > windowLeft) take = Number(windowLeft);
      // Count the bytes before handing them over: the peer may have them, and ask for the next
      // range, before this write's back-pressure wait returns.
      this.seekPosition += BigInt(take);
      this.bytesLeftToRead -= BigInt(take);
      this.bytesMoved += BigInt(take);
      noteSent(conn, take);
      this.lend(conn, data);
      try {
        await writeAll(conn, data.subarray(within, within + take));
      } catch (e) {
        if (e instanceof ConnectionGone) throw new Halted();
        throw e;
      }
    }
  }

  /**
   * The record `index` records past the window start: from the cache, or by moving the tape
   * there and reading it. Returns undefined after a pause (filemark or blank tape).
   */
  private async recordAt(index: number): Promise<Buffer | undefined> {
    if (this.lastRecord?.index === index) return this.lastRecord.data;
    try {
      if (index > this.tapeRecord) {
        await this.onTape(async (tape) => {
          const resid = await tape.fsr(index - this.tapeRecord);
          this.tapeRecord = index - resid;
        });
      } else if (index < this.tapeRecord) {
        await this.onTape(async (tape) => {
          const resid = await tape.bsr(this.tapeRecord - index);
          this.tapeRecord = index + resid;
        });
      }
      if (this.tapeRecord !== index) {
        await this.pause(this.windowLength === ALL1 ? Pause.EOF : Pause.SEEK, this.seekPosition);
        return undefined;
      }
      return await this.onTape(async (tape) => {
        this.giveBack(tape);
        const data = await tape.read(this.recordSize);
        this.tapeRecord++;
        this.recordNum = Number(this.windowOffset / BigInt(this.recordSize)) + this.tapeRecord;
        this.lastRecord = { index, data };
        return data;
      });
    } catch (e) {
      if (this.state !== State.ACTIVE) throw new Halted();
      if (isTapeError(e, "EOF")) {
        await this.pause(this.windowLength === ALL1 ? Pause.EOF : Pause.SEEK, this.seekPosition);
        return undefined;
      }
      if (isTapeError(e, "EOM")) {
        await this.pause(Pause.EOM, this.seekPosition);
        return undefined;
      }
      if (e instanceof NdmpError || isTapeError(e)) {
        this.host.log.error("tape read failed", { err: e });
        if (this.v3) {
          // v3: pause MEDIA_ERROR; after CONTINUE the record is looked for again.
          await this.pause(Pause.MEDIA_ERROR, this.seekPosition);
          return undefined;
        }
        this.halt(Halt.MEDIA_ERROR);
        throw new Halted();
      }
      throw e;
    }
  }

  /** Notes that bytes of `data` went out on `conn` (see lent); nothing for other readers. */
  private lend(conn: Duplex, data: Buffer): void {
    if (releasedByReader(conn) === undefined || !this.host.tape()?.device.recycle) return;
    const sentEnd = sentOnConnection(conn);
    const known = this.lent.find((l) => l.data === data);
    if (known) known.sentEnd = sentEnd;
    else this.lent.push({ data, sentEnd });
  }

  /** Gives the drive back each lent record the reader is done with. */
  private giveBack(tape: TapeDevice): void {
    if (this.lent.length === 0 || !this.conn) return;
    const released = releasedByReader(this.conn);
    if (released === undefined) return;
    this.lent = this.lent.filter((l) => {
      if (l.sentEnd > released || l.data === this.lastRecord?.data) return true;
      tape.recycle?.(l.data);
      return false;
    });
  }
}

function peerAddr(address: string | undefined, port: number | undefined): Addr {
  const ip = ipv4Of(address);
  return ip && port ? { addr_type: AddrType.TCP, tcp_addr: [tcpAddr(ip, port)] } : { addr_type: AddrType.TCP, tcp_addr: [] };
}

/** Ends the write side, and closes once the bytes are handed over (or after a grace period). */
function closeAfterFlush(conn: Duplex): void {
  if (conn.destroyed) return;
  const timer = setTimeout(() => conn.destroy(), 30_000);
  timer.unref();
  conn.end(() => {
    clearTimeout(timer);
    conn.destroy();
  });
}

const name = (table: Record<string, number>, v: number) => Object.entries(table).find(([, x]) => x === v)?.[0] ?? String(v);
const stateName = (v: number) => name(State, v);
const haltName = (v: number) => name(Halt, v);
const pauseName = (v: number) => name(Pause, v);
