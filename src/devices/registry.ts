/**
 * The server's devices, built once from the configuration, and who has each one open.
 * A drive is open in at most one session at a time: another session gets DEVICE_BUSY_ERR.
 */
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import type { ChangerConfig, TapeConfig } from "../config.ts";
import { loadNative } from "../native/index.ts";
import { TapeAttr } from "../protocol/codes.ts";
import type { DeviceInfo } from "../protocol/xdr/v4.ts";
import type { TapeDevice } from "./tape/device.ts";
import { LinuxStTape } from "./tape/linux-st.ts";
import { createCartridge, VirtualTapeDrive } from "./tape/virtual.ts";
import type { ScsiDevice } from "./changer/device.ts";
import { openLinuxSg } from "./changer/linux-sg.ts";
import { VirtualLibrary } from "./changer/virtual.ts";
import { moveMedium } from "./changer/smc.ts";

export interface TapeDrive {
  config: TapeConfig;
  device: TapeDevice;
  /** The session holding the drive open, or null. */
  owner: object | null;
}

/** A SCSI device (medium changer) a DMA can SCSI_OPEN. */
export interface ScsiTarget {
  config: ChangerConfig;
  /** The virtual library, built once (its state lives as long as the server); absent for sg. */
  library?: VirtualLibrary;
  /** The session holding the device open, or null. */
  owner: object | null;
}

export class DeviceRegistry {
  readonly tapes = new Map<string, TapeDrive>();
  readonly changers = new Map<string, ScsiTarget>();

  static async fromConfig(tapes: TapeConfig[], changers: ChangerConfig[] = []): Promise<DeviceRegistry> {
    const reg = new DeviceRegistry();
    for (const t of tapes) reg.tapes.set(t.name, { config: t, device: await makeTape(t), owner: null });
    try {
      await reg.addChangers(changers);
    } catch (error) {
      reg.shutdown();
      throw error;
    }
    return reg;
  }

  private async addChangers(changers: ChangerConfig[]): Promise<void> {
    const reg = this;
    for (const c of changers) {
      const target: ScsiTarget = { config: c, owner: null };
      if (c.type === "virtual") {
        const firstStart = !existsSync(join(c.path, "library.json"));
        target.library = await VirtualLibrary.open({
          name: c.name,
          directory: c.path,
          slots: c.slots,
          importExport: c.importExport,
          addresses: c.addresses,
          capacity: c.capacity,
          barcodePrefix: c.barcodePrefix,
          serial: c.serial,
          drives: c.drives.map((d) => {
            const t = reg.tapes.get(d)!;
            return { name: d, serial: t.config.serial, device: t.device as VirtualTapeDrive };
          }),
        });
        if (c.autoload && firstStart) await autoload(target.library, c);
      }
      reg.changers.set(c.name, target);
    }
  }

  /** Releases what outlives sessions (the virtual libraries' directory locks). */
  shutdown(): void {
    for (const c of this.changers.values()) c.library?.shutdown();
  }

  /** Opens a changer for SCSI commands (no I/O: sg only opens the device node). */
  async openScsi(target: ScsiTarget): Promise<ScsiDevice> {
    if (target.library) return target.library;
    return openLinuxSg(target.config.path, target.config.name);
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
            ...(t.config.path !== undefined ? [{ name: "PATH", value: t.config.path }] : []),
            ...(t.config.changer !== undefined ? [{ name: "CHANGER", value: t.config.changer }] : []),
          ],
        },
      ],
    }));
  }

  scsiInfo(): DeviceInfo[] {
    return [...this.changers.values()].map((c) => ({
      model: c.config.type === "virtual" ? "ndmpd virtual library" : "Linux sg medium changer",
      caplist: [
        {
          device: c.config.name,
          attr: 0,
          capability: [
            { name: "SERIAL_NUMBER", value: c.config.serial },
            { name: "PATH", value: c.config.path },
            ...(c.config.drives.length > 0 ? [{ name: "DRIVES", value: c.config.drives.join(",") }] : []),
          ],
        },
      ],
    }));
  }
}

/** Drive n gets the cartridge of slot n, as an autoloader does: a new library is ready to write. */
async function autoload(lib: VirtualLibrary, c: ChangerConfig): Promise<void> {
  for (let i = 0; i < Math.min(c.drives.length, c.slots); i++) {
    await moveMedium(lib, c.addresses.mte, c.addresses.se + i, c.addresses.dte + i);
  }
}

async function makeTape(t: TapeConfig): Promise<TapeDevice> {
  if (t.type === "st") return new LinuxStTape({ path: t.path!, name: t.name });
  const fsApi = (await loadNative()).fs;
  const lock = fsApi ? (fd: number) => fsApi.tryLockExclusive(fd) : undefined;
  // A drive of a virtual library starts empty; the library loads what its state says.
  if (t.path === undefined) return new VirtualTapeDrive({ name: t.name, noRewind: t.noRewind, lock });
  if (!existsSync(t.path)) {
    mkdirSync(dirname(t.path), { recursive: true });
    await createCartridge(t.path, t.capacity !== undefined ? { capacity: t.capacity } : {});
  }
  return new VirtualTapeDrive({ name: t.name, cartridge: t.path, noRewind: t.noRewind, lock });
}
