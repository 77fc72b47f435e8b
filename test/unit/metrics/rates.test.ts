/** The per-session rate sampler behind `ndmpd sessions` and ndmpd_throughput_bytes_per_second. */
import { describe, expect, it } from "vitest";
import { ratesOf, sampleRates } from "../../../src/metrics/rates.ts";
import type { Session } from "../../../src/server/session.ts";

const fake = (data: bigint, mover: bigint) => ({ data: { bytesProcessed: data }, mover: { bytesMoved: mover } }) as unknown as Session;

describe("rates", () => {
  it("are the bytes of the last interval per second; 0 before the second sample, and after a stall", () => {
    const s = fake(0n, 0n);
    sampleRates([s], 1000);
    expect(ratesOf(s)).toEqual({ data: 0, mover: 0 });
    (s.data as unknown as { bytesProcessed: bigint }).bytesProcessed = 10_000_000n;
    s.mover!.bytesMoved = 5_000_000n;
    sampleRates([s], 3000);
    expect(ratesOf(s)).toEqual({ data: 5_000_000, mover: 2_500_000 });
    sampleRates([s], 4000);
    expect(ratesOf(s)).toEqual({ data: 0, mover: 0 });
  });

  it("a counter reset by STOP starts the next job from zero", () => {
    const s = fake(9_000n, 0n);
    sampleRates([s], 0);
    (s.data as unknown as { bytesProcessed: bigint }).bytesProcessed = 2_000n;
    sampleRates([s], 1000);
    expect(ratesOf(s).data).toBe(2_000);
  });
});
