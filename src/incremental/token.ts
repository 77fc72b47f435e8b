/**
 * DUMP_DATE / BASE_DATE tokens, as illumos ndmpd writes them: a decimal u64 whose upper 32 bits
 * are a sequence number and whose lower 32 bits are the backup's start time in Unix seconds.
 *
 * Our sequence number is always the backup's level + 1: a level 0 gets 1, and a backup whose
 * BASE_DATE carries sequence s is a level s backup (one more than its base). A token only has
 * whole seconds; the sub-second time of a token we issued is kept in our own backup record
 * (records.ts), found by the token value.
 */

export const MAX_LEVEL = 31;
const U32 = 0xffff_ffffn;

export interface Token {
  seq: number;
  /** Unix seconds (mod 2^32). */
  sec: number;
}

export function encodeToken(level: number, startNs: bigint): string {
  const sec = (startNs / 1_000_000_000n) & U32;
  return ((BigInt(level + 1) << 32n) | sec).toString();
}

/** A BASE_DATE value: undefined when it is not a decimal u64 (or its sequence is out of range). */
export function decodeToken(text: string): Token | undefined {
  if (!/^\d{1,20}$/.test(text)) return undefined;
  const v = BigInt(text);
  if (v > 0xffff_ffff_ffff_ffffn) return undefined;
  const seq = Number(v >> 32n);
  return { seq, sec: Number(v & U32) };
}
