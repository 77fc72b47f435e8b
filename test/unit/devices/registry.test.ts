/** The device registry: drives from [[tape]] config, cartridges created once, lookup, TAPE_INFO. */
import fs from "node:fs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { TapeConfig } from "../../../src/config.ts";
import { DeviceRegistry } from "../../../src/devices/registry.ts";
import { readCartridgeInfo, VirtualTapeDrive } from "../../../src/devices/tape/virtual.ts";
import { TapeAttr } from "../../../src/protocol/codes.ts";
import { makeTempDir } from "./tape/helpers.ts";

describe("DeviceRegistry", () => {
  let tmp: ReturnType<typeof makeTempDir>;
  beforeEach(() => (tmp = makeTempDir("ndmpd-registry-")));
  afterEach(() => tmp.cleanup());

  const tape = (name: string, extra: Partial<TapeConfig> = {}): TapeConfig => ({
    name,
    type: "virtual",
    path: `${tmp.dir}/sub/${name}.tape`,
    noRewind: false,
    serial: `SN-${name}`,
    ...extra,
  });

  it("creates missing cartridges (with their directory and capacity) and keeps existing ones", async () => {
    const reg = await DeviceRegistry.fromConfig([tape("a", { capacity: 8 * 1024 * 1024 }), tape("b")]);
    expect(readCartridgeInfo(`${tmp.dir}/sub/a.tape`).capacity).toBe(8 * 1024 * 1024);
    expect(readCartridgeInfo(`${tmp.dir}/sub/b.tape`).capacity).toBe(64 * 1024 ** 3);
    // Data written through the drive survives a second registry (a restart): no re-creation.
    const a = reg.findTape("a")!;
    expect(a.device).toBeInstanceOf(VirtualTapeDrive);
    expect(a.owner).toBeNull();
    await a.device.open("RDWR");
    await a.device.write(Buffer.alloc(1000, 5));
    await a.device.close();
    const before = fs.statSync(`${tmp.dir}/sub/a.tape`).size;
    const again = await DeviceRegistry.fromConfig([tape("a", { capacity: 2 * 1024 * 1024 })]);
    expect(fs.statSync(`${tmp.dir}/sub/a.tape`).size).toBe(before);
    expect(readCartridgeInfo(`${tmp.dir}/sub/a.tape`).capacity).toBe(8 * 1024 * 1024);
    const d = again.findTape("a")!.device;
    await d.open("READ");
    expect((await d.read(4096)).equals(Buffer.alloc(1000, 5))).toBe(true);
    await d.close();
  });

  it("finds a drive by name or by path, nothing else", async () => {
    const reg = await DeviceRegistry.fromConfig([tape("vt0"), tape("vt1")]);
    expect(reg.findTape("vt1")?.config.name).toBe("vt1");
    expect(reg.findTape(`${tmp.dir}/sub/vt0.tape`)?.config.name).toBe("vt0");
    expect(reg.findTape("vt2")).toBeUndefined();
    expect(reg.findTape("")).toBeUndefined();
  });

  it("describes each drive for CONFIG_GET_TAPE_INFO: attributes and capabilities", async () => {
    const reg = await DeviceRegistry.fromConfig([tape("r"), tape("n", { noRewind: true })]);
    const info = reg.tapeInfo();
    expect(info).toHaveLength(2);
    expect(info[0]).toEqual({
      model: "ndmpd virtual tape",
      caplist: [
        {
          device: "r",
          attr: TapeAttr.REWIND | TapeAttr.RAW,
          capability: [
            { name: "EXECUTE_CDB", value: "n" },
            { name: "SERIAL_NUMBER", value: "SN-r" },
            { name: "PATH", value: `${tmp.dir}/sub/r.tape` },
          ],
        },
      ],
    });
    expect(info[1]!.caplist[0]!.attr).toBe(TapeAttr.RAW);
    expect(reg.scsiInfo()).toEqual([]);
  });
});
