import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { AuthThrottle, checkMd5, checkText, md5Digest, secretEquals } from "../../../src/server/auth.ts";

describe("NDMP MD5 authentication", () => {
  const challenge = Buffer.from(Array.from({ length: 64 }, (_, i) => i));

  it("matches the digest layout of the spec (vector computed independently with Python hashlib)", () => {
    // python3: pw=b"ndmp"; buf=bytearray(128); buf[0:4]=pw; buf[60:124]=bytes(range(64)); buf[124:128]=pw
    expect(md5Digest(Buffer.from("ndmp"), challenge).toString("hex")).toBe(MD5_NDMP_VECTOR);
  });

  it("places password, challenge and password as the digest describes", () => {
    const pw = Buffer.from("secret");
    const buf = Buffer.alloc(128);
    pw.copy(buf, 0);
    challenge.copy(buf, 64 - pw.length);
    pw.copy(buf, 128 - pw.length);
    expect(md5Digest(pw, challenge)).toEqual(createHash("md5").update(buf).digest());
  });

  it("cuts passwords to 32 bytes", () => {
    const long = Buffer.from("x".repeat(40));
    expect(md5Digest(long, challenge)).toEqual(md5Digest(long.subarray(0, 32), challenge));
  });

  it("accepts the right digest only, for a known user, with a challenge", () => {
    const users = new Map([["ndmp", Buffer.from("pw")]]);
    const good = md5Digest(Buffer.from("pw"), challenge);
    expect(checkMd5(users, Buffer.from("ndmp"), good, challenge)).toBe(true);
    expect(checkMd5(users, Buffer.from("ndmp"), md5Digest(Buffer.from("pX"), challenge), challenge)).toBe(false);
    expect(checkMd5(users, Buffer.from("other"), good, challenge)).toBe(false);
    expect(checkMd5(users, Buffer.from("ndmp"), good, undefined)).toBe(false);
    expect(checkMd5(users, Buffer.from("ndmp"), good.subarray(0, 15), challenge)).toBe(false);
  });

  it("checks TEXT passwords exactly", () => {
    const users = new Map([["ndmp", Buffer.from("pw")]]);
    expect(checkText(users, Buffer.from("ndmp"), Buffer.from("pw"))).toBe(true);
    expect(checkText(users, Buffer.from("ndmp"), Buffer.from("pw "))).toBe(false);
    expect(checkText(users, Buffer.from("nobody"), Buffer.from("pw"))).toBe(false);
    expect(secretEquals(Buffer.from("a"), Buffer.from("a"))).toBe(true);
  });
});
const MD5_NDMP_VECTOR = "bc7d61077ebc1e1bf84a59827c26dd65";

describe("AuthThrottle: the growing delay after failed logins, per source", () => {
  it("doubles from the base up to the ceiling, per address; a success or a quiet spell resets it", () => {
    const t = new AuthThrottle();
    const d = (src: string, now: number) => t.failed(src, 100, 1000, now);
    expect([d("a", 0), d("a", 1), d("a", 2), d("a", 3), d("a", 4), d("a", 5)]).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(d("b", 6)).toBe(100); // another address has its own count
    t.succeeded("a");
    expect(d("a", 7)).toBe(100);
    expect(d("a", 8 + AuthThrottle.FORGET_AFTER_MS)).toBe(100);
    expect(t.failed("c", 0, 1000, 9)).toBe(0); // no base delay configured: none
  });

  it("remembers a bounded number of addresses, forgetting the oldest", () => {
    const t = new AuthThrottle();
    for (let i = 0; i < AuthThrottle.MAX_SOURCES + 10; i++) t.failed(`10.0.${i >> 8}.${i & 255}`, 1, 1, i);
    expect(t.count("10.0.0.0")).toBe(0);
    expect(t.count(`10.0.${(AuthThrottle.MAX_SOURCES + 9) >> 8}.${(AuthThrottle.MAX_SOURCES + 9) & 255}`)).toBe(1);
  });
});
