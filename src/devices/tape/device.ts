// The tape drive as the TAPE and MOVER services see it. Two implementations: virtual.ts (a
// file-backed cartridge) and linux-st.ts (a real drive through /dev/nst*). Both keep the NDMP v4
// tape rules (spec 2.7) so the services do not have to: see TapeDriveBase in base.ts.

export type TapeOpenMode = "READ" | "RDWR" | "RAW";

export const TAPE_OPEN_MODES: readonly TapeOpenMode[] = ["READ", "RDWR", "RAW"];

/**
 * Why a tape operation failed. Each code maps to exactly one NDMP error (NDMP_ERROR_NAME below);
 * the services turn a TapeError into their NdmpError.
 */
export const TapeErrorCode = {
  /** A read met a filemark. No data; the position stays before (BOT side of) the filemark. */
  EOF: "EOF",
  /** Read: blank tape / end of data. Write: the logical end of medium (early warning) passed. */
  EOM: "EOM",
  /** A media or drive error; for writes also the physical end of medium (nothing more fits). */
  IO: "IO",
  NO_TAPE_LOADED: "NO_TAPE_LOADED",
  WRITE_PROTECT: "WRITE_PROTECT",
  /** A write or filemark on a drive opened READ. */
  PERMISSION: "PERMISSION",
  NO_DEVICE: "NO_DEVICE",
  ILLEGAL_ARGS: "ILLEGAL_ARGS",
  /** The drive is already open (here or by another process). */
  BUSY: "BUSY",
  /** An operation other than open on a closed drive. */
  NOT_OPEN: "NOT_OPEN",
  /** The drive kind cannot work in this runtime (st under Node: no FFI). */
  NOT_SUPPORTED: "NOT_SUPPORTED",
} as const;

export type TapeErrorCode = (typeof TapeErrorCode)[keyof typeof TapeErrorCode];

/** The NDMP error (spec 2.2) for each TapeErrorCode. */
export const NDMP_ERROR_NAME: Readonly<Record<TapeErrorCode, string>> = {
  EOF: "EOF_ERR",
  EOM: "EOM_ERR",
  IO: "IO_ERR",
  NO_TAPE_LOADED: "NO_TAPE_LOADED_ERR",
  WRITE_PROTECT: "WRITE_PROTECT_ERR",
  PERMISSION: "PERMISSION_ERR",
  NO_DEVICE: "NO_DEVICE_ERR",
  ILLEGAL_ARGS: "ILLEGAL_ARGS_ERR",
  BUSY: "DEVICE_BUSY_ERR",
  NOT_OPEN: "DEV_NOT_OPEN_ERR",
  NOT_SUPPORTED: "NOT_SUPPORTED_ERR",
};

export class TapeError extends Error {
  readonly code: TapeErrorCode;
  /** For filemark writes that stopped early: how many were not written. */
  readonly resid: number;

  constructor(code: TapeErrorCode, message: string, options?: { resid?: number; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "TapeError";
    this.code = code;
    this.resid = options?.resid ?? 0;
  }
}

export function isTapeError(error: unknown, code?: TapeErrorCode): error is TapeError {
  return error instanceof TapeError && (code === undefined || error.code === code);
}

/**
 * A snapshot for TAPE_GET_STATE. Fields the drive cannot tell are undefined (the service sends
 * them as "unsupported", all ones).
 */
export interface TapeState {
  /** Filemarks between BOT and the position. */
  fileNum?: number;
  /** Records between the last filemark (or BOT) and the position. */
  blockNo?: number;
  /** 0 = variable-block mode (always, for both our drives). */
  blockSize?: number;
  softErrors?: number;
  /** Bytes; for the virtual tape this counts record and filemark overhead too. */
  totalSpace?: number;
  spaceRemain?: number;
  /** NDMP flag WR_PROT. */
  writeProtected: boolean;
  /** NDMP flag NOREWIND: the drive keeps its position across close and open. */
  noRewind: boolean;
  /** A cartridge is in the drive and ready. */
  loaded: boolean;
  atBOT: boolean;
  /** At the end of recorded data (the next read gives EOM). */
  atEOD: boolean;
  /** At or past logical end of medium (early warning). */
  pastLEOM: boolean;
}

/**
 * One tape drive. Methods run one at a time (the drive serializes them); all but open need the
 * drive open (else NOT_OPEN). Records are variable-length: each write is one record on tape.
 */
export interface TapeDevice {
  /** What the drive is called in TAPE_OPEN and in logs. */
  readonly name: string;
  readonly openMode: TapeOpenMode | null;

  /**
   * READ: needs a loaded cartridge (NO_TAPE_LOADED). RDWR: also writable (WRITE_PROTECT).
   * RAW: opens even without a cartridge. Already open → BUSY. Rewinds unless the drive is no-rewind.
   */
  open(mode: TapeOpenMode): Promise<void>;
  /** Writes one filemark first if the last operation was a write; always leaves the drive closed. */
  close(): Promise<void>;
  /**
   * Writes one record. Returns the count written (all of data, or an error is thrown).
   * Length 0 does nothing and returns 0. The write that crosses logical end of medium succeeds;
   * the next one fails with EOM (count 0).
   */
  write(data: Uint8Array): Promise<number>;
  /**
   * Reads the next record, up to maxLen bytes. If the record is longer, the rest of it is lost
   * and the tape moves past the whole record (variable-block st semantics). maxLen 0 → empty.
   * Filemark → EOF (position stays before the filemark); end of data → EOM.
   */
  read(maxLen: number): Promise<Buffer>;
  /**
   * Optional: the caller is done with a buffer read() returned (no view of it is kept anywhere):
   * the drive may read into its memory again instead of fresh memory. Others' buffers are ignored.
   */
  recycle?(data: Buffer): void;
  /** Writes count filemarks and makes everything durable. */
  writeFilemarks(count: number): Promise<void>;
  /** Space forward over count filemarks (stops after each). Returns the count not done. */
  fsf(count: number): Promise<number>;
  /** Space back over count filemarks; ends on the BOT side of the last one. Returns resid. */
  bsf(count: number): Promise<number>;
  /** Space forward over count records; stops before a filemark or at end of data. Returns resid. */
  fsr(count: number): Promise<number>;
  /** Space back over count records; stops after a filemark or at BOT. Returns resid. */
  bsr(count: number): Promise<number>;
  rewind(): Promise<void>;
  /** MTIO OFF: rewind and unload (eject). The drive stays open, but reports NO_TAPE_LOADED. */
  unload(): Promise<void>;
  /** Resolves if the drive is ready; NO_TAPE_LOADED (or another TapeError) if not. */
  testUnitReady(): Promise<void>;
  getState(): Promise<TapeState>;
}
