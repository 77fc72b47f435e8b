/**
 * A medium changer on another NDMP server, driven through its SCSI interface (SCSI_OPEN,
 * SCSI_EXECUTE_CDB): the same SMC client code (devices/changer/smc.ts) as `ndmpd changer`,
 * over NDMP instead of a local device. Used to load a drive's next cartridge during a job.
 */
import type { NdmpClient } from "../client/client.ts";
import type { ScsiDevice, ScsiResult } from "../devices/changer/device.ts";
import { moveMedium, readInventory } from "../devices/changer/smc.ts";
import { Message, ScsiFlag } from "../protocol/codes.ts";
import { toBuffer } from "../protocol/xdr/codec.ts";
import { JobError } from "./target.ts";

class NdmpScsiDevice implements ScsiDevice {
  constructor(
    private readonly c: NdmpClient,
    readonly name: string,
  ) {}

  async execute(cdb: Buffer, dataOut: Buffer, dataInLen: number, timeoutMs: number): Promise<ScsiResult> {
    const flags = dataInLen > 0 ? ScsiFlag.DATA_IN : dataOut.length > 0 ? ScsiFlag.DATA_OUT : 0;
    const r = await this.c.request(Message.SCSI_EXECUTE_CDB, { flags, timeout: timeoutMs, datain_len: dataInLen, cdb, dataout: dataOut });
    return { status: r.body.status, dataIn: toBuffer(r.body.datain), sense: toBuffer(r.body.ext_sense), dataOutLen: r.body.dataout_len };
  }

  async reset(): Promise<void> {
    await this.c.request(Message.SCSI_RESET_DEVICE);
  }

  async close(): Promise<void> {
    await this.c.request(Message.SCSI_CLOSE, {}, { allowBodyError: true });
  }
}

/** The library a drive belongs to, and the drive's element, from the server's CONFIG_GET_TAPE_INFO/SCSI_INFO. */
async function driveLibrary(c: NdmpClient, drive: string): Promise<{ changer: string; serial: string; index: number }> {
  const tapes = (await c.request(Message.CONFIG_GET_TAPE_INFO)).body.tape_info ?? [];
  const caps = tapes.flatMap((t: any) => t.caplist).find((cl: any) => toBuffer(cl.device).toString() === drive);
  if (!caps) throw new JobError(`the server has no drive ${drive}`);
  const cap = (name: string) => caps.capability.find((p: any) => toBuffer(p.name).toString() === name)?.value;
  const changer = cap("CHANGER");
  if (changer === undefined) throw new JobError(`drive ${drive} belongs to no library on that server (--slot needs one)`);
  const name = toBuffer(changer).toString();
  const libs = (await c.request(Message.CONFIG_GET_SCSI_INFO)).body.scsi_info ?? [];
  const lib = libs.flatMap((s: any) => s.caplist).find((cl: any) => toBuffer(cl.device).toString() === name);
  const drives = lib?.capability.find((p: any) => toBuffer(p.name).toString() === "DRIVES");
  const index = drives ? toBuffer(drives.value).toString().split(",").indexOf(drive) : 0;
  const serial = cap("SERIAL_NUMBER");
  return { changer: name, serial: serial === undefined ? "" : toBuffer(serial).toString(), index: Math.max(index, 0) };
}

/**
 * Moves storage slot `slot` (1-based) into `drive` on the server of `c`, first putting back the
 * cartridge the drive holds. The drive must be closed. Returns the cartridge's volume tag.
 */
export async function loadRemoteSlot(c: NdmpClient, drive: string, slot: number): Promise<string> {
  const lib = await driveLibrary(c, drive);
  await c.request(Message.SCSI_OPEN, { device: lib.changer });
  const dev = new NdmpScsiDevice(c, lib.changer);
  try {
    const inv = await readInventory(dev);
    const of = (t: string) => inv.elements.filter((e) => e.type === t);
    const se = of("SE")[slot - 1];
    if (!se) throw new JobError(`--slot: ${lib.changer} has slots 1-${of("SE").length}`);
    const dte = of("DTE").find((e) => lib.serial !== "" && e.identifier === lib.serial) ?? of("DTE")[lib.index];
    if (!dte) throw new JobError(`${lib.changer} reports no drive element for ${drive}`);
    const transport = of("MTE")[0]?.address ?? 0;
    if (dte.full && dte.source === se.address) return dte.tag ?? ""; // already there
    if (!se.full) throw new JobError(`slot ${slot} of ${lib.changer} is empty`);
    if (dte.full) {
      const home = of("SE").find((e) => e.address === dte.source && !e.full) ?? of("SE").find((e) => !e.full);
      if (!home) throw new JobError(`${lib.changer}: ${drive} is full and there is no empty slot to unload it to`);
      await moveMedium(dev, transport, dte.address, home.address);
    }
    await moveMedium(dev, transport, se.address, dte.address);
    return se.tag ?? "";
  } finally {
    await dev.close();
  }
}
