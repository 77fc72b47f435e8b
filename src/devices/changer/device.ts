// A SCSI device as the SCSI service (spec 2.6) sees it: something that runs one CDB at a time and
// answers with a SCSI status, data and sense. Two implementations: virtual.ts (our emulated medium
// changer) and linux-sg.ts (a real device through /dev/sg* and the SG_IO ioctl).

/** SCSI status bytes (SAM). */
export const ScsiStatus = {
  GOOD: 0x00,
  CHECK_CONDITION: 0x02,
  BUSY: 0x08,
  RESERVATION_CONFLICT: 0x18,
  TASK_SET_FULL: 0x28,
} as const;

/** Sense keys (SPC). */
export const SenseKey = {
  NO_SENSE: 0x0,
  NOT_READY: 0x2,
  MEDIUM_ERROR: 0x3,
  HARDWARE_ERROR: 0x4,
  ILLEGAL_REQUEST: 0x5,
  UNIT_ATTENTION: 0x6,
  ABORTED_COMMAND: 0xb,
} as const;

export interface ScsiResult {
  status: number;
  /** Bytes the device returned (at most the data-in length asked for). */
  dataIn: Buffer;
  /** Sense data after CHECK CONDITION (autosense); empty otherwise. */
  sense: Buffer;
  /** Bytes of data-out the device took. */
  dataOutLen: number;
}

export interface ScsiDevice {
  /** The name a DMA passes to SCSI_OPEN. */
  readonly name: string;
  /**
   * Runs one CDB. Device-level failures (bad CDB, empty slot, ...) come back as a status and
   * sense, never as an exception; exceptions (ScsiError) are for failures to reach the device.
   */
  execute(cdb: Buffer, dataOut: Buffer, dataInLen: number, timeoutMs: number): Promise<ScsiResult>;
  /** SCSI_RESET_DEVICE. */
  reset(): Promise<void>;
  /** Lets go of the device (SCSI_CLOSE, session end). */
  close(): Promise<void>;
}

/** Why a SCSI device could not be reached; each maps to one NDMP error (NDMP_ERROR_NAME). */
export type ScsiErrorCode = "NO_DEVICE" | "BUSY" | "IO" | "TIMEOUT" | "ILLEGAL_ARGS" | "NOT_SUPPORTED" | "PERMISSION";

export const SCSI_NDMP_ERROR_NAME: Readonly<Record<ScsiErrorCode, string>> = {
  NO_DEVICE: "NO_DEVICE_ERR",
  BUSY: "DEVICE_BUSY_ERR",
  IO: "IO_ERR",
  TIMEOUT: "TIMEOUT_ERR",
  ILLEGAL_ARGS: "ILLEGAL_ARGS_ERR",
  NOT_SUPPORTED: "NOT_SUPPORTED_ERR",
  PERMISSION: "PERMISSION_ERR",
};

export class ScsiError extends Error {
  constructor(
    readonly code: ScsiErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "ScsiError";
  }
}

/** Fixed-format sense data (response code 70h, 18 bytes): what ndmjob and most DMAs parse. */
export function fixedSense(key: number, asc: number, ascq: number, fieldPointer?: { byte: number; cdb: boolean }): Buffer {
  const s = Buffer.alloc(18);
  s[0] = 0x70; // current error, fixed format
  s[2] = key & 0x0f;
  s[7] = 10; // additional sense length: bytes 8..17
  s[12] = asc;
  s[13] = ascq;
  if (fieldPointer) {
    // Sense-key specific: SKSV, C/D (the bad field is in the CDB rather than the parameter list).
    s[15] = 0x80 | (fieldPointer.cdb ? 0x40 : 0);
    s.writeUInt16BE(fieldPointer.byte, 16);
  }
  return s;
}

/** The sense key, ASC and ASCQ of fixed (70h/71h) or descriptor (72h/73h) sense data. */
export function parseSense(sense: Uint8Array): { key: number; asc: number; ascq: number } | null {
  const code = (sense[0] ?? 0) & 0x7f;
  if ((code === 0x70 || code === 0x71) && sense.length >= 14) return { key: sense[2]! & 0x0f, asc: sense[12]!, ascq: sense[13]! };
  if ((code === 0x72 || code === 0x73) && sense.length >= 4) return { key: sense[1]! & 0x0f, asc: sense[2]!, ascq: sense[3]! };
  return null;
}
