/**
 * The tape layout of the CLI's jobs, and the label record that makes a cartridge
 * self-describing.
 *
 * Backup number k (1-based) on a cartridge occupies two tape files:
 *   tape file 2(k-1)     one label record (this module), then a filemark;
 *   tape file 2(k-1)+1   the backup image as the mover wrote it (records of `recordSize`), then
 *                        a filemark.
 * The end of the written part is the end of recorded data, or an empty tape file (a filemark
 * read first): a new backup is appended there. Every label repeats the cartridge's media id, so
 * the first label identifies the cartridge, and the labels alone list the backups.
 *
 * A label record is the ASCII line "NDMPD-LABEL 1\n" followed by one JSON object and "\n". It is
 * written as one tape record of its own length (at most MAX_LABEL bytes) before the image starts,
 * so it holds what is known then: the environment sent to the data service (plus the TYPE and
 * RECORD_SIZE it will add), not the size of the image (the file history read back from the
 * image gives that).
 *
 * A backup that fills its cartridge goes on on another one (span.ts): its image ends with a
 * filemark where the cartridge filled, and each next cartridge gets a tape file pair of its own
 * at its end, whose label names the backup, the part number and the image offset the part starts
 * at (`part`). The parts' tape files, read in order and concatenated, are the image.
 */
export const LABEL_MAGIC = "NDMPD-LABEL";
export const LABEL_VERSION = 1;
/** Labels are read with one TAPE_READ of this size: far above any label, within every agent's limit. */
export const MAX_LABEL = 64 * 1024;

export interface TapeLabel {
  /** The cartridge's identity (a UUID chosen when its first backup was written). */
  mediaId: string;
  /** Backup number on the cartridge, 1-based. */
  seq: number;
  /** The user's name for the backup (`--label`), or a generated one. */
  label: string;
  /** ISO 8601 start time. */
  date: string;
  /** The butype: tar or dump. */
  format: string;
  /** The host whose data service made the image. */
  host: string;
  /** The backed-up directory on that host (FILESYSTEM). */
  root: string;
  level: number;
  /** The image's tape record size: a restore must read it with the same one. */
  recordSize: number;
  /** The backup environment as sent, in order (a name may repeat: EXCLUDE). */
  env: Array<[string, string]>;
  /** The ndmpd version that wrote it. */
  writer: string;
  /** On a duplicate (`ndmpd remote duplicate`): the original, as "mediaId#seq". */
  copyOf?: string;
  /**
   * On a continuation (a backup that filled its cartridge and went on on the next one, see
   * span.ts): this image is part `number` (2, 3, ...) of the backup "mediaId#seq" (the cartridge
   * and number of part 1), and its first byte is byte `offset` (decimal) of the whole image.
   */
  part?: TapePart;
}

export interface TapePart {
  of: string;
  number: number;
  offset: string;
}

export function labelFile(seq: number): number {
  return 2 * (seq - 1);
}

export function imageFile(seq: number): number {
  return 2 * (seq - 1) + 1;
}

export function encodeLabel(l: TapeLabel): Buffer {
  const body = Buffer.from(`${LABEL_MAGIC} ${LABEL_VERSION}\n${JSON.stringify(l)}\n`, "utf8");
  if (body.length > MAX_LABEL) throw new Error(`the label is ${body.length} bytes; at most ${MAX_LABEL} fit (fewer --exclude patterns?)`);
  return body;
}

/** A label from a tape record; undefined when the record is not one of ours (another program's tape). */
export function decodeLabel(rec: Buffer): TapeLabel | undefined {
  const head = `${LABEL_MAGIC} `;
  if (rec.length < head.length || rec.subarray(0, head.length).toString("latin1") !== head) return undefined;
  const nl = rec.indexOf(0x0a);
  if (nl < 0) return undefined;
  const version = Number(rec.subarray(head.length, nl).toString("latin1"));
  if (version !== LABEL_VERSION) throw new Error(`tape label version ${version} is not one this ndmpd reads (${LABEL_VERSION})`);
  // A drive in fixed-block mode may hand back the record padded with zeros: stop at the JSON's end.
  let end = rec.indexOf(0x0a, nl + 1);
  if (end < 0) end = rec.length;
  let v: any;
  try {
    v = JSON.parse(rec.subarray(nl + 1, end).toString("utf8"));
  } catch (e) {
    throw new Error(`damaged tape label: ${(e as Error).message}`);
  }
  const str = (k: string) => {
    if (typeof v?.[k] !== "string") throw new Error(`damaged tape label: ${k} missing`);
    return v[k] as string;
  };
  const int = (k: string) => {
    if (!Number.isInteger(v?.[k]) || v[k] < 0) throw new Error(`damaged tape label: ${k} missing`);
    return v[k] as number;
  };
  const env: Array<[string, string]> = [];
  if (Array.isArray(v.env)) for (const p of v.env) if (Array.isArray(p) && typeof p[0] === "string" && typeof p[1] === "string") env.push([p[0], p[1]]);
  return {
    mediaId: str("mediaId"),
    seq: int("seq"),
    label: str("label"),
    date: str("date"),
    format: str("format"),
    host: str("host"),
    root: str("root"),
    level: int("level"),
    recordSize: int("recordSize"),
    env,
    writer: typeof v.writer === "string" ? v.writer : "",
    ...(typeof v.copyOf === "string" ? { copyOf: v.copyOf } : {}),
    ...(isPart(v.part) ? { part: { of: v.part.of, number: v.part.number, offset: v.part.offset } } : {}),
  };
}

function isPart(p: any): p is TapePart {
  return typeof p?.of === "string" && Number.isInteger(p.number) && p.number >= 2 && typeof p.offset === "string" && /^\d+$/.test(p.offset);
}
