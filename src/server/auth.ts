/**
 * NDMP authentication (protocol digest §1.7): TEXT and the MD5 challenge-response.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** MD5 passwords are cut to 32 bytes by every implementation. */
const MD5_PASSWORD_MAX = 32;

export function newChallenge(): Buffer {
  return randomBytes(64);
}

/**
 * The NDMP MD5 digest: MD5 over 128 bytes holding the password at 0, the challenge at
 * 64 - len and the password again at 128 - len (zeros elsewhere).
 */
export function md5Digest(password: Buffer, challenge: Buffer): Buffer {
  if (challenge.length !== 64) throw new Error("an NDMP MD5 challenge is 64 bytes");
  const pw = password.subarray(0, MD5_PASSWORD_MAX);
  const buf = Buffer.alloc(128);
  pw.copy(buf, 0);
  challenge.copy(buf, 64 - pw.length);
  pw.copy(buf, 128 - pw.length);
  return createHash("md5").update(buf).digest();
}

/** Constant-time equality that does not leak the length through an early exit. */
export function secretEquals(a: Buffer, b: Buffer): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb) && a.length === b.length;
}

export function checkText(users: Map<string, Buffer>, id: Buffer, password: Buffer): boolean {
  const known = users.get(id.toString("utf8"));
  // Compare against something even for unknown users, so timing doesn't reveal who exists.
  const ok = secretEquals(known ?? randomBytes(16), password);
  return known !== undefined && known.length > 0 && ok;
}

export function checkMd5(users: Map<string, Buffer>, id: Buffer, digest: Buffer, challenge: Buffer | undefined): boolean {
  const known = users.get(id.toString("utf8"));
  if (!challenge) return false;
  const expected = md5Digest(known ?? randomBytes(16), challenge);
  const ok = digest.length === 16 && timingSafeEqual(expected, digest);
  return known !== undefined && known.length > 0 && ok;
}

/**
 * The growing delay after failed logins, per source address: base, then doubling with each
 * failure up to max; a success from the address resets it, and an address quiet for
 * FORGET_AFTER_MS is forgotten. At most MAX_SOURCES addresses are remembered (the oldest go
 * first), so a scan from many addresses cannot grow it without bound.
 */
export class AuthThrottle {
  static readonly FORGET_AFTER_MS = 15 * 60 * 1000;
  static readonly MAX_SOURCES = 4096;
  private readonly failures = new Map<string, { count: number; last: number }>();

  /** Records a failure from `source`; returns how long to wait before answering it. */
  failed(source: string, baseMs: number, maxMs: number, now = Date.now()): number {
    const prev = this.failures.get(source);
    const count = prev && now - prev.last < AuthThrottle.FORGET_AFTER_MS ? prev.count + 1 : 1;
    this.failures.delete(source); // re-inserted last: the Map's order is the age order
    this.failures.set(source, { count, last: now });
    while (this.failures.size > AuthThrottle.MAX_SOURCES) this.failures.delete(this.failures.keys().next().value!);
    if (baseMs <= 0) return 0;
    return Math.min(Math.max(baseMs, maxMs), baseMs * 2 ** Math.min(count - 1, 30));
  }

  succeeded(source: string): void {
    this.failures.delete(source);
  }

  /** Failures remembered for `source` (for tests and the log). */
  count(source: string): number {
    return this.failures.get(source)?.count ?? 0;
  }
}
