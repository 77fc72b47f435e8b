/**
 * The server's devices, built once from the configuration, and who has each one open.
 * A drive is open in at most one session at a time: another session gets DEVICE_BUSY_ERR.
 */
import { existsSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type { TapeConfig } from "../config.ts";
import { TapeAttr } from "../protocol/codes.ts";
import type { DeviceInfo } from "../protocol/xdr/v4.ts";
import type { TapeDevice } from "./tape/device.ts";
import { LinuxStTape } from "./tape/linux-st.ts";
import { createCartridge, VirtualTapeDrive } from "./tape/virtual.ts";

export interface TapeDrive {
  config: TapeConfig;
  device: TapeDevice;
  /** The session holding the drive open, or null. */
  owner: object | null;
}

export class DeviceRegistry {
  readonly tapes = new Map<string, TapeDrive>();

  static async fromConfig(tapes: TapeConfig[]): Promise<DeviceRegistry> {
    const reg = new DeviceRegistry();
    for (const t of tapes) reg.tapes.set(t.name, { config: t, device: await makeTape(t), owner: null });
    return reg;
  }

  /** A drive by its configured name, or by its path (what some DMAs pass). */
  findTape(name: string): TapeDrive | undefined {
    const byName = this.tapes.get(name);
    if (byName) return byName;
    for (const t of this.tapes.values()) if (t.config.path === name) return t;
    return undefined;
  }

  tapeInfo(): DeviceInfo[] {
    return [...this.tapes.values()].map((t) => ({
      model: t.config.type === "virtual" ? "ndmpd virtual tape" : "Linux st tape",
      caplist: [
        {
          device: t.config.name,
          // Our virtual drive rewinds at open unless configured no-rewind; nothing unloads on close.
          attr: (t.config.noRewind ? 0 : TapeAttr.REWIND) | TapeAttr.RAW,
          capability: [
            { name: "EXECUTE_CDB", value: t.config.type === "st" ? "t" : "n" },
            { name: "SERIAL_NUMBER", value: t.config.serial },
            { name: "PATH", value: t.config.path },
          ],
        },
      ],
    }));
  }

  scsiInfo(): DeviceInfo[] {
    return [];
  }
}

async function makeTape(t: TapeConfig): Promise<TapeDevice> {
  if (t.type === "st") return new LinuxStTape({ path: t.path, name: t.name });
  if (!existsSync(t.path)) {
    mkdirSync(dirname(t.path), { recursive: true });
    await createCartridge(t.path, t.capacity !== undefined ? { capacity: t.capacity } : {});
  }
  return new VirtualTapeDrive({ name: t.name, cartridge: t.path, noRewind: t.noRewind });
}
