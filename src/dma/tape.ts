/**
 * Tape handling over NDMP for the CLI's jobs: MTIO, single records, positioning by tape file,
 * reading our labels, and holding a drive open for a job.
 */
import { NdmpClientError, type NdmpClient } from "../client/client.ts";
import { ErrorCode, Message, TapeMtioOp } from "../protocol/codes.ts";
import { toBuffer, type Bytes } from "../protocol/xdr/codec.ts";
import { decodeLabel, MAX_LABEL, type TapeLabel } from "./label.ts";
import { JobError, type JobTarget } from "./target.ts";


export async function mtio(c: NdmpClient, op: number, count = 1): Promise<number> {
  const r = await c.request(Message.TAPE_MTIO, { tape_op: op, count });
  return r.body.resid_count as number;
}

/** Reads one record; undefined at a filemark or the end of data (the position stays there). */
export async function readRecord(c: NdmpClient, max = MAX_LABEL): Promise<Buffer | undefined> {
  const r = await c.request(Message.TAPE_READ, { count: max }, { allowBodyError: true });
  const err = r.body.error as number;
  if (err === ErrorCode.EOF_ERR || err === ErrorCode.EOM_ERR) return undefined;
  if (err !== ErrorCode.NO_ERR) throw new NdmpClientError(Message.TAPE_READ, err, "body");
  return toBuffer(r.body.data_in as Bytes);
}

/** Puts the tape at the start of tape file `n`. */
export async function toFile(c: NdmpClient, n: number): Promise<void> {
  await mtio(c, TapeMtioOp.REW);
  if (n === 0) return;
  const resid = await mtio(c, TapeMtioOp.FSF, n);
  if (resid !== 0) throw new JobError(`the tape has no file ${n} (it ends ${resid} filemark(s) short)`);
}

/**
 * A filemark at the start of tape file `n`: the tape ends there for the next scan, so whatever
 * was written from there on (a failed backup, a partial copy) is gone. Best effort: if it cannot
 * be written, a scan still stops before a file without a complete image after its label.
 */
export async function cutAt(c: NdmpClient, n: number): Promise<void> {
  try {
    await toFile(c, n);
    await mtio(c, TapeMtioOp.EOF);
  } catch {
    // see above
  }
}

export interface TapeScan {
  labels: TapeLabel[];
  /** The tape file where the next backup goes (the label of backup labels.length + 1). */
  appendAt: number;
  /** Set when a tape file holds something that is not an ndmpd label (another program's tape). */
  foreign?: number;
}

/**
 * Reads the labels forward from the start: label, skip the label's and the image's filemarks,
 * next label... An empty tape file or the end of data ends the list. A label whose image has no
 * closing filemark (a backup cut short) is not counted: the next backup overwrites it.
 */
export async function scanTape(c: NdmpClient, opts: { firstOnly?: boolean } = {}): Promise<TapeScan> {
  await mtio(c, TapeMtioOp.REW);
  const labels: TapeLabel[] = [];
  for (let file = 0; ; file += 2) {
    const rec = await readRecord(c);
    if (rec === undefined) return { labels, appendAt: file };
    const label = decodeLabel(rec);
    if (!label) return { labels, appendAt: file, foreign: file };
    if (labels.length > 0 && label.mediaId !== labels[0]!.mediaId) throw new JobError(`tape file ${file} has the label of another cartridge`);
    if (opts.firstOnly) return { labels: [label], appendAt: -1 };
    const resid = await mtio(c, TapeMtioOp.FSF, 2);
    if (resid !== 0) return { labels, appendAt: file };
    labels.push({ ...label, seq: labels.length + 1 });
  }
}

export async function withTape<T>(t: JobTarget, mode: number, body: () => Promise<T>): Promise<T> {
  try {
    await t.tape.request(Message.TAPE_OPEN, { device: t.device, mode });
  } catch (e) {
    // The reply carries only the code: say what it means for someone at the command line.
    if (e instanceof NdmpClientError && e.error === ErrorCode.DEVICE_BUSY_ERR) {
      throw new JobError(`tape ${t.device} is busy: it is in use by another drive or process (an ndmpd server serving a DMA, or another job); try again when it is free`);
    }
    throw e;
  }
  try {
    return await body();
  } finally {
    await t.tape.request(Message.TAPE_CLOSE, {}, { allowBodyError: true }).catch(() => {});
  }
}
