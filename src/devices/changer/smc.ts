// The client side of SMC: what `ndmpd changer` sends to a changer (virtual or sg) and how it reads
// the replies. Kept apart from the emulation so the CLI works the same on a real library.
import { parseSense, ScsiStatus, type ScsiDevice } from "./device.ts";

export interface ElementStatus {
  type: "MTE" | "SE" | "IE" | "DTE";
  address: number;
  full: boolean;
  /** The element the cartridge was last moved from, when the changer knows (SValid). */
  source: number | null;
  tag: string | null;
  /** DVCID identifier (a drive's serial), if the changer reported one. */
  identifier: string | null;
}

export interface Inventory {
  identity: string;
  elements: ElementStatus[];
}

const TYPES = { 1: "MTE", 2: "SE", 3: "IE", 4: "DTE" } as const;
const TIMEOUT = 300_000;

export class ChangerCommandError extends Error {}

async function run(dev: ScsiDevice, cdb: number[], dataInLen: number): Promise<Buffer> {
  const r = await dev.execute(Buffer.from(cdb), Buffer.alloc(0), dataInLen, TIMEOUT);
  if (r.status === ScsiStatus.GOOD) return r.dataIn;
  const s = parseSense(r.sense);
  const what = s ? `sense key ${hex(s.key)}, ASC/ASCQ ${hex(s.asc)}/${hex(s.ascq)} (${describeSense(s.key, s.asc, s.ascq)})` : `status ${hex(r.status)}`;
  throw new ChangerCommandError(`${dev.name}: command ${hex(cdb[0]!)} failed: ${what}`);
}

function hex(n: number): string {
  return n.toString(16).padStart(2, "0") + "h";
}

export function describeSense(key: number, asc: number, ascq: number): string {
  const known: Record<string, string> = {
    "20/00": "invalid command operation code",
    "21/01": "invalid element address",
    "24/00": "invalid field in CDB",
    "1a/00": "parameter list length error",
    "26/00": "invalid field in parameter list",
    "3b/0d": "medium destination element full",
    "3b/0e": "medium source element empty",
    "53/00": "media load or eject failed",
    "53/02": "medium removal prevented",
    "28/00": "not ready to ready change, medium may have changed",
    "29/00": "power on, reset, or bus device reset occurred",
    "04/00": "logical unit not ready",
  };
  const k = `${asc.toString(16).padStart(2, "0")}/${ascq.toString(16).padStart(2, "0")}`;
  return known[k] ?? (key === 6 ? "unit attention" : "see SPC");
}

/** INQUIRY, then READ ELEMENT STATUS of every element with volume tags and drive identifiers. */
export async function readInventory(dev: ScsiDevice): Promise<Inventory> {
  const inq = await run(dev, [0x12, 0, 0, 0, 96, 0], 96);
  if ((inq[0]! & 0x1f) !== 0x08) throw new ChangerCommandError(`${dev.name} is not a medium changer (device type ${hex(inq[0]! & 0x1f)})`);
  const identity = [inq.subarray(8, 16), inq.subarray(16, 32), inq.subarray(32, 36)].map((b) => b.toString("latin1").trim()).join(" ");
  // Ask once for the size, then for everything.
  const cdb = (alloc: number) => [0xb8, 0x10, 0, 0, 0xff, 0xff, 0x01, (alloc >> 16) & 0xff, (alloc >> 8) & 0xff, alloc & 0xff, 0, 0];
  const head = await run(dev, cdb(8), 8);
  const total = head.length >= 8 ? 8 + head.readUIntBE(5, 3) : 8;
  const data = await run(dev, cdb(total), total);
  return { identity, elements: parseElementStatus(data) };
}

/** Parses READ ELEMENT STATUS data (SMC-3 6.11): header, then pages of descriptors. */
export function parseElementStatus(data: Buffer): ElementStatus[] {
  const out: ElementStatus[] = [];
  if (data.length < 8) return out;
  const end = Math.min(data.length, 8 + data.readUIntBE(5, 3));
  let off = 8;
  while (off + 8 <= end) {
    const type = TYPES[(data[off]! & 0x0f) as 1 | 2 | 3 | 4];
    const pvoltag = (data[off + 1]! & 0x80) !== 0;
    const avoltag = (data[off + 1]! & 0x40) !== 0;
    const descLen = data.readUInt16BE(off + 2);
    const pageEnd = Math.min(end, off + 8 + data.readUIntBE(off + 5, 3));
    off += 8;
    if (!type || descLen < 12) break;
    for (; off + descLen <= pageEnd; off += descLen) {
      const d = data.subarray(off, off + descLen);
      let p = 12;
      let tag: string | null = null;
      if (pvoltag) {
        tag = d.subarray(p, p + 32).toString("latin1").replace(/[\0 ]+$/, "") || null;
        p += 36;
      }
      if (avoltag) p += 36;
      let identifier: string | null = null;
      if (p + 4 <= d.length && d[p + 3]! > 0) identifier = d.subarray(p + 4, p + 4 + d[p + 3]!).toString("latin1").trim();
      out.push({
        type,
        address: d.readUInt16BE(0),
        full: (d[2]! & 0x01) !== 0,
        source: d[9]! & 0x80 ? d.readUInt16BE(10) : null,
        tag,
        identifier,
      });
    }
    off = pageEnd;
  }
  return out;
}

export async function moveMedium(dev: ScsiDevice, transport: number, from: number, to: number): Promise<void> {
  const b = (n: number) => [(n >> 8) & 0xff, n & 0xff];
  await run(dev, [0xa5, 0, ...b(transport), ...b(from), ...b(to), 0, 0, 0, 0], 0);
}

/** mtx-style listing: drives, then slots, then import/export elements. */
export function formatInventory(name: string, inv: Inventory, driveNames: string[] = []): string {
  const of = (t: ElementStatus["type"]) => inv.elements.filter((e) => e.type === t);
  const slotNo = new Map<number, number>();
  of("SE").forEach((e, i) => slotNo.set(e.address, i + 1));
  const lines = [`  Storage Changer ${name}:${of("DTE").length} Drives, ${of("SE").length} Slots ( ${of("IE").length} Import/Export )  [${inv.identity}]`];
  const tag = (e: ElementStatus) => (e.tag ? `:VolumeTag = ${e.tag}` : "");
  of("DTE").forEach((e, i) => {
    const loaded = e.full ? `Full (${e.source !== null ? `Storage Element ${slotNo.get(e.source) ?? `@${e.source}`} Loaded` : "Unknown Storage Element Loaded"})${tag(e)}` : "Empty";
    const extra = [driveNames[i], e.identifier ? `serial ${e.identifier}` : undefined].filter(Boolean).join(", ");
    lines.push(`Data Transfer Element ${i}:${loaded}    @${e.address}${extra ? ` (${extra})` : ""}`);
  });
  of("SE").forEach((e, i) => lines.push(`      Storage Element ${i + 1}:${e.full ? "Full " : "Empty"}${tag(e)}    @${e.address}`));
  of("IE").forEach((e, i) => lines.push(`      Storage Element ${of("SE").length + i + 1} IMPORT/EXPORT:${e.full ? "Full " : "Empty"}${tag(e)}    @${e.address}`));
  return lines.join("\n") + "\n";
}
