/**
 * Bad input: the reader fails with a DumpFormatError carrying the offset, never hangs,
 * never allocates what a header merely claims, never throws anything else.
 */
import { describe, expect, it } from "vitest";
import { DumpFormatError, DumpReader } from "../../../../formats/dump/reader.ts";
import { CHECKSUM, TP_BSIZE, wordSum } from "../../../../formats/dump/header.ts";
import { buildStream, prng, testTree } from "./fixture.ts";

const good = buildStream(testTree(false));

/** Offsets of every header in a stream we wrote (from the writer's own bookkeeping). */
const firstInode = Math.min(...good.offsets.values());

/** Recompute c_checksum so a tampered header passes the checksum and reaches deeper checks. */
function reseal(stream: Buffer, off: number): void {
  const rec = stream.subarray(off, off + TP_BSIZE);
  rec.writeInt32LE(0, 28);
  rec.writeInt32LE((CHECKSUM - wordSum(rec)) | 0, 28);
}

function parse(stream: Buffer, chunk = 4096): void {
  const r = new DumpReader();
  for (let p = 0; p < stream.length; p += chunk) r.feed(stream.subarray(p, p + chunk));
  r.finish();
}

function failure(stream: Buffer, chunk = 4096): DumpFormatError {
  try {
    parse(stream, chunk);
  } catch (err) {
    expect(err).toBeInstanceOf(DumpFormatError);
    return err as DumpFormatError;
  }
  throw new Error("expected a DumpFormatError");
}

describe("dump reader on hostile input", () => {
  it("the untouched stream parses (so the failures below are caused by the damage)", () => {
    expect(() => parse(good.stream)).not.toThrow();
  });

  it("random bytes: not a dump header, at offset 0", () => {
    const rnd = prng(7);
    const junk = Buffer.from(Array.from({ length: 10_000 }, () => Math.floor(rnd() * 256)));
    const err = failure(junk);
    expect(err.offset).toBe(0);
    expect(err.message).toMatch(/magic/);
  });

  it("a flipped byte in a header: bad checksum at that header", () => {
    const bad = Buffer.from(good.stream);
    bad[firstInode + 700] ^= 0x40; // inside c_label of the root's TS_INODE
    const err = failure(bad);
    expect(err.message).toMatch(/checksum/);
    expect(err.offset).toBe(firstInode);
  });

  it("truncated streams: inside a record, and at a record boundary without TS_END", () => {
    expect(failure(good.stream.subarray(0, firstInode + 1500)).message).toMatch(/truncated/);
    const lastInode = Math.max(...good.offsets.values());
    const err = failure(good.stream.subarray(0, lastInode));
    expect(err.message).toMatch(/without TS_END/);
    expect(err.offset).toBe(lastInode);
    const r = new DumpReader();
    r.feed(good.stream.subarray(0, firstInode)); // maps only
    expect(() => r.finish()).toThrow(/without TS_END/);
    // The error sticks: feeding more after a failure keeps failing.
    expect(() => r.feed(good.stream.subarray(firstInode))).toThrow(DumpFormatError);
  });

  it("headers claiming huge counts or sizes are refused before anything is allocated", () => {
    const cases: Array<[string, (s: Buffer) => void, RegExp]> = [
      ["TS_CLRI count 2^30", (s) => s.writeInt32LE(2 ** 30, TP_BSIZE + 160), /inode map/],
      ["TS_CLRI count -1", (s) => s.writeInt32LE(-1, TP_BSIZE + 160), /inode map/],
      ["TS_INODE count 100000", (s) => s.writeInt32LE(100_000, firstInode + 160), /c_count/],
      ["directory size 2^40", (s) => s.writeBigUInt64LE(2n ** 40n, firstInode + 40), /directory/],
      ["size beyond 2^53", (s) => s.writeBigUInt64LE(2n ** 62n, firstInode + 40), /too large/],
      ["unknown record type", (s) => s.writeInt32LE(9, firstInode), /record type/],
      ["unknown file type", (s) => s.writeUInt16LE(0o160755, firstInode + 32), /file type/],
      ["volume 2", (s) => s.writeInt32LE(2, 12), /volume/],
    ];
    for (const [what, tamper, message] of cases) {
      const bad = Buffer.from(good.stream);
      tamper(bad);
      const at = what.startsWith("TS_CLRI") ? TP_BSIZE : what === "volume 2" ? 0 : firstInode;
      reseal(bad, at);
      const err = failure(bad);
      expect(err.message, what).toMatch(message);
      expect(err.offset, what).toBe(at);
    }
  });

  it("fuzz: random damage, resealed or not, ends in success or a DumpFormatError", () => {
    const rnd = prng(1234);
    let errors = 0;
    for (let round = 0; round < 300; round++) {
      const bad = Buffer.from(good.stream);
      const flips = 1 + Math.floor(rnd() * 8);
      for (let i = 0; i < flips; i++) {
        const off = Math.floor(rnd() * bad.length);
        bad[off] = Math.floor(rnd() * 256);
        if (rnd() < 0.7) reseal(bad, off - (off % TP_BSIZE)); // mostly keep headers "valid"
      }
      const cut = rnd() < 0.2 ? Math.floor(rnd() * bad.length) : bad.length;
      try {
        parse(bad.subarray(0, cut), 1 + Math.floor(rnd() * 3000));
      } catch (err) {
        expect(err).toBeInstanceOf(DumpFormatError);
        errors++;
      }
    }
    expect(errors).toBeGreaterThan(0);
  });
});
