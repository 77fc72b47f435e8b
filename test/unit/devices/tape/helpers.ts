import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "vitest";
import { TapeError, type TapeErrorCode } from "../../../../src/devices/tape/device.ts";

/** A temp directory removed by the returned cleanup. */
export function makeTempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Deterministic, record-specific bytes so a misplaced record cannot pass for the right one. */
export function pattern(length: number, seed: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf[i] = x & 0xff;
  }
  return buf;
}

export async function expectTapeError(promise: Promise<unknown>, code: TapeErrorCode): Promise<TapeError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(TapeError);
    expect((error as TapeError).code).toBe(code);
    return error as TapeError;
  }
  throw new Error(`expected TapeError ${code}, but the operation succeeded`);
}
