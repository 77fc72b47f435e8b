/**
 * ndmpd as a small DMA: backup, recovery, listing and catalog rebuild, driven over NDMP with our
 * client. The same code runs the CLI's local jobs (an in-process server reached over loopback,
 * LOCAL data connection: exactly the path a DMA takes) and remote jobs (a data agent and a tape
 * agent elsewhere, joined by a TCP data connection: MOVER_LISTEN on the tape side, DATA_CONNECT
 * on the data side).
 *
 * Tape layout: see label.ts (label file, then image file, per backup).
 */
import { randomUUID } from "node:crypto";
import type { Catalog, FileRow, JobRow } from "../catalog/catalog.ts";
import type { NdmpClient, Post } from "../client/client.ts";
import {
  AddrType,
  ALL1,
  DataHaltReason,
  DataState,
  LogType,
  Message,
  MoverMode,
  MoverPauseReason,
  MoverState,
  RecoveryStatus,
  TapeMtioOp,
  TapeOpenMode,
} from "../protocol/codes.ts";
import { toBuffer } from "../protocol/xdr/codec.ts";
import { VERSION } from "../version.ts";
import { HistoryCollector } from "./history.ts";
import { encodeLabel, imageFile, labelFile, type TapeLabel } from "./label.ts";
import type { Progress } from "./progress.ts";
import { cutAt, mtio, scanTape, toFile, withTape } from "./tape.ts";
import { BackupSpan, loadPart, recordFound, SpanFinder, spanRecovery, toFirstPart, withSpanFinder } from "./span.ts";
import { JobError, type JobTarget } from "./target.ts";

// Split out of this file; still importable from here.
export { DEFAULT_RECORD_SIZE, JobError, type JobTarget } from "./target.ts";
export { scanTape, type TapeScan } from "./tape.ts";
export { HistoryCollector } from "./history.ts";

const isLocal = (t: JobTarget) => t.data === t.tape;

// ---------------------------------------------------------------------------------------------
// One data transfer between the data service and the mover

interface TransferOptions {
  mode: "backup" | "recover" | "filehist";
  recordSize: number;
  /** Sends DATA_START_*: called once both sides are connected. */
  start: () => Promise<void>;
  progress?: Progress;
  /** Expected total bytes (ETA), possibly known only later. */
  total?: () => number | undefined;
  history?: HistoryCollector;
  /** Recovery: the image offset the first byte of the tape file in the drive has (a later part of a span). */
  windowOffset?: bigint;
  /**
   * Backup: the cartridge is full (the mover paused EOM or EOW at image offset `at`): puts the
   * next cartridge in the drive, positioned where the rest of the image goes (span.ts); false
   * when there is none, with `why` set.
   */
  onFull?: (at: bigint) => Promise<{ ok: true } | { ok: false; why: string }>;
}

export interface TransferResult {
  ok: boolean;
  haltReason: number;
  bytes: number;
  /** Text of every LOG_MESSAGE, in order. */
  logs: string[];
  errors: string[];
  /** LOG_FILE reports: name -> recovery status. */
  files: Map<string, number>;
  /** DATA_GET_ENV after a backup. */
  env: Array<[string, string]>;
  /** The data service's "recovery done: …" report, parsed. */
  recovery?: { entries: number; restored: number; bytes: number; directReads: number };
}

const POLL_MS = 250;
/** Rows of file history from which a backup collects its garbage before the catalog phase. */
const FULL_GC_ROWS = 100_000;

async function transfer(t: JobTarget, o: TransferOptions): Promise<TransferResult> {
  const { data, tape } = t;
  const moverMode = o.mode === "backup" ? MoverMode.READ : MoverMode.WRITE;
  const result: TransferResult = { ok: false, haltReason: 0, bytes: 0, logs: [], errors: [], files: new Map(), env: [] };

  // Posts from both agents go into one queue, handled in order by this loop.
  const queue: Post[] = [];
  let wake: (() => void) | undefined;
  let lost: Error | undefined;
  const onPost = (p: Post) => {
    queue.push(p);
    wake?.();
  };
  const onClosed = (e: Error) => {
    lost = e;
    wake?.();
  };
  const agents = isLocal(t) ? [data] : [data, tape];
  for (const a of agents) {
    a.on("post", onPost);
    a.on("closed", onClosed);
  }
  // In process: the history reaches the collector as objects, in the order it was posted.
  const tapped = t.tapFileHistory !== undefined && o.history !== undefined;
  if (tapped) t.tapFileHistory!((code, body) => o.history!.add({ code, body }));
  try {
    await tape.request(Message.MOVER_SET_RECORD_SIZE, { len: o.recordSize });
    await tape.request(Message.MOVER_SET_WINDOW, { offset: o.windowOffset ?? 0n, length: ALL1 });
    if (isLocal(t)) {
      await tape.request(Message.MOVER_LISTEN, { mode: moverMode, addr_type: AddrType.LOCAL });
      await data.request(Message.DATA_CONNECT, { addr: { addr_type: AddrType.LOCAL } });
    } else {
      const l = await tape.request(Message.MOVER_LISTEN, { mode: moverMode, addr_type: AddrType.TCP });
      await data.request(Message.DATA_CONNECT, { addr: l.body.connect_addr });
    }
    try {
      await o.start();
    } catch (e) {
      // A refused start comes with the data service's LOG_MESSAGE saying why (a missing base level, ...).
      const why = queue.filter((p) => p.code === Message.LOG_MESSAGE && p.body.log_type === LogType.ERROR).map((p) => Buffer.from(p.body.entry).toString("utf8"));
      if (why.length > 0) throw new JobError(`${(e as Error).message}: ${why.join("; ")}`);
      throw e;
    }

    let halted: Post | undefined;
    let lastPoll = 0;
    /** A recovery over a span: where the cartridge in the drive starts in the image. */
    let spanAt = o.windowOffset ?? 0n;
    let nextSpanAt = 0n;
    /**
     * At a pause in a recovery: when the data service still wants bytes (a mover pauses only
     * once it has consumed what was read) and the span has another cartridge, loads it; the
     * image file on this cartridge ended after TAPE_GET_STATE's block number of records.
     */
    const nextCartridge = async (target: JobTarget, recordSize: number, at: bigint): Promise<boolean> => {
      if (!target.nextCartridge) return false;
      const ds = (await data.request(Message.DATA_GET_STATE)).body;
      if (ds.state !== DataState.ACTIVE) return false;
      const ts = (await tape.request(Message.TAPE_GET_STATE)).body;
      nextSpanAt = at + BigInt(ts.blockno) * BigInt(recordSize);
      const next = await target.nextCartridge();
      // A span the catalog knows says where each part starts (no need to count records).
      if (typeof next === "object") nextSpanAt = next.at;
      return next !== false;
    };
    while (!halted) {
      if (queue.length === 0) {
        if (lost) throw new JobError(`lost the connection to an agent: ${lost.message}`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, POLL_MS);
        });
        wake = undefined;
      }
      // The clients keep every post for waitForPost(); a job handles its own, so let them go.
      for (const a of agents) a.posts.length = 0;
      const now = Date.now();
      if (o.progress && now - lastPoll >= POLL_MS) {
        lastPoll = now;
        // The data service may count whole files only; the mover counts every record: show
        // whichever is further along.
        const st = (await data.request(Message.DATA_GET_STATE)).body;
        const mv = (await tape.request(Message.MOVER_GET_STATE)).body;
        result.bytes = Math.max(Number(st.bytes_processed), Number(mv.bytes_moved ?? 0));
        o.progress.update(result.bytes, o.history?.count ?? 0, o.total?.());
      }
      while (queue.length > 0 && !halted) {
        const p = queue.shift()!;
        switch (p.code) {
          case Message.FH_ADD_FILE:
          case Message.FH_ADD_DIR:
          case Message.FH_ADD_NODE:
            o.history?.add(p);
            break;
          case Message.LOG_MESSAGE: {
            const text = toBuffer(p.body.entry).toString("utf8");
            result.logs.push(text);
            if (p.body.log_type === LogType.ERROR) result.errors.push(text);
            if (p.body.log_type === LogType.ERROR || p.body.log_type === LogType.WARNING) {
              o.progress?.note(`${p.body.log_type === LogType.ERROR ? "error" : "warning"}: ${text}`);
            }
            const m = /^recovery done: (\d+) entries read, (\d+) restored, (\d+) bytes(?:, (\d+) direct reads)?/.exec(text);
            if (m) result.recovery = { entries: +m[1]!, restored: +m[2]!, bytes: +m[3]!, directReads: Number(m[4] ?? 0) };
            break;
          }
          case Message.LOG_FILE:
            result.files.set(toBuffer(p.body.name).toString("utf8"), p.body.recovery_status);
            break;
          case Message.NOTIFY_DATA_READ:
            // Only with a TCP data connection: our data service reads LOCAL from its own mover.
            await tape.request(Message.MOVER_READ, { offset: p.body.offset, length: p.body.length });
            break;
          case Message.NOTIFY_MOVER_PAUSED: {
            const reason = p.body.reason as number;
            if (o.mode !== "backup" && (reason === MoverPauseReason.EOF || reason === MoverPauseReason.EOM) && (await nextCartridge(t, o.recordSize, spanAt))) {
              // The image goes on on the next cartridge of the span: its bytes start where this
              // one's ended, and the mover reads on from there (or seeks, for direct access).
              spanAt = nextSpanAt;
              await tape.request(Message.MOVER_SET_WINDOW, { offset: spanAt, length: ALL1 });
              await tape.request(Message.MOVER_CONTINUE);
              o.progress?.note(`next cartridge${t.barcode ? ` ${t.barcode}` : ""}: the image goes on at byte ${spanAt}`);
            } else if (o.mode === "backup" && (reason === MoverPauseReason.EOM || reason === MoverPauseReason.EOW) && o.onFull) {
              await continueOnNext(data, tape, o, BigInt(p.body.seek_position ?? 0n), result);
            } else if (o.mode !== "backup" && reason === MoverPauseReason.EOF) {
              // The end of the image: closing tells the data service its stream is over. The mover
              // may have halted meanwhile (the data service finished and closed): no matter.
              await tape.request(Message.MOVER_CLOSE, {}, { allowBodyError: true });
            } else {
              const why = reason === MoverPauseReason.EOM || reason === MoverPauseReason.EOW ? "the cartridge is full (a backup must fit on one cartridge)" : `the mover paused (reason ${reason})`;
              result.errors.push(why);
              o.progress?.note(`error: ${why}`);
              await data.request(Message.DATA_ABORT, {}, { allowBodyError: true });
              await tape.request(Message.MOVER_ABORT, {}, { allowBodyError: true });
            }
            break;
          }
          case Message.NOTIFY_MOVER_HALTED:
            break; // the data side's halt ends the job; the mover is stopped below
          case Message.NOTIFY_DATA_HALTED:
            halted = p;
            break;
        }
      }
    }
    result.haltReason = halted.body.reason;
    result.ok = result.haltReason === DataHaltReason.SUCCESSFUL && result.errors.length === 0;
    // What was posted before the halt is all there is (the data service flushes FH first).
    const st = (await data.request(Message.DATA_GET_STATE)).body;
    result.bytes = Number(st.bytes_processed);
    if (o.mode === "backup") {
      const env = (await data.request(Message.DATA_GET_ENV, {}, { allowBodyError: true })).body.env ?? [];
      result.env = env.map((p: any) => [toBuffer(p.name).toString("utf8"), toBuffer(p.value).toString("utf8")]);
    }
    await data.request(Message.DATA_STOP);
    const mover = await stopMover(tape, o.mode);
    if (o.mode === "backup" && result.ok && (mover.aborted || mover.bytesMoved < result.bytes)) {
      // The data service sent the whole stream, but not all of it reached the tape: the backup
      // is not there to restore, whatever the data side says.
      const why = `the mover ${mover.aborted ? "did not halt by itself and was aborted" : "halted early"} after writing ${mover.bytesMoved} of ${result.bytes} bytes`;
      result.errors.push(why);
      result.ok = false;
      o.progress?.note(`error: ${why}`);
    }
    o.progress?.update(result.bytes, o.history?.count ?? 0, o.total?.());
    return result;
  } catch (e) {
    // Leave both agents idle for the next job (best effort: the connection may be gone).
    await data.request(Message.DATA_ABORT, {}, { allowBodyError: true }).catch(() => {});
    await data.request(Message.DATA_STOP, {}, { allowBodyError: true }).catch(() => {});
    await tape.request(Message.MOVER_ABORT, {}, { allowBodyError: true }).catch(() => {});
    await stopMover(tape, o.mode).catch(() => {});
    throw e;
  } finally {
    if (tapped) t.tapFileHistory!(undefined);
    for (const a of agents) {
      a.off("post", onPost);
      a.off("closed", onClosed);
    }
  }
}

/**
 * A backup at the end of its cartridge: the job's onFull puts the next one in the drive, then the
 * mover goes on where the image left off (the record that did not fit is written first); with no
 * next cartridge the job fails, saying why.
 */
async function continueOnNext(data: NdmpClient, tape: NdmpClient, o: TransferOptions, at: bigint, result: TransferResult): Promise<void> {
  const next = await o.onFull!(at);
  if (next.ok) {
    await tape.request(Message.MOVER_SET_WINDOW, { offset: at, length: ALL1 });
    await tape.request(Message.MOVER_CONTINUE);
    return;
  }
  const why = `the cartridge is full at byte ${at} of the image, and the backup cannot go on: ${next.why}`;
  result.errors.push(why);
  o.progress?.note(`error: ${why}`);
  await data.request(Message.DATA_ABORT, {}, { allowBodyError: true });
  await tape.request(Message.MOVER_ABORT, {}, { allowBodyError: true });
}

/**
 * Closes a paused mover, waits for it to halt, and stops it. After a backup the mover halts by
 * itself once it has written the last record; after a recovery it has nothing left to do, but a
 * mover that only notices the closed data connection on its next write (ndmjob's) stays ACTIVE:
 * it is aborted after a short grace period.
 */
async function stopMover(c: NdmpClient, mode: "backup" | "recover" | "filehist"): Promise<{ aborted: boolean; bytesMoved: number }> {
  const t0 = Date.now();
  const grace = mode === "backup" ? 60_000 : 1000;
  let aborted = false;
  for (;;) {
    const st = (await c.request(Message.MOVER_GET_STATE)).body;
    const bytesMoved = Number(st.bytes_moved ?? 0);
    if (st.state === MoverState.IDLE) return { aborted, bytesMoved };
    if (st.state === MoverState.HALTED) {
      await c.request(Message.MOVER_STOP);
      return { aborted, bytesMoved };
    }
    if (st.state === MoverState.PAUSED) await c.request(Message.MOVER_CLOSE, {}, { allowBodyError: true });
    else if (Date.now() - t0 > grace && !aborted) {
      aborted = true;
      await c.request(Message.MOVER_ABORT, {}, { allowBodyError: true });
    }
    if (Date.now() - t0 > grace + 10_000) throw new JobError("the mover did not halt");
    await new Promise((r) => setTimeout(r, 20));
  }
}

// ---------------------------------------------------------------------------------------------
// Jobs

export interface BackupOptions {
  path: string;
  format: string;
  excludes: string[];
  label?: string;
  level: number;
  recordSize: number;
  /** SNAPSHOT for the data service (y, n, auto, required); absent: the server's default. */
  snapshot?: string;
  catalog: Catalog;
  progress: Progress;
  /** Expected total bytes, when an estimate is (or becomes) available. */
  total?: () => number | undefined;
}

export interface BackupResult {
  ok: boolean;
  seq: number;
  mediaId: string;
  jobId?: number;
  bytes: number;
  entries: number;
  errors: string[];
}

export async function backupJob(t: JobTarget, o: BackupOptions): Promise<BackupResult> {
  return withTape(t, TapeOpenMode.RDWR, async () => {
    const scan = await scanTape(t.tape);
    if (scan.foreign !== undefined) {
      throw new JobError(`tape file ${scan.foreign} of the cartridge in ${t.device} is not an ndmpd label: it holds another program's data; use a blank cartridge`);
    }
    const seq = scan.labels.length + 1;
    const mediaId = scan.labels[0]?.mediaId ?? randomUUID();
    const date = new Date().toISOString();
    const env: Array<[string, string]> = [
      ["FILESYSTEM", o.path],
      ["TYPE", o.format],
      ["HIST", "y"],
      ["LEVEL", String(o.level)],
      ...o.excludes.map((p): [string, string] => ["EXCLUDE", p]),
    ];
    // Record this backup in dumpdates: the next one of a higher level is based on it.
    env.push(["UPDATE", "y"]);
    if (o.snapshot !== undefined) env.push(["SNAPSHOT", o.snapshot]);
    const label: TapeLabel = {
      mediaId,
      seq,
      label: o.label ?? `${o.format}-${date.slice(0, 19).replace(/[-:]/g, "").replace("T", "-")}`,
      date,
      format: o.format,
      host: t.host,
      root: o.path,
      level: o.level,
      recordSize: o.recordSize,
      env: [...env, ["RECORD_SIZE", String(o.recordSize)]],
      writer: `ndmpd ${VERSION}`,
    };
    await toFile(t.tape, scan.appendAt);
    await t.tape.request(Message.TAPE_WRITE, { data_out: encodeLabel(label) });
    await mtio(t.tape, TapeMtioOp.EOF);

    // A backup larger than the cartridge goes on on the library's next usable one (span.ts).
    const span = new BackupSpan(t, label, o.catalog, o.progress);
    await span.begin(scan.appendAt, scan.labels[0]?.date ?? date);
    o.progress.start({ path: o.path, tape: t.driveId, backup: seq, label: label.label, format: o.format });
    // The rows wait in a spill file until the catalog takes them: memory does not grow with the tree.
    const history = new HistoryCollector({ spill: true });
    let r: TransferResult;
    try {
      r = await transfer(t, {
        mode: "backup",
        recordSize: o.recordSize,
        history,
        progress: o.progress,
        total: o.total,
        onFull: (at) => span.onFull(at),
        start: async () => {
          await t.data.request(Message.DATA_START_BACKUP, { butype_name: o.format, env: env.map(([name, value]) => ({ name, value })) });
        },
      });
    } catch (e) {
      history.dispose();
      if (await span.undo().catch(() => false)) await cutAt(t.tape, scan.appendAt);
      throw e;
    }
    // Anything the catalog knew from this position on is gone from the tape now.
    o.catalog.dropJobsFrom(mediaId, seq);
    if (!r.ok) {
      history.dispose();
      const home = await span.undo().catch((e) => {
        o.progress.note(`warning: cutting the failed backup off its cartridges: ${(e as Error).message}`);
        return false;
      });
      if (home) await cutAt(t.tape, scan.appendAt);
      o.progress.end(false, { backup: seq, errors: r.errors.length });
      return { ok: false, seq, mediaId, bytes: r.bytes, entries: history.count, errors: r.errors };
    }
    let jobId: number;
    const rowCount = history.rowCount();
    // The catalog phase allocates a row and a path per entry; what the transfer left to collect
    // (frames, posts, encoder buffers) is still in the heap then, and Bun's collector, sizing its
    // next cycle by the heap it has, lets the two add up: a million tiny files peaked 25-45 MiB
    // above the transfer's own peak. One full collection first frees the transfer's part; it
    // costs a few tens of milliseconds, so only a tree big enough to matter pays it.
    if (rowCount >= FULL_GC_ROWS) (globalThis as { Bun?: { gc(full: boolean): void } }).Bun?.gc(true);
    try {
      await mtio(t.tape, TapeMtioOp.EOF);
      o.catalog.upsertMedia({ mediaId, drive: t.driveId, barcode: span.first.barcode, created: scan.labels[0]?.date ?? date });
      jobId = o.catalog.addJob(
        {
          mediaId,
          seq,
          labelFile: labelFile(seq),
          imageFile: imageFile(seq),
          label: label.label,
          date,
          format: o.format,
          host: t.host,
          root: o.path,
          level: o.level,
          recordSize: o.recordSize,
          env: r.env.length ? r.env : label.env,
          bytes: r.bytes,
          entries: rowCount,
        },
        history.each(),
      );
      span.record(jobId, r.bytes);
    } finally {
      history.dispose();
    }
    // What the data service did about a snapshot (btrfs:NAME, hook:NAME, none), when it says.
    const snapshot = r.env.find(([n]) => n === "SNAPSHOT")?.[1];
    const cartridges = span.spanned ? { cartridges: span.parts.map((p) => p.barcode || `slot ${p.slot}`).join(", ") } : {};
    o.progress.end(true, { backup: seq, label: label.label, tapeFiles: `${labelFile(seq)}-${imageFile(seq)}`, mediaId, ...cartridges, ...(snapshot ? { snapshot } : {}) });
    return { ok: true, seq, mediaId, jobId, bytes: r.bytes, entries: rowCount, errors: [] };
  });
}

/** An image with no ndmpd label (written by another DMA): where it is and how to read it. */
export interface RawImage {
  file: number;
  format: string;
  recordSize: number;
  /** Offsets of its paths (an ndmjob index, --index): the paths are then read by direct access. */
  offsets?: Map<string, bigint>;
}

export interface RecoverOptions {
  /** Backup number on the tape (default: the last one). */
  seq?: number;
  /** Instead of seq: the last backup made at or before this time (ms since the epoch). */
  before?: number;
  /** Restore an incremental as its chain (level 0 first, then each backup it builds on). */
  chain?: boolean;
  raw?: RawImage;
  to: string;
  /** Paths inside the backup (relative to its root; a leading / is accepted). Empty: everything. */
  paths: string[];
  catalog?: Catalog;
  progress: Progress;
}

export interface RecoverResult {
  ok: boolean;
  seq?: number;
  direct: boolean;
  bytesRead?: number;
  directReads?: number;
  restored?: number;
  failed: string[];
  errors: string[];
  /** The backups restored, in order, when it was a chain. */
  chain?: number[];
}

/** "/a/b", "a/b/", "./a" -> "/a/b" (the form the file history uses); "" and "/" -> "/". */
export function backupPath(p: string): string {
  const parts = p.split("/").filter((x) => x !== "" && x !== ".");
  if (parts.includes("..")) throw new JobError(`${p}: '..' is not a path inside a backup`);
  return "/" + parts.join("/");
}

/**
 * The backups an incremental builds on, oldest first, ending with `seq` itself (dump's rule,
 * which dumpdates follows): the base of a level N backup is the latest earlier backup of the
 * same host and path with a lower level. A level 0 is a chain of one.
 */
export function chainOf(labels: Array<Pick<TapeLabel, "seq" | "level" | "host" | "root"> & { part?: unknown }>, seq: number): number[] {
  const chain = [seq];
  let cur = labels.find((l) => l.seq === seq);
  while (cur && cur.level > 0) {
    const c = cur;
    // A later part of a spanning backup is not a backup of its own (its first part is elsewhere).
    const base = labels.filter((l) => l.seq < c.seq && !l.part && l.host === c.host && l.root === c.root && l.level < c.level).at(-1);
    if (!base) throw new JobError(`backup ${c.seq} is a level ${c.level} of ${c.host}:${c.root}; the backup it builds on (a lower level before it) is not on this cartridge`);
    chain.unshift(base.seq);
    cur = base;
  }
  return chain;
}

/** The base backup of each (undefined for a level 0, or when it is not on the cartridge). */
export function baseOf(labels: Array<Pick<TapeLabel, "seq" | "level" | "host" | "root"> & { part?: unknown }>, seq: number): number | undefined {
  try {
    const chain = chainOf(labels, seq);
    return chain.length > 1 ? chain[chain.length - 2] : undefined;
  } catch {
    return undefined;
  }
}

export async function recoverJob(t: JobTarget, o: RecoverOptions): Promise<RecoverResult> {
  if (o.raw) return recoverOne(t, o, undefined);
  return withTape(t, TapeOpenMode.READ, async () => {
    let scan = await scanTape(t.tape);
    if (scan.labels.length === 0) throw new JobError(`the cartridge in ${t.device} holds no ndmpd backup`);
    let seq = o.seq ?? scan.labels.length;
    if (o.before !== undefined) {
      const at = scan.labels.filter((l) => Date.parse(l.date) <= o.before!).at(-1);
      if (!at) throw new JobError(`no backup on the cartridge in ${t.device} was made at or before ${new Date(o.before).toISOString()}`);
      seq = at.seq;
    }
    if (!scan.labels[seq - 1]) throw new JobError(`the cartridge in ${t.device} holds backups 1-${scan.labels.length}; there is no backup ${seq}`);
    if (scan.labels[seq - 1]!.part) {
      // A later part of a backup that spans cartridges: it starts on another cartridge.
      const part = scan.labels[seq - 1]!;
      seq = await toFirstPart(t, o.catalog, part, seq);
      o.progress.note(`backup ${part.seq} on the cartridge in ${t.device} is part ${part.part!.number} of backup ${seq} (${part.label}): loaded its first cartridge ${t.barcode}`);
      scan = await scanTape(t.tape);
    }
    const chain = o.chain === false ? [seq] : chainOf(scan.labels, seq);
    if (chain.length === 1) return recoverOne(t, { ...o, seq }, scan);
    // Each image in order into one destination; a path is missing only if no image of the chain has it.
    const results: RecoverResult[] = [];
    for (const s of chain) {
      const r = await recoverOne(t, { ...o, seq: s }, scan, true);
      results.push(r);
      if (!r.ok && r.errors.length > 0) break;
    }
    const missing = o.paths.filter((p) => results.every((r) => r.failed.some((f) => f.startsWith(backupPath(p) + " "))));
    const ok = results.every((r) => r.errors.length === 0 && (r.ok || r.failed.every((f) => f.includes("NOT_FOUND")))) && missing.length === 0 && results.length === chain.length;
    return {
      ok,
      seq,
      direct: results.some((r) => r.direct),
      bytesRead: results.reduce((n, r) => n + (r.bytesRead ?? 0), 0),
      directReads: results.reduce((n, r) => n + (r.directReads ?? 0), 0),
      restored: results.reduce((n, r) => n + (r.restored ?? 0), 0),
      failed: missing.map((p) => `${backupPath(p)} (FAILED_NOT_FOUND in every backup of the chain ${chain.join(", ")})`),
      errors: results.flatMap((r) => r.errors),
      chain,
    };
  });
}

/** One image: the one of backup o.seq (scan given: the tape is open), or a raw image. */
async function recoverOne(t: JobTarget, o: RecoverOptions, scanned: Awaited<ReturnType<typeof scanTape>> | undefined, inChain = false): Promise<RecoverResult> {
  const body = async () => {
    let format: string;
    let recordSize: number;
    let image: number;
    let job: JobRow | undefined;
    let seq: number | undefined;
    let total: number | undefined;
    if (o.raw) {
      ({ format, recordSize, file: image } = o.raw);
    } else {
      const scan = scanned!;
      seq = o.seq!;
      const label = scan.labels[seq - 1];
      if (!label) throw new JobError(`the cartridge in ${t.device} holds backups 1-${scan.labels.length}; there is no backup ${seq}`);
      ({ format, recordSize } = label);
      image = imageFile(seq);
      job = o.catalog?.job(label.mediaId, seq);
      if (job && o.paths.length === 0) total = job.bytes;
    }

    // Direct access needs each path's offset, which only the catalog has.
    const nlist = o.paths.map((p) => {
      const path = backupPath(p);
      const entry = job ? o.catalog!.lookup(job.jobId, Buffer.from(path)) : undefined;
      const given = o.raw?.offsets?.get(Buffer.from(path).toString("latin1"));
      // In a chain, an incremental need not hold the path: the data service reports it not found.
      if (job && !entry && !inChain) throw new JobError(`${path} is not in backup ${seq} (see 'ndmpd list --file ${seq}')`);
      return {
        original_path: path,
        destination_path: path === "/" ? o.to : o.to.replace(/\/$/, "") + path,
        name: "",
        other_name: "",
        node: entry?.node != null ? BigInt(entry.node) : ALL1,
        fh_info: entry?.fhInfo != null ? BigInt(entry.fhInfo) : (given ?? ALL1),
      };
    });
    const direct = nlist.length > 0 && nlist.every((n) => n.fh_info !== ALL1);
    const env = [
      { name: "FILESYSTEM", value: o.to },
      { name: "TYPE", value: format },
      { name: "HIST", value: "n" },
      { name: "DIRECT", value: direct ? "y" : "n" },
      { name: "RECORD_SIZE", value: String(recordSize) },
    ];
    // An image over several cartridges (the catalog's span): start on the part holding the
    // first byte read, the next parts follow at the end of each.
    const parts = job ? o.catalog!.span(job.jobId) : [];
    const from = direct ? Math.min(...nlist.map((n) => Number(n.fh_info))) : 0;
    o.progress.start({ tape: t.driveId, backup: seq ?? `tape file ${image}`, to: o.to, paths: nlist.length || "all", direct: direct ? "yes" : "no", ...(parts.length > 1 ? { cartridges: parts.length } : {}) });
    const spanned = parts.length > 1 ? await spanRecovery(t, job!, parts, from, o.progress) : undefined;
    if (!spanned) await toFile(t.tape, image);
    let r: TransferResult;
    try {
      r = await transfer(t, {
        mode: "recover",
        recordSize,
        progress: o.progress,
        total: () => total,
        windowOffset: spanned?.windowOffset,
        start: async () => {
          await t.data.request(Message.DATA_START_RECOVER, { env, nlist, butype_name: format });
        },
      });
    } finally {
      spanned?.done();
    }
    // The next image of a chain is on the job's own cartridge.
    if (spanned && inChain) await loadPart(t, job!, parts[0]!);
    if (r.recovery) o.progress.update(r.bytes, r.recovery.restored, total);
    const failed = [...r.files].filter(([, s]) => s !== RecoveryStatus.SUCCESSFUL).map(([n, s]) => `${n} (${statusName(s)})`);
    const ok = r.ok && failed.length === 0;
    const res: RecoverResult = {
      ok,
      seq,
      direct,
      bytesRead: r.recovery?.bytes,
      directReads: r.recovery?.directReads,
      restored: r.recovery?.restored,
      failed,
      errors: r.errors,
    };
    o.progress.end(ok, {
      restored: res.restored ?? "?",
      bytesRead: res.bytesRead ?? "?",
      directReads: res.directReads ?? 0,
      direct,
      ...(failed.length ? { failed: failed.join("; ") } : {}),
    });
    return res;
  };
  return scanned || !o.raw ? body() : withTape(t, TapeOpenMode.READ, body);
}

function statusName(s: number): string {
  return Object.entries(RecoveryStatus).find(([, v]) => v === s)?.[0] ?? String(s);
}

/** Reads one backup's file history back from the tape (DATA_START_RECOVER_FILEHIST). */
async function readHistory(t: JobTarget, label: TapeLabel, seq: number, progress?: Progress): Promise<{ rows: FileRow[]; bytes: number }> {
  await toFile(t.tape, imageFile(seq));
  const history = new HistoryCollector();
  const r = await transfer(t, {
    mode: "filehist",
    recordSize: label.recordSize,
    history,
    progress,
    start: async () => {
      await t.data.request(Message.DATA_START_RECOVER_FILEHIST, {
        env: [
          { name: "FILESYSTEM", value: label.root },
          { name: "TYPE", value: label.format },
          { name: "HIST", value: "y" },
        ],
        nlist: [],
        butype_name: label.format,
      });
    },
  });
  if (!r.ok) throw new JobError(`reading the file history of backup ${seq} failed: ${r.errors.join("; ") || `halt reason ${r.haltReason}`}`);
  return { rows: history.rows(), bytes: r.recovery?.bytes ?? r.bytes };
}

export interface Listing {
  source: "catalog" | "tape";
  mediaId?: string;
  backups: Array<{
    seq: number;
    label: string;
    date: string;
    format: string;
    host: string;
    root: string;
    level: number;
    base?: number;
    bytes?: number;
    entries?: number;
    /** A backup that spans cartridges: each one in order (volume tag, slot, where its part starts). */
    span?: Array<{ part: number; barcode: string; slot: number; start: number; bytes: number }>;
    /** A later part of a spanning backup: which backup it belongs to ("mediaId#seq") and its number. */
    partOf?: { of: string; part: number };
  }>;
  /** With a backup number: its entries. */
  entries?: FileRow[];
}

export async function listJob(t: JobTarget, o: { seq?: number; catalog: Catalog }): Promise<Listing> {
  return withTape(t, TapeOpenMode.READ, async () => {
    // The first label says which cartridge this is; the catalog may know the rest.
    const first = await scanTape(t.tape, { firstOnly: true });
    const mediaId = first.labels[0]?.mediaId;
    if (!mediaId) {
      if (first.foreign !== undefined) throw new JobError(`the cartridge in ${t.device} was not written by ndmpd`);
      return { source: "tape", backups: [] };
    }
    const known = o.catalog.jobs(mediaId);
    // Later parts of spanning backups on this cartridge: their entries are their backup's.
    const parts = o.catalog.spansOn(mediaId);
    const wanted = o.seq === undefined ? undefined : (known.find((j) => j.seq === o.seq)?.jobId ?? parts.find((p) => p.part.seq === o.seq)?.jobId);
    if ((known.length > 0 || parts.length > 0) && (o.seq === undefined || wanted !== undefined)) {
      const listing: Listing = { source: "catalog", mediaId, backups: withSpans(o.catalog, mediaId, known.map((j) => ({ ...j, base: baseOf(known, j.seq) }))) };
      if (wanted !== undefined) listing.entries = o.catalog.files(wanted);
      return listing;
    }
    const scan = await scanTape(t.tape);
    const listing: Listing = {
      source: "tape",
      mediaId,
      backups: scan.labels.map(({ part, ...l }) => ({ ...l, base: part ? undefined : baseOf(scan.labels, l.seq), ...(part ? { partOf: { of: part.of, part: part.number } } : {}) })),
    };
    if (o.seq !== undefined) {
      const label = scan.labels[o.seq - 1];
      if (!label) throw new JobError(`the cartridge holds backups 1-${scan.labels.length}; there is no backup ${o.seq}`);
      if (label.part) throw new JobError(`backup ${o.seq} is part ${label.part.number} of backup ${label.part.of.split("#")[1]} of cartridge ${label.part.of.split("#")[0]}: list that one (its first cartridge)`);
      listing.entries = (await readHistory(t, label, o.seq)).rows.sort((a, b) => Buffer.compare(a.path, b.path));
    }
    return listing;
  });
}

/** The catalog's spans in a listing: each backup's cartridges, and the later parts this cartridge holds. */
function withSpans(catalog: Catalog, mediaId: string, backups: Listing["backups"]): Listing["backups"] {
  const out = backups.map((b) => {
    const job = catalog.job(mediaId, b.seq);
    const parts = job ? catalog.span(job.jobId) : [];
    return parts.length > 1 ? { ...b, span: parts.map(({ part, barcode, slot, start, bytes }) => ({ part, barcode, slot, start, bytes })) } : b;
  });
  for (const { jobId, part } of catalog.spansOn(mediaId)) {
    const first = catalog.span(jobId)[0];
    const job = first ? catalog.job(first.mediaId, first.seq) : undefined;
    if (!job || out.some((b) => b.seq === part.seq)) continue;
    out.push({ ...job, seq: part.seq, bytes: part.bytes, entries: undefined, partOf: { of: `${job.mediaId}#${job.seq}`, part: part.part } });
  }
  return out.sort((a, b) => a.seq - b.seq);
}

/** Reads every label and every backup's file history from the tape into the catalog. */
export async function rebuildJob(t: JobTarget, o: { catalog: Catalog; progress: Progress }): Promise<{ mediaId?: string; backups: number; entries: number }> {
  return withTape(t, TapeOpenMode.READ, async () => {
    const scan = await scanTape(t.tape);
    if (scan.labels.length === 0) {
      if (scan.foreign !== undefined) throw new JobError(`the cartridge in ${t.device} was not written by ndmpd`);
      return { backups: 0, entries: 0 };
    }
    const mediaId = scan.labels[0]!.mediaId;
    o.progress.start({ tape: t.driveId, backups: scan.labels.length, mediaId });
    o.catalog.dropJobsFrom(mediaId, 1);
    o.catalog.upsertMedia({ mediaId, drive: t.driveId, barcode: t.barcode, created: scan.labels[0]!.date });
    let entries = 0;
    for (const label of scan.labels) {
      if (label.part) {
        o.progress.note(`backup ${label.seq} is part ${label.part.number} of backup ${label.part.of.split("#")[1]} of cartridge ${label.part.of.split("#")[0]}: rebuilt with that cartridge`);
        continue;
      }
      // Its image may go on on other cartridges of the library: their part labels say so.
      const finder = new SpanFinder(t, { mediaId, seq: label.seq }, o.progress);
      const { rows, bytes } = await withSpanFinder(t, finder, () => readHistory(t, label, label.seq));
      entries += rows.length;
      const jobId = o.catalog.addJob(
        {
          mediaId,
          seq: label.seq,
          labelFile: labelFile(label.seq),
          imageFile: imageFile(label.seq),
          label: label.label,
          date: label.date,
          format: label.format,
          host: label.host,
          root: label.root,
          level: label.level,
          recordSize: label.recordSize,
          env: label.env,
          bytes,
          entries: rows.length,
        },
        rows,
      );
      recordFound(o.catalog, t, jobId, finder, bytes, label.date);
      o.progress.update(0, entries);
    }
    o.progress.end(true, { backups: scan.labels.length, entries });
    return { mediaId, backups: scan.labels.length, entries };
  });
}
