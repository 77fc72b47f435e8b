import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { StreamSource } from "../../../src/engine/stream-source.ts";
import { ALL1 } from "../../../src/protocol/codes.ts";

/** A fake mover: serves each request from `stream` onto the connection, and logs it. */
function setup(stream: Buffer, R: number) {
  const conn = new PassThrough();
  const asked: Array<[number, number]> = [];
  const source = new StreamSource(
    conn,
    (off, len) => {
      const o = Number(off);
      const end = len === ALL1 ? stream.length : Math.min(stream.length, o + Number(len));
      asked.push([o, len === ALL1 ? -1 : Number(len)]);
      // The bytes arrive in uneven chunks, as over a socket.
      for (let p = o; p < end; p += 777) conn.write(stream.subarray(p, Math.min(end, p + 777)));
      if (end === stream.length) conn.end();
    },
    R,
  );
  return { source, asked, conn };
}

const data = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 7) & 0xff));

describe("stream source for direct access", () => {
  it("asks for whole records, serves bytes inside the last records from memory, never asks twice", async () => {
    const { source, asked } = setup(data, 1000);
    expect(await source.fetch(1500, 1600)).toEqual(data.subarray(1500, 1600));
    expect(asked).toEqual([[1000, 1000]]);
    expect(await source.fetch(1600, 1990)).toEqual(data.subarray(1600, 1990)); // same record: no request
    expect(asked.length).toBe(1);
    expect(await source.fetch(1990, 2500)).toEqual(data.subarray(1990, 2500)); // continues after the cache
    expect(asked).toEqual([[1000, 1000], [2000, 1000]]);
    expect(await source.fetch(50_100, 50_200)).toEqual(data.subarray(50_100, 50_200)); // a jump ahead
    expect(asked.at(-1)).toEqual([50_000, 1000]);
    for (const [off, len] of asked) {
      expect(off % 1000).toBe(0);
      expect(len % 1000).toBe(0);
    }
    await expect(source.fetch(100, 200)).rejects.toThrow(/backwards/);
  });

  it("returns short at the end of the stream", async () => {
    const { source } = setup(data, 1024);
    const tail = await source.fetch(99_990, 100_500);
    expect(tail).toEqual(data.subarray(99_990));
  });

  it("reads everything sequentially with one (0, ALL1) request", async () => {
    const { source, asked } = setup(data, 1000);
    const parts: Buffer[] = [];
    for await (const c of source.sequential()) parts.push(c);
    expect(Buffer.concat(parts)).toEqual(data);
    expect(asked).toEqual([[0, -1]]);
  });
});
