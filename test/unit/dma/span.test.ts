/** The order in which a backup that fills its cartridge tries the library's other cartridges (span.ts). */
import { describe, expect, it } from "vitest";
import { candidateSlots, partAt } from "../../../src/dma/span.ts";
import type { SpanPart } from "../../../src/catalog/catalog.ts";

const slots = (full: number[], n = 6) => Array.from({ length: n }, (_, i) => ({ slot: i + 1, full: full.includes(i + 1) }));

describe("candidateSlots", () => {
  it("takes the occupied slots after the current one in slot order, then wraps around to slot 1", () => {
    expect(candidateSlots(slots([1, 2, 3, 5, 6]), 3, new Set([3]))).toEqual([5, 6, 1, 2]);
  });
  it("skips the slots already part of the backup, and the current one", () => {
    expect(candidateSlots(slots([1, 2, 3, 4]), 2, new Set([1, 2]))).toEqual([3, 4]);
    expect(candidateSlots(slots([1, 2]), 2, new Set([1, 2]))).toEqual([]);
  });
  it("starts at slot 1 when the cartridge in the drive has no known slot", () => {
    expect(candidateSlots(slots([2, 4]), undefined, new Set())).toEqual([2, 4]);
  });
});

describe("partAt", () => {
  const part = (n: number, start: number): SpanPart => ({ part: n, mediaId: `m${n}`, seq: 1, barcode: "", slot: n, start, bytes: 100 });
  const parts = [part(1, 0), part(2, 100), part(3, 200)];
  it("maps an image offset to the part that holds it", () => {
    expect([0, 99, 100, 199, 200, 10_000].map((at) => partAt(parts, at).part)).toEqual([1, 1, 2, 2, 3, 3]);
  });
});
