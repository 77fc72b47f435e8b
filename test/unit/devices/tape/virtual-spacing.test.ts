/**
 * Spacing over many records jumps when records are the same size; it must land exactly where
 * stepping one record at a time lands, and never across a filemark.
 */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCartridge, VirtualTapeDrive } from "../../../../src/devices/tape/virtual.ts";
import { makeTempDir, pattern } from "./helpers.ts";

describe("virtual tape record spacing", () => {
  const { dir, cleanup } = makeTempDir("ndmpd-vt-space-");
  const file = path.join(dir, "t.tape");
  let drive: VirtualTapeDrive;

  beforeAll(async () => {
    await createCartridge(file);
    drive = new VirtualTapeDrive({ cartridge: file });
    await drive.open("RDWR");
    // File 0: 50 records of 1000 bytes, then one of 10 bytes. File 1: 5 records of 700 and 900.
    for (let i = 0; i < 50; i++) await drive.write(pattern(1000, i));
    await drive.write(pattern(10, 50));
    await drive.writeFilemarks(1);
    for (let i = 0; i < 5; i++) await drive.write(pattern(i % 2 ? 700 : 900, 100 + i));
    await drive.writeFilemarks(1);
  });
  afterAll(async () => {
    await drive.close();
    cleanup();
  });

  async function at(): Promise<[number, number]> {
    const st = await drive.getState();
    return [st.fileNum!, st.blockNo!];
  }

  it("FSR and BSR over equal records land on the right record", async () => {
    await drive.rewind();
    expect(await drive.fsr(37)).toBe(0);
    expect(await at()).toEqual([0, 37]);
    expect(await drive.read(2000)).toEqual(pattern(1000, 37));
    expect(await drive.bsr(30)).toBe(0);
    expect(await at()).toEqual([0, 8]);
    expect(await drive.read(2000)).toEqual(pattern(1000, 8));
  });

  it("over a short last record and up to a filemark, it stops where stepping would", async () => {
    await drive.rewind();
    expect(await drive.fsr(51)).toBe(0); // 50 equal records and the short one
    expect(await at()).toEqual([0, 51]);
    await drive.rewind();
    expect(await drive.fsr(1000)).toBe(1000 - 51); // stops before the filemark
    expect(await at()).toEqual([0, 51]);
    expect(await drive.fsf(1)).toBe(0);
    expect(await drive.fsr(4)).toBe(0); // mixed sizes: stepped
    expect(await at()).toEqual([1, 4]);
    expect(await drive.read(2000)).toEqual(pattern(900, 104));
    expect(await drive.bsr(100)).toBe(95); // back to the start of file 1, not across the mark
    expect(await at()).toEqual([1, 0]);
  });
});
