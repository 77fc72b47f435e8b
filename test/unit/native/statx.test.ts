import { describe, expect, it } from "vitest";
import { makedev } from "../../../src/native/libc.ts";
import { makedevNumber, StatxBuffer } from "../../../src/native/statx.ts";

/** A struct statx as the kernel fills it (include/uapi/linux/stat.h offsets). */
function filled(): StatxBuffer {
  const sx = new StatxBuffer();
  const v = new DataView(sx.buf.buffer);
  v.setUint32(0, 0x7ff, true); // stx_mask
  v.setUint32(16, 3, true); // nlink
  v.setUint32(20, 1000, true); // uid
  v.setUint32(24, 4294967294, true); // gid (nfsnobody-style, above 2^31)
  v.setUint16(28, 0o104755, true); // mode: a setuid regular file
  v.setBigUint64(32, 2n ** 60n + 7n, true); // ino above 2^53
  v.setBigUint64(40, 5_000_000_000n, true); // size above 2^32
  v.setBigUint64(48, 8n, true); // blocks
  v.setBigInt64(64, -2n, true); // atime before the epoch
  v.setUint32(72, 999_999_999, true);
  v.setBigInt64(96, 1_700_000_000n, true); // ctime
  v.setUint32(104, 5, true);
  v.setBigInt64(112, 2n ** 33n + 1n, true); // mtime past 2038
  v.setUint32(120, 123_456_789, true);
  v.setUint32(128, 8, true); // rdev major
  v.setUint32(132, 17, true); // rdev minor
  v.setUint32(136, 259, true); // dev major
  v.setUint32(140, 0x12345, true); // dev minor
  return sx;
}

describe("StatxBuffer", () => {
  it("reads every field lstat would give, exact past 2^32 and 2^53, times before the epoch", () => {
    const sx = filled();
    expect([sx.mask, sx.nlink, sx.uid, sx.gid, sx.mode]).toEqual([0x7ff, 3, 1000, 4294967294, 0o104755]);
    expect(sx.ino).toBe(2n ** 60n + 7n);
    expect([sx.size, sx.blocks]).toEqual([5_000_000_000, 8]);
    expect(sx.atime).toEqual({ sec: -2, nsec: 999_999_999 });
    expect(sx.ctime).toEqual({ sec: 1_700_000_000, nsec: 5 });
    expect(sx.mtime).toEqual({ sec: 2 ** 33 + 1, nsec: 123_456_789 });
    expect([sx.rdevMajor, sx.rdevMinor]).toEqual([8, 17]);
    expect(sx.dev).toBe(Number(makedev(259, 0x12345)));
  });
});

describe("makedevNumber", () => {
  it("is glibc's makedev, as a number where exact", () => {
    for (const [ma, mi] of [[0, 0], [8, 1], [259, 3], [4095, 0xfffff], [4096, 0], [0, 0x100000], [0xffffffff, 0xffffffff], [253, 0xabcdef]] as const) {
      const want = makedev(ma, mi);
      const got = makedevNumber(ma, mi);
      expect(BigInt(got), `${ma}:${mi}`).toBe(want);
      expect(typeof got, `${ma}:${mi}`).toBe(want <= BigInt(Number.MAX_SAFE_INTEGER) ? "number" : "bigint");
    }
  });
});
