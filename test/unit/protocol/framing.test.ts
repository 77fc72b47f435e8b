import { describe, expect, it } from "vitest";
import { FramingError, frameRecord, RecordReader } from "../../../src/protocol/framing.ts";

const frag = (last: boolean, payload: Buffer) => {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(((last ? 0x80000000 : 0) | payload.length) >>> 0);
  return Buffer.concat([h, payload]);
};

describe("record marking", () => {
  it("reassembles multi-fragment records fed one byte at a time", () => {
    const r = new RecordReader(1024);
    const stream = Buffer.concat([
      frag(false, Buffer.from("hello ")),
      frag(false, Buffer.alloc(0)),
      frag(true, Buffer.from("world")),
      frag(true, Buffer.from("second")),
    ]);
    const got: string[] = [];
    for (const byte of stream) for (const rec of r.push(Buffer.from([byte]))) got.push(rec.toString());
    expect(got).toEqual(["hello world", "second"]);
    expect(r.pending).toBe(0);
  });

  it("delivers several records from one chunk", () => {
    const r = new RecordReader(1024);
    const recs = r.push(Buffer.concat([frag(true, Buffer.from("a")), frag(true, Buffer.from("bc")), frag(true, Buffer.from("d")).subarray(0, 3)]));
    expect(recs.map(String)).toEqual(["a", "bc"]);
  });

  it("refuses an oversized record at its fragment header, before storing it", () => {
    const r = new RecordReader(1 << 20);
    const h = Buffer.alloc(4);
    h.writeUInt32BE(0xffffffff); // last fragment, 2 GiB - 1
    expect(() => r.push(h)).toThrow(FramingError);
    // Fragments that add up past the limit are refused too.
    const r2 = new RecordReader(100);
    expect(() => r2.push(Buffer.concat([frag(false, Buffer.alloc(60)), frag(true, Buffer.alloc(60))]))).toThrow(/exceeds/);
  });

  it("frames big records as several fragments that reassemble", () => {
    const payload = Buffer.alloc(10_000, 7);
    const parts = frameRecord(payload, 4096);
    const wire = Buffer.concat(parts);
    expect(wire.readUInt32BE(0)).toBe(4096); // first fragment not last
    const r = new RecordReader(1 << 20);
    expect(r.push(wire)).toEqual([payload]);
    expect(Buffer.concat(frameRecord(Buffer.from("ab"))).toString("hex")).toBe("800000026162");
  });
});
