import type { TarEvent } from "./reader.ts";

/**
 * A tar stream that cannot be decoded. `offset` is the absolute stream offset of the block
 * (or byte) where the problem was found, so an operator can look at it with `dd`/`od`.
 */
export class TarFormatError extends Error {
  readonly offset: number;
  /**
   * Events decoded from the same `feed()` call before the bad bytes were met. They are valid
   * (earlier entries, data of the entry before the damage) and are handed over here rather
   * than silently dropped.
   */
  events: TarEvent[] = [];

  constructor(message: string, offset: number) {
    super(`${message} (at stream offset ${offset})`);
    this.name = "TarFormatError";
    this.offset = offset;
  }
}
