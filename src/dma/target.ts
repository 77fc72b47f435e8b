/**
 * What every CLI job is given: the agents it drives, and the error a job reports to the user.
 */
import type { NdmpClient } from "../client/client.ts";

/** The agents of one job. `data === tape` is the local configuration (LOCAL data connection). */
export interface JobTarget {
  data: NdmpClient;
  tape: NdmpClient;
  /** The drive's name at the tape agent (TAPE_OPEN). */
  device: string;
  /** How the catalog names the drive: "vt0", or "host:port/device" for a remote one. */
  driveId: string;
  /** The cartridge's volume tag, when a library loaded it; else "". */
  barcode: string;
  /** The data agent's host, for the label. */
  host: string;
  /**
   * A recovery whose image spans cartridges (`recover --slot A --slot B ...`, or the catalog's
   * span of our own backup): closes the drive, has the library load the next cartridge and opens
   * it again, positioned at the image's next part; false when none is left. `{ at }`: the image
   * offset that part starts at, when it is known (else counted from the records read).
   */
  nextCartridge?(): Promise<boolean | { at: bigint }>;
  /**
   * The drive's library (a [[changer]] of the local configuration): lets a backup that fills its
   * cartridge go on on the next one, and a recovery load each cartridge of a span (span.ts).
   */
  library?: JobLibrary;
  /**
   * Only when the agents run in this process (the CLI's local jobs): routes the data service's
   * file history posts straight to `sink` (undefined: back onto the wire), skipping the XDR
   * encoding and decoding of every entry.
   */
  tapFileHistory?(sink: ((code: number, body: unknown) => void) | undefined): void;
}

/** What a job may do with the library of its drive. */
export interface JobLibrary {
  /** The library's name, for messages. */
  name: string;
  /** Its storage slots in order (1-based), and the cartridge in the drive (with the slot it came from). */
  inventory(): Promise<{ slots: Array<{ slot: number; barcode: string; full: boolean }>; drive?: { barcode: string; slot?: number } }>;
  /**
   * Closes the drive, puts its cartridge back, loads the cartridge of `slot` and opens the drive
   * again in `mode` (TapeOpenMode); returns the cartridge's volume tag ("" without one) and sets
   * the target's barcode.
   */
  load(slot: number, mode: number): Promise<string>;
}

export class JobError extends Error {
  override name = "JobError";
}

/** Default tape record size: 256 KiB streams well on real drives and on the virtual one. */
export const DEFAULT_RECORD_SIZE = 256 * 1024;
