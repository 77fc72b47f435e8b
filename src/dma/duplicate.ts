/**
 * Tape duplication: tape files of one cartridge reproduced on another drive, mover to mover,
 * the data never passing through us. For each tape file the destination's mover (mode READ:
 * data connection -> tape) and the source's mover (mode WRITE: tape -> data connection) are
 * joined by one data connection (MOVER_LISTEN on one side, MOVER_CONNECT on the other; TCP
 * between two servers, IPC between two sessions of one server); MOVER_READ(0, max) on the
 * source streams the file until its filemark (pause EOF), MOVER_CLOSE ends the stream, the
 * destination writes its last record and halts, and we write the filemark.
 *
 * Records keep their size: both movers use the source file's record size (the label's for our
 * images, else the length of the file's first record), and an image the mover wrote is whole
 * records. Our label files are copied by TAPE_READ/TAPE_WRITE with a new media id per
 * destination cartridge (the backup numbers are the positions on that cartridge, as the layout
 * requires; on the first cartridge of a whole-cartridge copy they are the source's).
 *
 * A destination cartridge that fills up (the destination mover pauses EOM) gets no partial
 * backup: what was written of it is cut off (a filemark where it started), the next cartridge
 * is loaded, and the backup (label and image, or the raw tape file) is copied again there.
 */
import { randomUUID } from "node:crypto";
import type { Catalog } from "../catalog/catalog.ts";
import type { NdmpClient } from "../client/client.ts";
import { AddrType, ALL1, MoverHaltReason, MoverMode, MoverPauseReason, MoverState, Message, TapeMtioOp, TapeOpenMode } from "../protocol/codes.ts";
import { VERSION } from "../version.ts";
import { encodeLabel, imageFile, labelFile, type TapeLabel } from "./label.ts";
import type { Progress } from "./progress.ts";
import { cutAt, mtio, readRecord, scanTape, toFile } from "./tape.ts";
import { PostPair } from "./post-pair.ts";
import { JobError } from "./target.ts";

/** The largest record our mover (and the virtual drive) takes. */
const MAX_RECORD = 4 * 1024 * 1024;
const POLL_MS = 250;
/**
 * After the source has sent its whole file, how long the destination may take no data before
 * the job gives up (a peer mover that accepted a record size it cannot fill stays ACTIVE).
 */
const STALL_MS = 20_000;

export interface DriveEnd {
  client: NdmpClient;
  device: string;
  /** "host:port/device", for messages and the catalog's drive column. */
  name: string;
}

export interface DuplicateOptions {
  /** Tape files of the source to copy (inclusive); default all. On our cartridges, whole backups. */
  files?: { first: number; last?: number };
  /** The side whose mover listens (the other connects): the destination by default. */
  listen: "src" | "dst";
  /** Both drives on one server: IPC between the two sessions instead of TCP. */
  sameServer: boolean;
  /** Write over a destination cartridge that is not blank. */
  overwrite?: boolean;
  /**
   * Loads the destination's next cartridge (the drive is closed meanwhile) and returns its volume
   * tag; undefined when there is none (a full cartridge then fails the job).
   */
  nextCartridge?: () => Promise<string>;
  /** The first destination cartridge's volume tag ("" when unknown). */
  barcode?: string;
  catalog?: Catalog;
  progress: Progress;
}

export interface DuplicatedFile {
  /** Tape file number on the source. */
  from: number;
  /** Destination cartridge (index into cartridges) and tape file number there. */
  cartridge: number;
  to: number;
  bytes: number;
  records: number;
  recordSize: number;
}

export interface DuplicateResult {
  ok: boolean;
  files: DuplicatedFile[];
  /** The destination cartridges written, in order: their media id (our labels) and volume tag. */
  cartridges: Array<{ mediaId?: string; barcode: string }>;
  bytes: number;
  errors: string[];
}

/** One unit copied whole onto one cartridge: a backup (label + image) or a raw tape file. */
interface Unit {
  label?: TapeLabel;
  /** Source tape files, in order. */
  files: number[];
}

export async function duplicateJob(src: DriveEnd, dst: DriveEnd, o: DuplicateOptions): Promise<DuplicateResult> {
  const result: DuplicateResult = { ok: false, files: [], cartridges: [], bytes: 0, errors: [] };
  await open(src, TapeOpenMode.READ);
  try {
    await open(dst, TapeOpenMode.RDWR);
    try {
      const units = await plan(src.client, o.files);
      if (units.length === 0) throw new JobError(`nothing to copy: the cartridge in ${src.name} has no tape file${o.files ? ` in ${o.files.first}-${o.files.last ?? "end"}` : ""}`);
      o.progress.start({ from: src.name, to: dst.name, tapeFiles: units.flatMap((u) => u.files).join(","), connection: o.sameServer ? "IPC" : `TCP (${o.listen === "src" ? "source" : "destination"} listens)` });
      let cart = await startCartridge(dst, o, o.barcode ?? "", result);
      let pos = 0; // next tape file on the destination cartridge
      let fresh = true; // nothing written on this cartridge yet
      for (const unit of units) {
        for (;;) {
          const r = await copyUnit(src, dst, unit, pos, cart, o, result);
          if (r === "done") {
            pos += unit.files.length;
            fresh = false;
            break;
          }
          // The destination is full: cut the unit off, and start it again on the next cartridge.
          if (fresh) throw new JobError(`tape file ${unit.files[0]} does not fit on an empty cartridge in ${dst.name}`);
          if (!o.nextCartridge) throw new JobError(`the cartridge in ${dst.name} is full after ${pos} tape files; give more destination slots (--slot) to go on`);
          o.progress.note(`the cartridge in ${dst.name} is full after ${pos} tape files: loading the next one`);
          await cutAt(dst.client, pos);
          await dst.client.request(Message.TAPE_CLOSE, {}, { allowBodyError: true });
          const barcode = await o.nextCartridge();
          await open(dst, TapeOpenMode.RDWR);
          cart = await startCartridge(dst, o, barcode, result);
          pos = 0;
          fresh = true;
        }
      }
      result.ok = result.errors.length === 0;
      o.progress.end(result.ok, {
        files: result.files.length,
        bytes: result.bytes,
        cartridges: result.cartridges.length,
        mediaIds: result.cartridges.map((c) => c.mediaId ?? "-").join(","),
      });
      return result;
    } finally {
      await dst.client.request(Message.TAPE_CLOSE, {}, { allowBodyError: true }).catch(() => {});
    }
  } finally {
    await src.client.request(Message.TAPE_CLOSE, {}, { allowBodyError: true }).catch(() => {});
  }
}

async function open(d: DriveEnd, mode: number): Promise<void> {
  try {
    await d.client.request(Message.TAPE_OPEN, { device: d.device, mode });
  } catch (e) {
    throw new JobError(`${d.name}: ${(e as Error).message}`);
  }
}

/** What to copy: whole backups on our cartridges, else each tape file up to the end of data. */
async function plan(c: NdmpClient, files: DuplicateOptions["files"]): Promise<Unit[]> {
  const scan = await scanTape(c);
  if (scan.labels.length > 0 && scan.foreign === undefined) {
    const first = files?.first ?? 0;
    const last = files?.last ?? imageFile(scan.labels.length);
    if (first % 2 !== 0 || last % 2 !== 1) throw new JobError(`--files ${first}-${last}: on an ndmpd cartridge, copy whole backups (from a label file, even, to an image file, odd)`);
    if (last > imageFile(scan.labels.length)) throw new JobError(`the cartridge holds tape files 0-${imageFile(scan.labels.length)}`);
    return scan.labels.filter((l) => labelFile(l.seq) >= first && imageFile(l.seq) <= last).map((l) => ({ label: l, files: [labelFile(l.seq), imageFile(l.seq)] }));
  }
  const units: Unit[] = [];
  for (let n = files?.first ?? 0; files?.last === undefined || n <= files.last; n++) {
    // A file that starts with a filemark (or the end of data) ends the written part.
    try {
      await toFile(c, n);
    } catch {
      break;
    }
    const rec = await readRecord(c, MAX_RECORD);
    if (rec === undefined) break;
    units.push({ files: [n] });
  }
  return units;
}

/** A destination cartridge about to be written from its start: blank (or --overwrite), a new media id. */
async function startCartridge(dst: DriveEnd, o: DuplicateOptions, barcode: string, result: DuplicateResult): Promise<number> {
  await mtio(dst.client, TapeMtioOp.REW);
  const first = await readRecord(dst.client);
  if (first !== undefined && !o.overwrite) throw new JobError(`the cartridge in ${dst.name} is not blank; give --overwrite to write over it`);
  if (first !== undefined) {
    const old = (await scanTape(dst.client, { firstOnly: true }).catch(() => undefined))?.labels[0]?.mediaId;
    if (old) o.catalog?.dropJobsFrom(old, 1);
  }
  await mtio(dst.client, TapeMtioOp.REW);
  result.cartridges.push({ barcode });
  return result.cartridges.length - 1;
}

/** Copies one unit at tape file `pos` of the destination; "eom" when the cartridge filled up. */
async function copyUnit(src: DriveEnd, dst: DriveEnd, unit: Unit, pos: number, cart: number, o: DuplicateOptions, result: DuplicateResult): Promise<"done" | "eom"> {
  const copied: DuplicatedFile[] = [];
  let at = pos;
  let label: TapeLabel | undefined;
  for (const file of unit.files) {
    await toFile(src.client, file);
    await toFile(dst.client, at);
    if (unit.label && file === labelFile(unit.label.seq)) {
      const c = result.cartridges[cart]!;
      c.mediaId ??= randomUUID();
      const seq = at / 2 + 1;
      label = { ...unit.label, mediaId: c.mediaId, seq, copyOf: `${unit.label.mediaId}#${unit.label.seq}`, writer: `ndmpd ${VERSION}` };
      const w = await dst.client.request(Message.TAPE_WRITE, { data_out: encodeLabel(label) }, { allowBodyError: true });
      if (w.body.error !== 0) return "eom";
      await mtio(dst.client, TapeMtioOp.EOF);
      copied.push({ from: file, cartridge: cart, to: at, bytes: encodeLabel(label).length, records: 1, recordSize: encodeLabel(label).length });
    } else {
      const rs = unit.label?.recordSize ?? (await firstRecordSize(src.client, file));
      await toFile(src.client, file);
      o.progress.note(`tape file ${file} -> cartridge ${cart + 1} file ${at} (records of ${rs} bytes)`);
      const r = await moveFile(src, dst, rs, o, result.bytes, result.files.length + copied.length);
      if (r.eom) return "eom";
      await mtio(dst.client, TapeMtioOp.EOF);
      result.bytes += r.bytes;
      copied.push({ from: file, cartridge: cart, to: at, bytes: r.bytes, records: Math.ceil(r.bytes / rs), recordSize: rs });
    }
    at++;
  }
  result.files.push(...copied);
  if (label && unit.label) learn(o, dst, unit.label, label, result.cartridges[cart]!.barcode, copied.at(-1)!.bytes);
  return "done";
}

async function firstRecordSize(c: NdmpClient, file: number): Promise<number> {
  await toFile(c, file);
  const rec = await readRecord(c, MAX_RECORD);
  if (!rec) throw new JobError(`tape file ${file} is empty`);
  return rec.length;
}

/** The catalog learns the copy: the same backup, on another cartridge (its rows, when the original is known). */
function learn(o: DuplicateOptions, dst: DriveEnd, orig: TapeLabel, copy: TapeLabel, barcode: string, bytes: number): void {
  const cat = o.catalog;
  if (!cat) return;
  const known = cat.job(orig.mediaId, orig.seq);
  cat.upsertMedia({ mediaId: copy.mediaId, drive: dst.name, barcode, created: new Date().toISOString() });
  cat.dropJobsFrom(copy.mediaId, copy.seq);
  cat.addJob(
    {
      mediaId: copy.mediaId,
      seq: copy.seq,
      labelFile: labelFile(copy.seq),
      imageFile: imageFile(copy.seq),
      label: copy.label,
      date: copy.date,
      format: copy.format,
      host: copy.host,
      root: copy.root,
      level: copy.level,
      recordSize: copy.recordSize,
      env: known?.env ?? copy.env,
      bytes: known?.bytes ?? bytes,
      entries: known?.entries ?? 0,
    },
    known ? cat.files(known.jobId) : [],
  );
}

/** One tape file, source mover to destination mover. */
async function moveFile(src: DriveEnd, dst: DriveEnd, rs: number, o: DuplicateOptions, before: number, filesDone: number): Promise<{ bytes: number; eom: boolean }> {
  const posts = new PostPair({ src: src.client, dst: dst.client }, (side) => (side === "src" ? src.name : dst.name));
  const queue = posts.queue;
  const both = [src.client, dst.client];
  try {
    for (const c of both) {
      await c.request(Message.MOVER_SET_RECORD_SIZE, { len: rs });
      await c.request(Message.MOVER_SET_WINDOW, { offset: 0n, length: ALL1 });
    }
    const addrType = o.sameServer ? AddrType.IPC : AddrType.TCP;
    if (o.listen === "dst") {
      const l = await dst.client.request(Message.MOVER_LISTEN, { mode: MoverMode.READ, addr_type: addrType });
      await src.client.request(Message.MOVER_CONNECT, { mode: MoverMode.WRITE, addr: l.body.connect_addr });
    } else {
      const l = await src.client.request(Message.MOVER_LISTEN, { mode: MoverMode.WRITE, addr_type: addrType });
      await dst.client.request(Message.MOVER_CONNECT, { mode: MoverMode.READ, addr: l.body.connect_addr });
    }
    // The destination may still be in LISTEN for a moment after the source connected: MOVER_READ is the source's.
    await waitActive(src.client);
    await src.client.request(Message.MOVER_READ, { offset: 0n, length: ALL1 });

    let eom = false;
    let dstHalt: number | undefined;
    let srcHalted = false;
    let lastPoll = 0;
    let moved = -1;
    let movedAt = Date.now();
    while (dstHalt === undefined) {
      await posts.settle(POLL_MS);
      if (Date.now() - lastPoll >= POLL_MS) {
        lastPoll = Date.now();
        const mv = (await dst.client.request(Message.MOVER_GET_STATE)).body;
        o.progress.update(before + Number(mv.bytes_moved), filesDone);
        if (Number(mv.bytes_moved) !== moved) {
          moved = Number(mv.bytes_moved);
          movedAt = lastPoll;
        } else if (srcHalted && mv.state === MoverState.ACTIVE && lastPoll - movedAt > STALL_MS) {
          for (const c of both) await c.request(Message.MOVER_ABORT, {}, { allowBodyError: true });
          throw new JobError(`the destination mover took no data for ${STALL_MS / 1000} s after the source sent the whole tape file (${moved} bytes written; can it write records of ${rs} bytes?)`);
        }
      }
      while (queue.length > 0) {
        const { from, p } = queue.shift()!;
        if (p.code === Message.NOTIFY_MOVER_PAUSED) {
          const reason = p.body.reason as number;
          if (from === "src" && (reason === MoverPauseReason.EOF || reason === MoverPauseReason.EOM)) {
            // The end of the source file (or of its data): closing ends the stream.
            await src.client.request(Message.MOVER_CLOSE, {}, { allowBodyError: true });
          } else if (from === "dst" && (reason === MoverPauseReason.EOM || reason === MoverPauseReason.EOW)) {
            eom = true;
            for (const c of both) await c.request(Message.MOVER_ABORT, {}, { allowBodyError: true });
          } else {
            for (const c of both) await c.request(Message.MOVER_ABORT, {}, { allowBodyError: true });
            throw new JobError(`the ${from === "src" ? "source" : "destination"} mover paused (reason ${pauseName(reason)})`);
          }
        } else if (p.code === Message.NOTIFY_MOVER_HALTED) {
          const reason = p.body.reason as number;
          if (from === "dst") {
            dstHalt = reason;
          } else {
            srcHalted = true;
            // The source failed (media error, aborted): the destination's file is not a copy.
            if (reason !== MoverHaltReason.CONNECT_CLOSED && !eom) await dst.client.request(Message.MOVER_ABORT, {}, { allowBodyError: true });
          }
        }
      }
    }
    const bytes = Number((await dst.client.request(Message.MOVER_GET_STATE)).body.bytes_moved);
    for (const c of both) await stop(c);
    if (eom) return { bytes, eom };
    if (dstHalt !== MoverHaltReason.CONNECT_CLOSED) throw new JobError(`the destination mover halted (${haltName(dstHalt)})`);
    return { bytes, eom: false };
  } catch (e) {
    for (const c of both) {
      await c.request(Message.MOVER_ABORT, {}, { allowBodyError: true }).catch(() => {});
      await stop(c).catch(() => {});
    }
    // A request cut off by a lost connection says only "connection closed": say which one.
    throw posts.lost && !(e instanceof JobError) ? new JobError(posts.lost) : e;
  } finally {
    posts.close();
  }
}

async function waitActive(c: NdmpClient): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const st = (await c.request(Message.MOVER_GET_STATE)).body.state as number;
    if (st !== MoverState.LISTEN) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new JobError("the source mover was not connected");
}

/** Waits for a mover to halt (closing a paused one) and stops it. */
async function stop(c: NdmpClient): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const st = (await c.request(Message.MOVER_GET_STATE)).body.state as number;
    if (st === MoverState.IDLE) return;
    if (st === MoverState.HALTED) {
      await c.request(Message.MOVER_STOP);
      return;
    }
    if (st === MoverState.PAUSED) await c.request(Message.MOVER_CLOSE, {}, { allowBodyError: true });
    if (Date.now() - t0 > 10_000) await c.request(Message.MOVER_ABORT, {}, { allowBodyError: true });
    if (Date.now() - t0 > 20_000) throw new JobError("a mover did not halt");
    await new Promise((r) => setTimeout(r, 20));
  }
}

const pauseName = (v: number) => Object.entries(MoverPauseReason).find(([, x]) => x === v)?.[0] ?? String(v);
const haltName = (v: number | undefined) => Object.entries(MoverHaltReason).find(([, x]) => x === v)?.[0] ?? String(v);
