/**
 * Backups that span cartridges, for the CLI's jobs on a drive in a library (JobTarget.library).
 *
 * Backup: when the mover pauses at the end of the cartridge (EOM, or EOW), the image part on it
 * is closed with a filemark, the cartridge goes back to its slot and the next usable one is
 * loaded. "Next usable": the storage slots after the one the full cartridge came from, in slot
 * order, wrapping around to slot 1, that hold a cartridge not already part of this backup and
 * either blank or written by ndmpd (appendable: another program's tape is skipped, and so is a
 * cartridge too full to take a label). On it, at its end, go a label naming the backup, the
 * part number and the image offset the part starts at (label.ts `part`), a filemark, then the
 * rest of the image: the mover continues with its window starting at that offset. This is what
 * NDMJOB does with its media list (each -m in turn) and Bareos with the volumes of a pool (the
 * next appendable one), with the choice made from the library's own slot order.
 *
 * Recovery: the catalog holds each part's cartridge (volume tag, slot), backup number on it and
 * start offset (Catalog.span). A recovery loads the part holding the first byte it needs (part
 * 1 for everything; for direct access, the part holding the lowest offset asked for), checks
 * the label there, and at the end of each part loads the next one, telling the mover where its
 * bytes start in the image.
 */
import { randomUUID } from "node:crypto";
import type { Catalog, JobRow, SpanPart } from "../catalog/catalog.ts";
import { NdmpClientError } from "../client/client.ts";
import { ErrorCode, Message, TapeMtioOp, TapeOpenMode } from "../protocol/codes.ts";
import { encodeLabel, imageFile, labelFile, type TapeLabel } from "./label.ts";
import type { Progress } from "./progress.ts";
import { cutAt, mtio, readRecord, scanTape, toFile } from "./tape.ts";
import { decodeLabel } from "./label.ts";
import { JobError, type JobLibrary, type JobTarget } from "./target.ts";

/** A part written so far (bytes are known once the next part starts, or the backup ends). */
interface WrittenPart {
  part: number;
  mediaId: string;
  seq: number;
  barcode: string;
  slot: number;
  start: bigint;
  /** The tape file of its label: where a failed backup is cut off. */
  labelFile: number;
  /** When the cartridge was blank: its first backup's date, for the catalog's media row. */
  created: string;
}

/** The storage slots to try after `current`, in slot order, wrapping around (see the head of this file). */
export function candidateSlots(slots: Array<{ slot: number; full: boolean }>, current: number | undefined, used: Set<number>): number[] {
  const order = [...slots].sort((a, b) => a.slot - b.slot);
  const from = current === undefined ? 0 : order.findIndex((s) => s.slot > current);
  const rotated = from < 0 ? order : [...order.slice(from), ...order.slice(0, from)];
  return rotated.filter((s) => s.full && !used.has(s.slot) && s.slot !== current).map((s) => s.slot);
}

/** One backup's cartridges: the one it starts on, then each one it goes on on. */
export class BackupSpan {
  readonly parts: WrittenPart[] = [];
  /** Set once a cartridge other than the first has been in the drive (failure: reload the first). */
  private moved = false;

  constructor(
    private readonly t: JobTarget,
    private readonly label: TapeLabel,
    private readonly catalog: Catalog,
    private readonly progress: Progress,
  ) {}

  /** Where the backup starts: the cartridge in the drive (its slot asked of the library, when there is one). */
  async begin(labelFileAt: number, created: string): Promise<void> {
    let slot = 0;
    let barcode = this.t.barcode;
    if (this.t.library) {
      const inv = await this.t.library.inventory();
      slot = inv.drive?.slot ?? 0;
      if (!barcode) barcode = inv.drive?.barcode ?? "";
    }
    this.parts.push({ part: 1, mediaId: this.label.mediaId, seq: this.label.seq, barcode, slot, start: 0n, labelFile: labelFileAt, created });
  }

  get spanned(): boolean {
    return this.parts.length > 1;
  }

  get first(): WrittenPart {
    return this.parts[0]!;
  }

  /** The mover paused at the end of the cartridge at image offset `at`: the next one, or why not. */
  async onFull(at: bigint): Promise<{ ok: true } | { ok: false; why: string }> {
    const lib = this.t.library;
    const cur = this.parts.at(-1)!;
    const here = cur.barcode ? `cartridge ${cur.barcode}` : "the cartridge";
    if (!lib) return { ok: false, why: `drive ${this.t.device} belongs to no [[changer]] with more cartridges (a backup larger than a cartridge needs a library)` };
    // The part on the full cartridge ends here: a filemark (accepted past the early warning).
    await mtio(this.t.tape, TapeMtioOp.EOF);
    const inv = await lib.inventory();
    const used = new Set(this.parts.map((p) => p.slot));
    const usedTags = new Set(this.parts.map((p) => p.barcode).filter((b) => b !== ""));
    const candidates = candidateSlots(inv.slots, cur.slot || undefined, used).filter((s) => {
      const tag = inv.slots.find((x) => x.slot === s)!.barcode;
      return tag === "" || !usedTags.has(tag);
    });
    const skipped: string[] = [];
    for (const slot of candidates) {
      this.moved = true;
      const tag = inv.slots.find((x) => x.slot === slot)!.barcode;
      let why: string | undefined;
      try {
        await lib.load(slot, TapeOpenMode.RDWR);
        why = await this.tryPart(slot, tag, at);
      } catch (e) {
        // A write-protected cartridge, or one the drive cannot load.
        why = (e as Error).message;
      }
      const name = `slot ${slot}${tag ? ` (${tag})` : ""}`;
      if (why === undefined) {
        const part = this.parts.at(-1)!;
        this.progress.note(`${here} (slot ${cur.slot || "?"}) is full at byte ${at} of the image: part ${part.part} goes on ${name}, backup ${part.seq} on it`);
        return { ok: true };
      }
      skipped.push(`${name}: ${why}`);
      this.progress.note(`${name} cannot take part ${cur.part + 1}: ${why}`);
    }
    const none = inv.slots.every((s) => !s.full || used.has(s.slot)) ? `${lib.name} holds no other cartridge` : `no other cartridge in ${lib.name} is usable`;
    return { ok: false, why: skipped.length ? `${none} (${skipped.join("; ")})` : none };
  }

  /** Writes the next part's label on the cartridge just loaded; undefined when it took it, else why not. */
  private async tryPart(slot: number, barcode: string, at: bigint): Promise<string | undefined> {
    let scan;
    try {
      scan = await scanTape(this.t.tape);
    } catch (e) {
      return (e as Error).message;
    }
    if (scan.foreign !== undefined) return `tape file ${scan.foreign} holds another program's data`;
    const mediaId = scan.labels[0]?.mediaId ?? randomUUID();
    if (this.parts.some((p) => p.mediaId === mediaId)) return "it is already part of this backup";
    const seq = scan.labels.length + 1;
    const part = this.parts.length + 1;
    const label: TapeLabel = { ...this.label, mediaId, seq, part: { of: `${this.first.mediaId}#${this.first.seq}`, number: part, offset: String(at) } };
    try {
      await toFile(this.t.tape, scan.appendAt);
      await this.t.tape.request(Message.TAPE_WRITE, { data_out: encodeLabel(label) });
      await mtio(this.t.tape, TapeMtioOp.EOF);
    } catch (e) {
      await cutAt(this.t.tape, scan.appendAt);
      return e instanceof NdmpClientError && e.error === ErrorCode.EOM_ERR ? "it is full (no room for a label)" : `writing its label failed: ${(e as Error).message}`;
    }
    // Anything the catalog knew from this position on is gone from that cartridge now.
    this.catalog.dropJobsFrom(mediaId, seq);
    this.parts.push({ part, mediaId, seq, barcode, slot, start: at, labelFile: scan.appendAt, created: scan.labels[0]?.date ?? this.label.date });
    return undefined;
  }

  /** The parts as the catalog keeps them, with each one's bytes (`total`: the whole image). */
  rows(total: number): SpanPart[] {
    return this.parts.map((p, i) => {
      const end = i + 1 < this.parts.length ? this.parts[i + 1]!.start : BigInt(total);
      return { part: p.part, mediaId: p.mediaId, seq: p.seq, barcode: p.barcode, slot: p.slot, start: Number(p.start), bytes: Number(end - p.start) };
    });
  }

  /** After the backup's own row: each other cartridge, and the span. */
  record(jobId: number, total: number): void {
    if (!this.spanned) return;
    for (const p of this.parts.slice(1)) this.catalog.upsertMedia({ mediaId: p.mediaId, drive: this.t.driveId, barcode: p.barcode, created: p.created });
    this.catalog.addSpan(jobId, this.rows(total));
  }

  /**
   * A failed backup: the parts on other cartridges are cut off them, and the first cartridge is
   * put back in the drive. True when it is there, for the job to cut its own part off; false
   * when it cannot be found (no slot or volume tag known): nothing else may be cut instead.
   */
  async undo(): Promise<boolean> {
    if (!this.moved) return true;
    const lib = this.t.library!;
    for (const p of this.parts.slice(1).reverse()) {
      await lib.load(p.slot, TapeOpenMode.RDWR);
      await cutAt(this.t.tape, p.labelFile);
    }
    const { slot, barcode } = this.first;
    // Its slot, or where the library put it when it had none (found by its volume tag).
    const home = barcode ? await slotOf(lib, barcode, slot).catch(() => slot) : slot;
    if (!home) {
      this.progress.note(`warning: the first cartridge of the failed backup cannot be found in ${lib.name} (no slot or volume tag): backup ${this.first.seq} on it ends short and is not to be restored`);
      return false;
    }
    await lib.load(home, TapeOpenMode.RDWR);
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// Recovery

/** The slot that holds the cartridge with volume tag `barcode` now (it may have moved), else `slot`. */
async function slotOf(lib: JobLibrary, barcode: string, slot: number): Promise<number> {
  if (!barcode) return slot;
  const inv = await lib.inventory();
  if (inv.drive?.barcode === barcode) return inv.drive.slot ?? slot;
  const found = inv.slots.find((s) => s.full && s.barcode === barcode);
  if (!found) throw new JobError(`cartridge ${barcode} (part of the backup) is not in ${lib.name}: put it back in a slot`);
  return found.slot;
}

/**
 * Puts part `p` of `job` in the drive, positioned at its image: loads it (unless it is there),
 * and checks that its label is that part.
 */
export async function loadPart(t: JobTarget, job: JobRow, p: SpanPart): Promise<void> {
  const lib = t.library;
  // Part 1 is on the job's own cartridge, which the job found in the drive (unless a tag says otherwise).
  if (p.part > 1 || (p.barcode !== "" && t.barcode !== p.barcode)) {
    if (!lib) throw new JobError(`backup ${job.seq} spans cartridges; drive ${t.device} belongs to no [[changer]] to load part ${p.part} (${p.barcode || `slot ${p.slot}`})`);
    const inv = await lib.inventory();
    const there = p.barcode !== "" && inv.drive?.barcode === p.barcode;
    if (!there) await lib.load(await slotOf(lib, p.barcode, p.slot), TapeOpenMode.READ);
    else t.barcode = p.barcode;
  }
  await toFile(t.tape, labelFile(p.seq));
  const rec = await readRecord(t.tape);
  const label = rec ? decodeLabel(rec) : undefined;
  const want = `${job.mediaId}#${job.seq}`;
  const isIt = p.part === 1 ? label?.mediaId === job.mediaId && label.seq === job.seq : label?.part?.of === want && label.part.number === p.part;
  if (!isIt) throw new JobError(`the cartridge ${t.barcode || "in the drive"} does not hold part ${p.part} of backup ${job.seq} (${job.label}) as backup ${p.seq}: run 'ndmpd catalog rebuild' if it was rewritten`);
  await toFile(t.tape, imageFile(p.seq));
}

/** The part that holds image byte `at`. */
export function partAt(parts: SpanPart[], at: number): SpanPart {
  return [...parts].reverse().find((p) => p.start <= at) ?? parts[0]!;
}

/**
 * Sets up a recovery of `job` over its span: loads the part holding `from` (the first byte the
 * recovery reads) and makes t.nextCartridge load each later part in turn. Returns the image
 * offset of the loaded part (the mover's window) and a function that restores t.nextCartridge.
 */
export async function spanRecovery(t: JobTarget, job: JobRow, parts: SpanPart[], from: number, progress?: Progress): Promise<{ windowOffset: bigint; done(): void }> {
  const first = partAt(parts, from);
  await loadPart(t, job, first);
  if (first.part > 1) progress?.note(`direct access: starting on part ${first.part}, cartridge ${first.barcode || `slot ${first.slot}`} (the image from byte ${first.start})`);
  const saved = t.nextCartridge;
  let next = parts.indexOf(first) + 1;
  t.nextCartridge = async () => {
    const p = parts[next++];
    if (!p) return false;
    await loadPart(t, job, p);
    return { at: BigInt(p.start) };
  };
  return {
    windowOffset: BigInt(first.start),
    done() {
      t.nextCartridge = saved;
    },
  };
}

/**
 * A recovery asked for a backup number whose label on the cartridge in the drive is a later part
 * of a backup (the drive holds the last cartridge a spanning backup wrote): puts the backup's
 * first cartridge in the drive and returns the backup's number there.
 */
export async function toFirstPart(t: JobTarget, catalog: Catalog | undefined, label: TapeLabel, seq: number): Promise<number> {
  const [mediaId, n] = label.part!.of.split("#");
  const job = catalog?.job(mediaId!, Number(n));
  const first = job ? catalog!.span(job.jobId)[0] : undefined;
  const what = `backup ${seq} on the cartridge in ${t.device} is part ${label.part!.number} of backup ${n} (${label.label}) of cartridge ${mediaId}`;
  if (!job || !first) throw new JobError(`${what}, which the catalog does not know: load that cartridge (--slot) and run 'ndmpd catalog rebuild', or recover from it`);
  if (!t.library) throw new JobError(`${what}; drive ${t.device} belongs to no [[changer]] to load it`);
  await t.library.load(await slotOf(t.library, first.barcode, first.slot), TapeOpenMode.READ);
  return job.seq;
}

/**
 * `catalog rebuild` of a backup whose image goes on past its cartridge: finds each next part by
 * its label in the library (the slots in the order a backup takes them, from the one in the
 * drive), so the file history is read whole and the span recorded again.
 */
export class SpanFinder {
  readonly parts: Array<Omit<SpanPart, "bytes">> = [];

  constructor(
    private readonly t: JobTarget,
    private readonly first: { mediaId: string; seq: number },
    private readonly progress?: Progress,
  ) {}

  /** Before the read: part 1, the cartridge in the drive. */
  async begin(): Promise<void> {
    const inv = this.t.library ? await this.t.library.inventory() : undefined;
    this.parts.push({ part: 1, mediaId: this.first.mediaId, seq: this.first.seq, barcode: inv?.drive?.barcode ?? this.t.barcode, slot: inv?.drive?.slot ?? 0, start: 0 });
  }

  /** t.nextCartridge while the history is read: the next part, positioned at its image, or false. */
  async next(): Promise<false | { at: bigint }> {
    const lib = this.t.library;
    if (!lib) return false;
    const want = this.parts.length + 1;
    const of = `${this.first.mediaId}#${this.first.seq}`;
    const inv = await lib.inventory();
    const cur = this.parts.at(-1)!;
    for (const slot of candidateSlots(inv.slots, cur.slot || undefined, new Set(this.parts.map((p) => p.slot)))) {
      const barcode = await lib.load(slot, TapeOpenMode.READ);
      let labels: TapeLabel[];
      try {
        labels = (await scanTape(this.t.tape)).labels;
      } catch {
        continue;
      }
      const part = labels.find((l) => l.part?.of === of && l.part.number === want);
      if (!part) continue;
      await toFile(this.t.tape, imageFile(part.seq));
      this.parts.push({ part: want, mediaId: part.mediaId, seq: part.seq, barcode, slot, start: Number(part.part!.offset) });
      this.progress?.note(`part ${want} of backup ${this.first.seq} is backup ${part.seq} of ${barcode || `slot ${slot}`}`);
      return { at: BigInt(part.part!.offset) };
    }
    return false;
  }

  get spanned(): boolean {
    return this.parts.length > 1;
  }

  rows(total: number): SpanPart[] {
    return this.parts.map((p, i) => ({ ...p, bytes: (i + 1 < this.parts.length ? this.parts[i + 1]!.start : total) - p.start }));
  }

  /** After the read: the first cartridge back in the drive, for the backups after this one. */
  async end(): Promise<void> {
    if (this.spanned && this.t.library && this.parts[0]!.slot) await this.t.library.load(this.parts[0]!.slot, TapeOpenMode.READ);
  }
}

/** Runs `read` (a file history read of the finder's backup) with the finder loading the next parts. */
export async function withSpanFinder<T>(t: JobTarget, finder: SpanFinder, read: () => Promise<T>): Promise<T> {
  await finder.begin();
  const saved = t.nextCartridge;
  t.nextCartridge = () => finder.next();
  try {
    return await read();
  } finally {
    t.nextCartridge = saved;
    await finder.end();
  }
}

/** What a rebuild found of a span, into the catalog (nothing for a backup on one cartridge). */
export function recordFound(catalog: Catalog, t: JobTarget, jobId: number, finder: SpanFinder, total: number, created: string): void {
  if (!finder.spanned) return;
  for (const p of finder.parts.slice(1)) if (!catalog.media(p.mediaId)) catalog.upsertMedia({ mediaId: p.mediaId, drive: t.driveId, barcode: p.barcode, created });
  catalog.addSpan(jobId, finder.rows(total));
}
