/**
 * The data service (digest §3.1, §4): its state machine, its data connection, and the jobs
 * it runs (backup, recovery, file-history recovery) through the engine.
 *
 * On halting it closes the data connection, posts every FH and LOG message it has, and only
 * then NOTIFY_DATA_HALTED: DMAs stop collecting file history at the halt.
 */
import { countJob } from "../metrics/metrics.ts";
import { statSync } from "node:fs";
import { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { TLSSocket } from "node:tls";
import type { Config } from "../config.ts";
import { NDMP_ENV } from "../doc/environment.ts";
import { BUTYPES, findButype } from "../engine/butypes.ts";
import type { OverwritePolicy } from "../engine/restore-writer.ts";
import { FORMAT_ENGINES } from "../engine/formats.ts";
import { FileHistory } from "../engine/history.ts";
import { RecoverFailed } from "../engine/recover.ts";
import { selectionFilter, splitFiles, splitPatterns, type Selection } from "../engine/selection.ts";
import { Targets } from "../engine/targets.ts";
import { DESTINATION_PATH, NAME, ORIGINAL_PATH, type Nlist } from "../protocol/xdr/nlist.ts";
import type { Logger } from "../log.ts";
import type { MoverService } from "../mover/mover.ts";
import { loadNative, type NativeApi } from "../native/index.ts";
import {
  AddrType,
  ALL1,
  ButypeAttr,
  DataHaltReason as Halt,
  DataOperation as Op,
  DataState as State,
  DataStateUnsupported,
  ErrorCode,
  LogType,
  Message,
  NdmpError,
  RecoveryStatus,
} from "../protocol/codes.ts";
import { toBuffer, type Bytes } from "../protocol/xdr/codec.ts";
import type { Addr, Pval } from "../protocol/xdr/v4.ts";
import { StreamSource } from "../engine/stream-source.ts";
import { showPath, stripTrailingSlashes } from "../engine/fsutil.ts";
import { BaseError, backupStartTime, dumpDateEnv, recordBackup, resolveBase, type BackupBase } from "../incremental/index.ts";
import { audit, AUDIT_PATHS, auditPaths } from "../security/audit.ts";
import { requireInScope, requireRecover, type UserScope } from "../security/scope.ts";
import { ownDirectories, parsePolicy, planSnapshot, takeSnapshot, type Snapshot, type SnapshotPlan, type SnapshotPolicy } from "../snapshot/index.ts";
import { ConnectionGone } from "../transport/backpressure.ts";
import { trackTcpReader } from "../transport/consumers.ts";
import { createLocalPair } from "../transport/local.ts";
import { connectIpc, listenIpc } from "../transport/ipc.ts";
import { peerFilter } from "../transport/peers.ts";
import type { DataTls } from "../transport/tls.ts";
import { connectableAddrs, connectData, ipv4Of, listenData, MAX_CONNECT_ADDRS, tcpAddr, type DataListener } from "../transport/tcp.ts";

export interface DataHost {
  readonly config: Config;
  readonly log: Logger;
  readonly localAddress: string | undefined;
  /** Data connections in TLS, when the DMA selected NDMPD_DATA_TLS on this session. */
  dataTls?(): DataTls | undefined;
  /** Who authenticated on the control connection (scopes, the audit trail). */
  readonly user?: string;
  /** The control connection's peer, "addr:port" (the audit trail). */
  readonly peer?: string;
  /** The devices the session holds (the audit trail). */
  devices?(): string[];
  post(code: number, body: unknown): void;
  drained(): Promise<void>;
  /** drained() while the DMA is behind reading posts, else undefined (see Peer.pace). */
  pace(): Promise<void> | undefined;
  /** FH posts pre-encoded (engine/history.ts, Peer.takesRecords / postRecord). */
  takesRecords?(): boolean;
  postRecord?(record: Buffer): void;
  /** The session's mover (LOCAL connections and LOCAL reads). */
  mover(): MoverService | undefined;
}

/** ndmjob's default mover record size (-b 20: 20 x 512 bytes). */
const DEFAULT_RECORD_SIZE = 10240;

/** How often a running job reports progress with LOG_MESSAGE. */
const PROGRESS_EVERY_MS = 5000;

class Env {
  constructor(readonly pairs: Pval[]) {}
  /** The first value given (ndmjob sends the user's -E values before those from an index). */
  get(name: string): string | undefined {
    const p = this.pairs.find((x) => toBuffer(x.name).toString() === name);
    return p === undefined ? undefined : toBuffer(p.value).toString("utf8");
  }
  bytes(name: string): Buffer | undefined {
    const p = this.pairs.find((x) => toBuffer(x.name).toString() === name);
    return p === undefined ? undefined : toBuffer(p.value);
  }
  all(name: string): Buffer[] {
    return this.pairs.filter((x) => toBuffer(x.name).toString() === name).map((x) => toBuffer(x.value));
  }
  /** Every variable, first value wins (for the format engines). */
  map(): Map<string, string> {
    const m = new Map<string, string>();
    for (const p of this.pairs) {
      const k = toBuffer(p.name).toString();
      if (!m.has(k)) m.set(k, toBuffer(p.value).toString("utf8"));
    }
    return m;
  }
  bool(name: string, dflt: boolean): boolean {
    const v = this.get(name)?.trim().toLowerCase();
    if (v === undefined || v === "") return dflt;
    if (["y", "yes", "t", "true", "1", "on"].includes(v)) return true;
    if (["n", "no", "f", "false", "0", "off"].includes(v)) return false;
    return dflt;
  }
}

export class DataService {
  state: number = State.IDLE;
  operation: number = Op.NOACTION;
  haltReason: number = Halt.NA;
  /**
   * Bytes the job has processed, kept as a number (progress sets it per entry, and a BigInt
   * per entry is an allocation); exact to 8 PiB.
   */
  private processed = 0;
  get bytesProcessed(): bigint {
    return BigInt(this.processed);
  }
  set bytesProcessed(v: bigint) {
    this.processed = Number(v);
  }
  /** For `ndmpd sessions` and the metrics: the running job's entries and current path. */
  entries = 0;
  currentPath: Buffer | undefined;
  readOffset = 0n;
  readLength = 0n;
  private env: Pval[] = [];
  private connAddr: Addr = { addr_type: AddrType.LOCAL };
  private conn: Duplex | undefined;
  /** TCP or IPC: waiting for the peer's CONNECT. */
  private listener: { accepted: Promise<Duplex>; close(): void; pending?(): Promise<void> } | undefined;
  private localListen = false;
  private job: AbortController | undefined;
  /** The running job's file history: closed (flushed) at the halt, before NOTIFY_DATA_HALTED. */
  private history: FileHistory | undefined;
  private running: Promise<void> | undefined;
  private messageId = 0;
  /** The running job as the audit trail names it, until its end is written. */
  private audited: { operation: string; paths?: string[]; paths_total?: number; devices: string[] } | undefined;

  constructor(private readonly host: DataHost) {}

  // ---- connection set-up ----

  async listen(addrType: number): Promise<Addr> {
    this.requireState([State.IDLE], "DATA_LISTEN");
    if (addrType === AddrType.LOCAL) {
      this.localListen = true;
      this.state = State.LISTEN;
      return { addr_type: AddrType.LOCAL };
    }
    if (addrType === AddrType.IPC) {
      // Another session of this server (a copy within one server) connects with the token.
      const l = listenIpc();
      this.await(l, l.addr);
      return l.addr;
    }
    if (addrType !== AddrType.TCP) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `address type ${addrType}`);
    let l: DataListener;
    try {
      l = await listenData(this.host.localAddress, {
        ports: this.host.config.dataPorts,
        peers: peerFilter(this.host.config.dataPeers),
        refused: (peer, why) => audit(this.host.log, { event: "refused", user: this.host.user, peer, operation: "DATA_LISTEN connection", outcome: "dropped", why }),
        tls: this.host.dataTls?.(),
      });
    } catch (e) {
      throw new NdmpError(ErrorCode.CONNECT_ERR, (e as Error).message);
    }
    this.await(l);
    return { addr_type: AddrType.TCP, tcp_addr: l.addrs };
  }

  /** LISTEN over TCP or IPC: the first connection is the data connection. */
  private await(l: { accepted: Promise<Duplex>; close(): void }, addr?: Addr): void {
    this.listener = l;
    this.state = State.LISTEN;
    l.accepted.then(
      (conn) => {
        if (this.state !== State.LISTEN || this.listener !== l) return void conn.destroy();
        this.listener = undefined;
        const sock = conn as { remoteAddress?: string; remotePort?: number };
        this.connected(conn, addr ?? peerAddr(sock.remoteAddress, sock.remotePort));
      },
      () => {},
    );
  }

  async connect(addr: Addr): Promise<void> {
    this.requireState([State.IDLE], "DATA_CONNECT");
    if (addr.addr_type === AddrType.LOCAL) {
      const mover = this.host.mover();
      if (!mover) throw new NdmpError(ErrorCode.ILLEGAL_STATE_ERR, "the mover is not listening (LOCAL)");
      this.connected(mover.acceptLocal(), { addr_type: AddrType.LOCAL });
      return;
    }
    if (addr.addr_type === AddrType.IPC) {
      const end = addr.ipc_addr ? connectIpc(toBuffer(addr.ipc_addr.comm_data)) : undefined;
      if (!end) throw new NdmpError(ErrorCode.CONNECT_ERR, "no session of this server listens at that IPC address");
      this.connected(end, addr);
      return;
    }
    if (addr.addr_type !== AddrType.TCP || !addr.tcp_addr?.length) {
      throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `unsupported address type ${addr.addr_type}`);
    }
    if (addr.tcp_addr.length > MAX_CONNECT_ADDRS) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `${addr.tcp_addr.length} addresses (at most ${MAX_CONNECT_ADDRS})`);
    const allowed = connectableAddrs(addr.tcp_addr, peerFilter(this.host.config.dataPeers));
    let sock;
    try {
      sock = await connectData(allowed, undefined, this.host.dataTls?.());
    } catch (e) {
      throw new NdmpError(ErrorCode.CONNECT_ERR, (e as Error).message);
    }
    if (this.state !== State.IDLE) {
      sock.destroy();
      throw new NdmpError(ErrorCode.ILLEGAL_STATE_ERR, "the data service changed state while connecting");
    }
    this.connected(sock, peerAddr(sock.remoteAddress, sock.remotePort));
  }

  /** Takes in a data connection the peer has already made, before a request looks at the state. */
  async takePending(): Promise<void> {
    if (this.state === State.LISTEN) await this.listener?.pending?.();
  }


  /** MOVER_CONNECT(LOCAL) on this session, while we listen LOCAL. */
  acceptLocalFromMover(_mode: number): Duplex | undefined {
    if (this.state !== State.LISTEN || !this.localListen) return undefined;
    this.localListen = false;
    const pair = createLocalPair();
    this.connected(pair.data, { addr_type: AddrType.LOCAL });
    return pair.mover;
  }

  private connected(conn: Duplex, addr: Addr): void {
    // A mover of this process on the other end (three-way between two sessions) sees our reads.
    if (conn instanceof Socket) trackTcpReader(conn);
    this.conn = conn;
    this.connAddr = addr;
    this.state = State.CONNECTED;
    conn.on("error", (e) => this.host.log.debug("data connection error", { err: e }));
    // A connection lost before a job starts is a connection error (digest §3.1).
    conn.once("close", () => {
      if (this.state === State.CONNECTED) this.halt(Halt.CONNECT_ERROR, "the data connection closed before the job started");
    });
  }

  // ---- jobs ----

  startBackup(butypeName: Bytes, envPairs: Pval[]): void {
    this.requireState([State.CONNECTED], "DATA_START_BACKUP");
    checkEnv(envPairs);
    const butype = this.butype(butypeName);
    const engine = FORMAT_ENGINES[butype]!;
    const env = new Env(envPairs);
    const root = env.bytes("FILESYSTEM") ?? env.bytes("PREFIX");
    if (!root || root[0] !== 0x2f) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, "FILESYSTEM must be an absolute path");
    requireInScope(this.scope, this.user, root, "back up");
    let isDir = false;
    try {
      isDir = statSync(root).isDirectory();
    } catch {
      // reported below
    }
    if (!isDir) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `FILESYSTEM ${root.toString()} is not a directory here`);
    const base = this.resolveBase(env, butype, stripTrailingSlashes(root));
    const { policy, plan } = this.snapshotPlan(env, stripTrailingSlashes(root));
    const hist = (env.get("HIST") ?? "n").trim().toLowerCase();
    const wantHistory = ["y", "yes", "t", "true", "f", "d", "1"].includes(hist);
    // HIST=f asks for path-style history, HIST=d for dir/node style; y lets the format choose.
    const historyStyle = hist === "f" ? "file" : hist === "d" ? "dir" : engine.defaultHistory;
    const selection: Selection = {
      exclude: env.all("EXCLUDE").flatMap((v) => splitPatterns(v.toString("latin1"))),
      files: env.all("FILES").flatMap((v) => splitFiles(v)),
    };
    selectionFilter(selection); // a pattern picomatch refuses fails the request, before the job starts

    const ours: Array<[string, string]> = [
      ["TYPE", butype],
      ["PATHNAME_SEPARATOR", "/"],
      // Every entry's fh_info is its offset in the stream: direct access works on this backup.
      ["DIRECT", "y"],
    ];
    // With our own mover we know the tape's record size, which direct-access reads align to.
    const rs = this.connAddr.addr_type === AddrType.LOCAL ? this.host.mover()?.recordSize : undefined;
    if (rs) ours.push(["RECORD_SIZE", String(rs)]);
    this.begin(Op.BACKUP, envPairs, ours, [root]);
    const stateDir = this.host.config.stateDir;
    const out = this.conn!;
    const history = wantHistory ? new FileHistory(this.host) : undefined;
    this.run("backup", history, async (signal, progress) => {
      this.log(LogType.NORMAL, `backup of ${root.toString()} (${butype}, level ${base.level}) started`);
      for (const note of base.notes) this.log(LogType.NORMAL, note);
      const native = await loadNative();
      const snap = await this.snapshot(policy, plan, root, native);
      // Whatever happens from here (failure, DATA_ABORT, a lost DMA), the snapshot is deleted.
      try {
        if (signal.aborted) throw signal.reason ?? new Error("aborted");
        // Without a snapshot, taken before the walk: whatever changes while we walk is newer and
        // goes into the next incremental. With one, the file clock just before it was made.
        const startTime = snap?.time ?? backupStartTime(stateDir);
        const result = await engine.backup({
          root,
          // The snapshot is read; names, history, headers and records stay those of the live tree.
          source: snap?.dir,
          remap: snap && ((e) => snap.remap(e)),
          out,
          history,
          historyStyle,
          level: base.level,
          base,
          startTime,
          stateDir,
          env: env.map(),
          recordSize: rs,
          native,
          signal,
          // Our snapshot directory (at a subvolume's root) is never backed up, live or from a snapshot.
          selection: { ...selection, exclude: [...selection.exclude, ...ownDirectories(root)] },
          warn: (m) => void (signal.aborted || this.log(LogType.WARNING, m)),
          progress,
          pace: () => this.host.pace(),
        });
        // A backup halted meanwhile (DATA_ABORT) is not one to build on.
        if (signal.aborted) throw signal.reason ?? new Error("aborted");
        // Progress stops at the last entry: the stream's end (the format's trailer) counts too.
        this.bytesProcessed = BigInt(result.bytes);
        // The format's own additions to DATA_GET_ENV, then DUMP_DATE (a token) and LEVEL for every backup.
        for (const [name, value] of result.envOut ?? []) this.setEnv(name, value);
        for (const [name, value] of dumpDateEnv(base, startTime)) this.setEnv(name, value);
        // Only a backup that got this far is recorded (dumpdates with UPDATE, and the token's record).
        await recordBackup(stateDir, base, startTime, result.dirs);
        this.log(
          LogType.NORMAL,
          `backup done: ${result.entries} entries, ${result.bytes} bytes` + (result.warnings ? `, ${result.warnings} warnings` : ""),
        );
      } finally {
        await snap?.release();
      }
    });
  }

  /**
   * SNAPSHOT (or the configured default) and how a snapshot of `root` would be made. `required`
   * without a method is refused here, before the job starts (ILLEGAL_ARGS and a LOG_MESSAGE).
   */
  private snapshotPlan(env: Env, root: Buffer): { policy: SnapshotPolicy; plan: SnapshotPlan | string } {
    const given = env.get("SNAPSHOT");
    const policy = parsePolicy(given, this.host.config.backup.snapshot);
    if (!policy) {
      const why = `SNAPSHOT=${given}: must be y, n, auto or required`;
      this.log(LogType.ERROR, why);
      throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, why);
    }
    if (policy === "n") return { policy, plan: "SNAPSHOT=n" };
    const plan = planSnapshot(this.host.config, root);
    if (policy === "required" && typeof plan === "string") {
      const why = `SNAPSHOT=required: ${root.toString()} has no snapshot method (${plan}; btrfs is built in, other filesystems need a [[snapshot]] hook)`;
      this.log(LogType.ERROR, why);
      throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, why);
    }
    return { policy, plan };
  }

  /**
   * The job's snapshot, or undefined for a live backup (said in a warning unless SNAPSHOT=n).
   * Under auto a snapshot that cannot be made means a live backup; under y and required, a failed job.
   * DATA_GET_ENV's SNAPSHOT tells which: btrfs:<name>, hook:<name> or none.
   */
  private async snapshot(policy: SnapshotPolicy, plan: SnapshotPlan | string, root: Buffer, native: NativeApi): Promise<Snapshot | undefined> {
    if (typeof plan === "string") {
      if (policy !== "n") this.log(LogType.WARNING, `no snapshot of ${root.toString()} (${plan}): backing up the live tree`);
      this.setEnv("SNAPSHOT", "none");
      return undefined;
    }
    try {
      const snap = await takeSnapshot(plan, { stateDir: this.host.config.stateDir, native, log: this.host.log });
      this.setEnv("SNAPSHOT", snap.label);
      this.log(LogType.NORMAL, `snapshot ${snap.label} made (${snap.via}): backing up ${root.toString()} as it was then`);
      return snap;
    } catch (e) {
      if (policy !== "auto") throw new Error(`SNAPSHOT=${policy}: ${(e as Error).message}`);
      this.log(LogType.WARNING, `${(e as Error).message}: backing up the live tree`);
      this.setEnv("SNAPSHOT", "none");
      return undefined;
    }
  }

  startRecover(butypeName: Bytes, envPairs: Pval[], nlist: Nlist, filehist: boolean): void {
    this.requireState([State.CONNECTED], filehist ? "DATA_START_RECOVER_FILEHIST" : "DATA_START_RECOVER");
    checkEnv(envPairs);
    checkNlist(nlist, this.host.config.limits.maxNlist);
    const engine = FORMAT_ENGINES[this.butype(butypeName)]!;
    const env = new Env(envPairs);
    const targets = filehist ? Targets.none() : this.targets(env, nlist);
    const requested = nlist.length;
    const destinations = filehist ? [] : firstDestinations(targets, AUDIT_PATHS);
    // Reading a backup for its file history writes nothing: a read-only user may do that.
    if (!filehist) {
      requireRecover(this.scope, this.user, destinations);
      if (this.scope?.paths) for (let i = 0; i < targets.length; i++) requireInScope(this.scope, this.user, targets.destination(i)!, "restore to");
    }
    const recursive = env.bool("RECURSIVE", true);
    const overwrite = filehist ? undefined : this.overwritePolicy(env);
    // Direct access when the DMA asks for it and gave at least one offset to go to (digest §3.4);
    // targets without one are found by a scan from the start.
    const direct = !filehist && engine.direct && env.bool("DIRECT", false) && targets.byFhInfo().length > 0;
    this.begin(filehist ? Op.RECOVER_FILEHIST : Op.RECOVER, envPairs, [], destinations, filehist ? 0 : targets.length);
    const input = this.conn!;
    const history = filehist ? new FileHistory(this.host) : undefined;
    this.run(filehist ? "file history" : "recovery", history, async (signal, progress) => {
      const what = filehist ? "reading the backup for file history" : `recovery of ${requested || "all"} path(s) started`;
      this.log(LogType.NORMAL, direct ? `${what} (direct access)` : what);
      const unknown = unknownRecoveryEnv(env);
      if (unknown.length > 0) this.log(LogType.NORMAL, `environment not used by this server, ignored: ${unknown.join(", ")}`);
      const source = direct ? new StreamSource(input, (o, l) => this.requestStream(o, l), this.recordSize(env)) : undefined;
      if (!source) this.requestStream(0n, ALL1);
      const native = await loadNative();
      try {
        const r = await engine.recover({
          input,
          source,
          targets,
          recursive,
          extract: !filehist,
          history,
          native,
          overwrite,
          signal,
          warn: (m) => void (signal.aborted || this.log(LogType.WARNING, m)),
          progress,
          pace: () => this.host.pace(),
        });
        const reads = source ? `, ${source.requests} direct reads` : "";
        this.log(LogType.NORMAL, `recovery done: ${r.entries} entries read, ${r.restored} restored, ${r.bytes} bytes${reads}`);
        // Each failure was a WARNING; the job's outcome must not read as a clean restore
        // (GNU tar exits 2 then): one ERROR, which DMAs and our CLI show as a failed job.
        if (r.failed > 0) {
          this.log(LogType.ERROR, `${r.failed} object(s) could not be restored (the first: ${showPath(r.firstFailed!)}); the warnings above say why`);
        }
      } finally {
        // One LOG_FILE per nlist entry; a whole-image recovery (empty nlist) has none to report.
        if (!filehist && requested > 0) await this.reportFiles(targets, signal);
      }
    });
  }

  private get user(): string {
    return this.host.user ?? "";
  }

  private get scope(): UserScope | undefined {
    return this.host.user === undefined ? undefined : this.host.config.scopes.get(this.host.user);
  }

  /**
   * LEVEL / BASE_DATE / UPDATE / IGNORE_CTIME as one base (src/incremental). A request that
   * cannot be served is refused with ILLEGAL_ARGS, and a LOG_MESSAGE says why (DMAs show those).
   */
  private resolveBase(env: Env, butype: string, root: Buffer): BackupBase {
    let base: BackupBase;
    try {
      base = resolveBase(env.map(), { stateDir: this.host.config.stateDir, type: butype, root });
    } catch (e) {
      if (!(e instanceof BaseError)) throw e;
      this.log(LogType.ERROR, e.message);
      throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, e.message);
    }
    if (base.level > 0 && (findButype(butype)!.attrs & ButypeAttr.BACKUP_INCREMENTAL) === 0) {
      const why = `LEVEL=${base.level}: ${butype} backups are full backups only; use LEVEL=0 (or the dump type)`;
      this.log(LogType.ERROR, why);
      throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, why);
    }
    return base;
  }

  /**
   * The tape's record size, which direct-access reads are aligned to: our own mover's in the
   * LOCAL configuration; otherwise what the backup recorded (RECORD_SIZE), else ndmjob's default.
   */
  private recordSize(env: Env): number {
    const local = this.connAddr.addr_type === AddrType.LOCAL ? this.host.mover()?.recordSize : undefined;
    if (local) return local;
    const given = Number(env.get("RECORD_SIZE"));
    return Number.isInteger(given) && given >= 512 && given <= 16 * 1024 * 1024 ? given : DEFAULT_RECORD_SIZE;
  }

  /**
   * OVERWRITE (RESTORE_OVERWRITE, FluidFS's name): y (the default) replaces what is at the
   * destination, n keeps it, newer replaces it only with a newer copy. Anything else is refused.
   */
  private overwritePolicy(env: Env): OverwritePolicy {
    const name = env.get("OVERWRITE") !== undefined ? "OVERWRITE" : "RESTORE_OVERWRITE";
    const v = (env.get(name) ?? "").trim().toLowerCase();
    if (v === "" || ["y", "yes", "t", "true", "1"].includes(v)) return "always";
    if (["n", "no", "f", "false", "0"].includes(v)) return "never";
    if (v === "newer") return "newer";
    const why = `${name}=${env.get(name)}: must be y, n or newer`;
    this.log(LogType.ERROR, why);
    throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, why);
  }

  /**
   * The nlist as targets; an empty nlist is the whole image to PREFIX (or FILESYSTEM). Each entry
   * goes to destination_path/name, or destination_path when name is empty (ndmjob); with
   * RECOVER_FULL_PATHS=y to destination_path/original_path instead: its full original path
   * recreated under the destination (PREFIX or FILESYSTEM when destination_path is empty).
   */
  private targets(env: Env, nlist: Nlist): Targets {
    const base = env.bytes("PREFIX") ?? env.bytes("FILESYSTEM");
    const fullPaths = env.bool("RECOVER_FULL_PATHS", false);
    if (nlist.length === 0) {
      if (!base || base[0] !== 0x2f) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, "a whole-image recovery needs PREFIX or FILESYSTEM");
      return Targets.whole(base);
    }
    const targets = new Targets(nlist, { base, fullPaths });
    for (let i = 0; i < nlist.length; i++) {
      const why = targets.problemWith(i);
      if (why) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, why);
    }
    return targets;
  }

  /** Asks for stream bytes: NOTIFY_DATA_READ to the DMA, or straight to our own mover (LOCAL). */
  private requestStream(offset: bigint, length: bigint): void {
    this.readOffset = offset;
    this.readLength = length;
    const mover = this.host.mover();
    if (this.connAddr.addr_type === AddrType.LOCAL && mover) {
      mover.read(offset, length);
      return;
    }
    this.host.post(Message.NOTIFY_DATA_READ, { offset, length });
  }

  /**
   * One LOG_FILE per nlist entry, with the status its first failure recorded (restore-set.ts),
   * paced like every post (a million-entry nlist is a million posts).
   */
  private async reportFiles(targets: Targets, signal: AbortSignal): Promise<void> {
    for (let t = 0; t < targets.length; t++) {
      if (signal.aborted) return; // halted: nothing more is posted after NOTIFY_DATA_HALTED
      const wait = this.host.pace();
      if (wait) await wait;
      const status = targets.status(t) ?? (targets.isFound(t) ? RecoveryStatus.SUCCESSFUL : RecoveryStatus.FAILED_NOT_FOUND);
      this.host.post(Message.LOG_FILE, { name: targets.reportName(t), recovery_status: status });
    }
  }

  private butype(name: Bytes): string {
    const b = findButype(toBuffer(name).toString());
    if (!b) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `unknown backup type ${toBuffer(name).toString()}`);
    if (!FORMAT_ENGINES[b.name]) throw new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, `backup type ${b.name} is not available yet`);
    return b.name;
  }

  /** Adds or updates one pair of the saved env (what DATA_GET_ENV returns). */
  private setEnv(name: string, value: string): void {
    this.env = [...this.env.filter((p) => toBuffer(p.name).toString() !== name), { name, value }];
  }

  /** Enters ACTIVE with the saved env: the DMA's pairs, with ours added or updated. */
  private begin(op: number, envPairs: Pval[], ours: Array<[string, string]>, paths: Buffer[], pathsTotal = paths.length): void {
    const names = new Set(ours.map(([n]) => n));
    this.env = [...envPairs.filter((p) => !names.has(toBuffer(p.name).toString())), ...ours.map(([name, value]) => ({ name, value }))];
    this.operation = op;
    this.state = State.ACTIVE;
    this.bytesProcessed = 0n;
    // A backup's root; a recovery's destinations (each nlist entry's, or PREFIX for the whole image).
    this.audited = { operation: `DATA_OP_${nameOf(Op, op)}`, ...auditPaths(paths, showPath, pathsTotal), devices: this.host.devices?.() ?? [] };
    const tls = this.conn instanceof TLSSocket ? { tls: true } : {};
    audit(this.host.log, { event: "job-start", user: this.user, peer: this.host.peer, ...this.audited, ...tls, outcome: "started" });
  }

  private run(
    what: string,
    history: FileHistory | undefined,
    body: (signal: AbortSignal, progress: (bytes: number, entries: number, path?: Buffer) => void) => Promise<void>,
  ): void {
    const job = new AbortController();
    this.job = job;
    this.history = history;
    let last = Date.now();
    this.entries = 0;
    this.currentPath = undefined;
    const progress = (bytes: number, entries: number, path?: Buffer) => {
      if (job.signal.aborted) return; // halted: the job is only winding down
      this.processed = bytes;
      this.entries = entries;
      if (path) this.currentPath = path;
      const now = Date.now();
      if (now - last >= PROGRESS_EVERY_MS) {
        last = now;
        this.log(LogType.NORMAL, `${what}: ${bytes} bytes, ${entries} entries`);
      }
    };
    this.running = body(job.signal, progress).then(
      () => {
        history?.flush();
        if (this.job !== job) return; // halted, stopped and followed by another job meanwhile
        this.halt(Halt.SUCCESSFUL);
      },
      (e: Error) => {
        history?.flush();
        // Aborted: already halted, and maybe already followed by another job, which this one's
        // winding down (a connection error from its old connection, say) must not halt.
        if (this.job !== job || this.state !== State.ACTIVE) return;
        if (e instanceof ConnectionGone || CONNECTION_ERRORS.has((e as NodeJS.ErrnoException).code ?? "")) {
          this.log(LogType.ERROR, `${what} failed: ${e instanceof ConnectionGone ? e.message : `the data connection was lost (${e.message})`}`);
          this.halt(Halt.CONNECT_ERROR);
        } else {
          this.log(LogType.ERROR, `${what} failed: ${e.message}`);
          if (!(e instanceof RecoverFailed)) this.host.log.error(`${what} failed`, { err: e, stack: e.stack });
          this.halt(Halt.INTERNAL_ERROR);
        }
      },
    );
  }

  abort(): void {
    if (this.state === State.HALTED) return; // recommended: no change, no second notify
    this.requireState([State.LISTEN, State.CONNECTED, State.ACTIVE], "DATA_ABORT");
    this.job?.abort(new Error("aborted by the DMA"));
    this.halt(Halt.ABORTED);
  }

  stop(): void {
    this.requireState([State.HALTED], "DATA_STOP");
    this.state = State.IDLE;
    this.operation = Op.NOACTION;
    this.haltReason = Halt.NA;
    this.bytesProcessed = 0n;
    this.readOffset = 0n;
    this.readLength = 0n;
    this.env = [];
    this.connAddr = { addr_type: AddrType.LOCAL };
    this.running = undefined;
  }

  /** A value of the running (or last) job's environment, for `ndmpd sessions`. */
  envValue(name: string): string | undefined {
    const p = this.env.find((x) => toBuffer(x.name).toString() === name);
    return p ? toBuffer(p.value).toString() : undefined;
  }

  getEnv() {
    this.requireState([State.ACTIVE, State.HALTED], "DATA_GET_ENV");
    return { error: ErrorCode.NO_ERR, env: this.env };
  }

  getState() {
    return {
      unsupported: DataStateUnsupported.EST_BYTES_REMAIN | DataStateUnsupported.EST_TIME_REMAIN,
      error: ErrorCode.NO_ERR,
      operation: this.operation,
      state: this.state,
      halt_reason: this.state === State.HALTED ? this.haltReason : Halt.NA,
      bytes_processed: this.bytesProcessed,
      est_bytes_remain: ALL1,
      est_time_remain: 0xffff_ffff,
      data_connection_addr: this.connAddr,
      read_offset: this.readOffset,
      read_length: this.readLength,
    };
  }

  /** The control connection went away: stop the job and let go of the connection. */
  async teardown(): Promise<void> {
    if (this.state === State.LISTEN || this.state === State.CONNECTED || this.state === State.ACTIVE) {
      this.job?.abort(new Error("the control connection closed"));
      this.halt(Halt.ABORTED);
    }
    await this.running?.catch(() => {});
  }

  private halt(reason: number, why?: string): void {
    if (this.state === State.HALTED || this.state === State.IDLE) return;
    this.state = State.HALTED;
    this.haltReason = reason;
    this.listener?.close();
    this.listener = undefined;
    this.localListen = false;
    this.conn?.destroy();
    this.conn = undefined;
    if (why) this.log(LogType.ERROR, why);
    // From here the job only winds down: it posts nothing more (FH, warnings) after the notify.
    this.job?.abort(new Error("the data service halted"));
    this.history?.close();
    this.history = undefined;
    countJob(this.operation, reason, this.bytesProcessed, this.entries);
    if (this.audited) {
      audit(this.host.log, { event: "job-end", user: this.user, peer: this.host.peer, ...this.audited, bytes: this.bytesProcessed, outcome: nameOf(Halt, reason) });
      this.audited = undefined;
    }
    this.host.log.info("data halted", { reason: Object.entries(Halt).find(([, v]) => v === reason)?.[0], bytes: this.bytesProcessed });
    this.host.post(Message.NOTIFY_DATA_HALTED, { reason });
  }

  private log(type: number, text: string): void {
    this.host.post(Message.LOG_MESSAGE, {
      log_type: type,
      message_id: ++this.messageId,
      entry: text,
      associated_message_valid: 0,
      associated_message_sequence: 0,
    });
  }

  private requireState(ok: number[], what: string): void {
    if (!ok.includes(this.state)) {
      const name = Object.entries(State).find(([, v]) => v === this.state)?.[0];
      throw new NdmpError(ErrorCode.ILLEGAL_STATE_ERR, `${what} in state ${name}`);
    }
  }
}

/**
 * Recovery environment this server has no use for (a DMA's own switches, another vendor's
 * options): said once per job in a LOG_MESSAGE, so an admin who expected one to act sees it
 * did not. Known: what any butype advertises, and what backups return and DMAs send back.
 */
function unknownRecoveryEnv(env: Env): string[] {
  return [...env.map().keys()].filter((k) => !KNOWN_ENV.has(k));
}

/** What any butype advertises, and every variable the man page documents (ours, aliases, returned ones). */
const KNOWN_ENV = new Set([...BUTYPES.flatMap((b) => b.defaultEnv.map(([k]) => k)), ...NDMP_ENV.flatMap((o) => o.flags.split(/[ ,|]+/))]);

/**
 * Bounds on a job's input, each refused with a clear ILLEGAL_ARGS_ERR before the job starts
 * (the XDR layer already bounds every array by the record's size, max_message_size).
 */
export const INPUT_LIMITS = {
  envPairs: 1024,
  envName: 256,
  envValue: 1024 * 1024,
  envTotal: 4 * 1024 * 1024,
  /** PATH_MAX: no path on Linux is longer. */
  path: 4096,
};

function illegal(why: string): NdmpError {
  return new NdmpError(ErrorCode.ILLEGAL_ARGS_ERR, why);
}

function checkEnv(pairs: Pval[]): void {
  const l = INPUT_LIMITS;
  if (pairs.length > l.envPairs) throw illegal(`${pairs.length} environment variables (at most ${l.envPairs})`);
  let total = 0;
  for (const p of pairs) {
    const name = toBuffer(p.name);
    const value = toBuffer(p.value);
    if (name.length > l.envName) throw illegal(`an environment variable name of ${name.length} bytes (at most ${l.envName})`);
    if (value.length > l.envValue) throw illegal(`${name.toString("latin1")}: a value of ${value.length} bytes (at most ${l.envValue})`);
    total += name.length + value.length;
  }
  if (total > l.envTotal) throw illegal(`an environment of ${total} bytes (at most ${l.envTotal})`);
}

function checkNlist(nlist: Nlist, max: number): void {
  if (nlist.length > max) throw illegal(`an nlist of ${nlist.length} entries (at most ${max}: limits.max_nlist)`);
  const path = INPUT_LIMITS.path;
  const fields = [
    [ORIGINAL_PATH, "original_path"],
    [DESTINATION_PATH, "destination_path"],
    [NAME, "name"],
  ] as const;
  for (let i = 0; i < nlist.length; i++) {
    for (const [f, field] of fields) {
      const size = nlist.size(i, f);
      if (size > path) throw illegal(`an nlist ${field} of ${size} bytes (at most ${path})`);
      if (nlist.hasNul(i, f)) throw illegal(`an nlist ${field} with a NUL byte`);
    }
  }
}

/** The destinations of the first `n` targets: what the audit line and a refusal name. */
function firstDestinations(targets: Targets, n: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < targets.length && i < n; i++) out.push(targets.destination(i)!);
  return out;
}

/** Errors of a data connection that failed (as opposed to a job that did). */
const CONNECTION_ERRORS = new Set(["ERR_STREAM_PREMATURE_CLOSE", "ECONNRESET", "EPIPE", "ETIMEDOUT", "ECONNABORTED"]);

/** The spec's name of a code in one of the enums of codes.ts. */
function nameOf(e: Record<string, number>, v: number): string {
  return Object.entries(e).find(([, x]) => x === v)?.[0] ?? String(v);
}

function peerAddr(address: string | undefined, port: number | undefined): Addr {
  const ip = ipv4Of(address);
  return ip && port ? { addr_type: AddrType.TCP, tcp_addr: [tcpAddr(ip, port)] } : { addr_type: AddrType.TCP, tcp_addr: [] };
}
