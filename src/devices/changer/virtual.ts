// The virtual tape library: a medium changer emulated at the SCSI level (an SMC-3 subset), so a DMA
// drives it with the same CDBs it sends to a real library. Its drives are our virtual tape drives
// (bound by name from [[tape]]) and its cartridges are virtual tape files in the library directory.
//
// Library directory
//   <VOLTAG>.tape   one cartridge file per cartridge, named by its volume tag (barcode), e.g.
//                   NDMP001L8.tape. A cartridge keeps its file wherever it is moved, like a real
//                   cartridge keeps its label. On first start slot n (1-based) gets PREFIX + n as
//                   three digits + "L8" (PREFIX is barcode_prefix, default "NDMP").
//   library.json    where each cartridge is: {version, slots, ie, drives}, each a list with one
//                   entry per element, null (empty) or {tag, source} where source names the element
//                   the cartridge was last moved from ("slot/3", "ie/0", 0-based), or null. Written
//                   atomically (tmp + fsync + rename + directory fsync) after every change.
//   Element addresses come from the configuration, not the state file, so they can be changed
//   between restarts. Growing the library adds empty elements; shrinking it is refused while a
//   dropped element holds a cartridge.
//
// Behaviour worth knowing
// * MOVE MEDIUM slot -> drive loads the cartridge file into the bound VirtualTapeDrive; drive ->
//   anywhere unloads it. A drive that a session holds open refuses the unload with 05h/53h/02h
//   (MEDIUM REMOVAL PREVENTED): what a real library reports when Linux st, which locks the drive
//   door while the device is open, is using the drive.
// * PREVENT ALLOW MEDIUM REMOVAL on the changer prevents moves to import/export elements (taking a
//   cartridge out of the library, SMC-3 6.x), also 05h/53h/02h. It lasts until ALLOW, a reset or a
//   restart (it is not persisted: a real changer forgets it at power-on).
// * Every error is CHECK CONDITION with fixed-format sense (70h), which is what ndmjob parses.
// * Commands run one at a time, in arrival order.
import fs from "node:fs";
import path from "node:path";
import type { VirtualTapeDrive } from "../tape/virtual.ts";
import { createCartridge } from "../tape/virtual.ts";
import { fixedSense, ScsiError, ScsiStatus, SenseKey, type ScsiDevice, type ScsiResult } from "./device.ts";

export const ElementType = { MTE: 1, SE: 2, IE: 3, DTE: 4 } as const;
export type ElementType = (typeof ElementType)[keyof typeof ElementType];

export interface ElementAddresses {
  /** First address of each element type; the elements of a type have consecutive addresses. */
  mte: number;
  se: number;
  ie: number;
  dte: number;
}

export const DEFAULT_ADDRESSES: ElementAddresses = { mte: 0, se: 1000, ie: 10, dte: 500 };

export interface BoundDrive {
  name: string;
  /** Reported as the drive's identifier in READ ELEMENT STATUS (DVCID). */
  serial: string;
  device: VirtualTapeDrive;
}

export interface VirtualLibraryOptions {
  name: string;
  directory: string;
  slots: number;
  importExport: number;
  drives: BoundDrive[];
  serial: string;
  addresses?: ElementAddresses;
  /** Capacity of the cartridges created at first start (default: the virtual tape default). */
  capacity?: number;
  barcodePrefix?: string;
  vendor?: string;
  product?: string;
  revision?: string;
}

interface Medium {
  tag: string;
  /** The address the cartridge was last moved from (SValid), or null. */
  source: number | null;
}

interface Element {
  type: ElementType;
  /** 0-based index within its type. */
  index: number;
  address: number;
  medium: Medium | null;
}

const STATE_FILE = "library.json";
const STATE_VERSION = 1;
const TYPE_KEY: Record<number, "slot" | "ie" | "drive" | "mte"> = { 1: "mte", 2: "slot", 3: "ie", 4: "drive" };
const PAGE_1D = 0x1d;
const PAGE_1E = 0x1e;
const PAGE_1F = 0x1f;
const ALL_PAGES = 0x3f;

/** CDB length by operation code: anything not listed is an invalid opcode. */
const CDB_LENGTH: Record<number, number> = {
  0x00: 6, // TEST UNIT READY
  0x03: 6, // REQUEST SENSE
  0x07: 6, // INITIALIZE ELEMENT STATUS
  0x12: 6, // INQUIRY
  0x15: 6, // MODE SELECT(6)
  0x1a: 6, // MODE SENSE(6)
  0x1e: 6, // PREVENT ALLOW MEDIUM REMOVAL
  0x2b: 10, // POSITION TO ELEMENT
  0x37: 10, // INITIALIZE ELEMENT STATUS WITH RANGE
  0x55: 10, // MODE SELECT(10)
  0x5a: 10, // MODE SENSE(10)
  0xa5: 12, // MOVE MEDIUM
  0xa6: 12, // EXCHANGE MEDIUM
  0xb8: 12, // READ ELEMENT STATUS
};

/** A failed command: becomes CHECK CONDITION with this sense. */
class Check extends Error {
  constructor(readonly sense: Buffer) {
    super("check condition");
  }
}
const illegal = (asc: number, ascq: number, cdbByte?: number) =>
  new Check(fixedSense(SenseKey.ILLEGAL_REQUEST, asc, ascq, cdbByte === undefined ? undefined : { byte: cdbByte, cdb: true }));
const invalidField = (cdbByte: number) => illegal(0x24, 0x00, cdbByte);
const invalidElement = (cdbByte: number) => illegal(0x21, 0x01, cdbByte);
const SOURCE_EMPTY = () => illegal(0x3b, 0x0e);
const DESTINATION_FULL = () => illegal(0x3b, 0x0d);
const REMOVAL_PREVENTED = () => illegal(0x53, 0x02);

export class VirtualLibrary implements ScsiDevice {
  readonly name: string;
  readonly directory: string;
  readonly serial: string;
  readonly addresses: ElementAddresses;
  private readonly drives: BoundDrive[];
  private readonly elements: Element[];
  private readonly byAddress = new Map<number, Element>();
  private readonly identity: { vendor: string; product: string; revision: string };
  private prevented = false;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(options: VirtualLibraryOptions, elements: Element[]) {
    this.name = options.name;
    this.directory = options.directory;
    this.serial = options.serial;
    this.addresses = options.addresses ?? DEFAULT_ADDRESSES;
    this.drives = options.drives;
    this.elements = elements;
    for (const e of elements) this.byAddress.set(e.address, e);
    this.identity = {
      vendor: options.vendor ?? "NDMPD",
      product: options.product ?? "VIRTUAL LIBRARY",
      revision: options.revision ?? "0001",
    };
  }

  /**
   * Opens (and on first start creates) the library in its directory, and puts the cartridges the
   * state file says are in drives into the bound drives.
   */
  static async open(options: VirtualLibraryOptions): Promise<VirtualLibrary> {
    checkGeometry(options);
    const addresses = options.addresses ?? DEFAULT_ADDRESSES;
    fs.mkdirSync(options.directory, { recursive: true });
    acquireLock(options.directory, options.name);
    const counts = { mte: 1, slot: options.slots, ie: options.importExport, drive: options.drives.length };
    const elements: Element[] = [];
    const add = (type: ElementType, first: number, n: number) => {
      for (let i = 0; i < n; i++) elements.push({ type, index: i, address: first + i, medium: null });
    };
    add(ElementType.MTE, addresses.mte, 1);
    add(ElementType.SE, addresses.se, counts.slot);
    add(ElementType.IE, addresses.ie, counts.ie);
    add(ElementType.DTE, addresses.dte, counts.drive);
    const lib = new VirtualLibrary(options, elements);
    try {
      await lib.load(options);
    } catch (error) {
      releaseLock(options.directory);
      throw error;
    }
    return lib;
  }

  private async load(options: VirtualLibraryOptions): Promise<void> {
    const lib = this;
    const elements = this.elements;

    const statePath = path.join(options.directory, STATE_FILE);
    if (fs.existsSync(statePath)) {
      lib.restoreState(JSON.parse(fs.readFileSync(statePath, "utf8")), statePath);
    } else {
      const prefix = options.barcodePrefix ?? "NDMP";
      for (const e of lib.ofType(ElementType.SE)) e.medium = { tag: `${prefix}${String(e.index + 1).padStart(3, "0")}L8`, source: null };
    }
    // Every cartridge the state names has a file (first start, or one deleted by hand).
    for (const e of elements) {
      if (!e.medium) continue;
      const file = lib.cartridgeFile(e.medium.tag);
      if (!fs.existsSync(file)) await createCartridge(file, options.capacity !== undefined ? { capacity: options.capacity } : {});
    }
    for (const e of lib.ofType(ElementType.DTE)) {
      const drive = lib.drives[e.index]!.device;
      const want = e.medium ? lib.cartridgeFile(e.medium.tag) : null;
      if (drive.cartridgePath === want) continue;
      if (drive.cartridgePath !== null) await drive.unloadCartridge();
      if (want !== null) await drive.loadCartridge(want);
    }
    lib.saveState();
  }

  /** Lets go of the library directory (server stop, end of a CLI command). */
  shutdown(): void {
    releaseLock(this.directory);
  }

  /** The file of the cartridge with this volume tag. */
  cartridgeFile(tag: string): string {
    return path.join(this.directory, `${tag}.tape`);
  }

  /** A snapshot for the CLI and tests: every element with its cartridge. */
  inventory(): Array<{ type: "MTE" | "SE" | "IE" | "DTE"; index: number; address: number; tag: string | null; source: number | null; drive?: string }> {
    const names = { 1: "MTE", 2: "SE", 3: "IE", 4: "DTE" } as const;
    return this.elements.map((e) => ({
      type: names[e.type],
      index: e.index,
      address: e.address,
      tag: e.medium?.tag ?? null,
      source: e.medium?.source ?? null,
      ...(e.type === ElementType.DTE ? { drive: this.drives[e.index]!.name } : {}),
    }));
  }

  execute(cdb: Buffer, dataOut: Buffer, dataInLen: number, _timeoutMs: number): Promise<ScsiResult> {
    return this.exclusive(async () => {
      try {
        const data = await this.run(cdb, dataOut);
        const takesData = cdb[0] === 0x15 || cdb[0] === 0x55;
        return { status: ScsiStatus.GOOD, dataIn: data.subarray(0, Math.max(0, dataInLen)), sense: Buffer.alloc(0), dataOutLen: takesData ? dataOut.length : 0 };
      } catch (error) {
        if (error instanceof Check) return { status: ScsiStatus.CHECK_CONDITION, dataIn: Buffer.alloc(0), sense: error.sense, dataOutLen: 0 };
        throw error;
      }
    });
  }

  reset(): Promise<void> {
    return this.exclusive(async () => {
      this.prevented = false;
    });
  }

  /** Nothing to let go of: the library lives as long as the server. */
  async close(): Promise<void> {}

  // ---- command dispatch ----

  private async run(cdb: Buffer, dataOut: Buffer): Promise<Buffer> {
    if (cdb.length === 0) throw illegal(0x20, 0x00);
    const op = cdb[0]!;
    const length = CDB_LENGTH[op];
    if (length === undefined) throw illegal(0x20, 0x00, 0);
    // A CDB of the wrong size for its operation code cannot be parsed safely.
    if (cdb.length !== length) throw invalidField(0);
    // NACA (control byte bit 2) asks for ACA handling, which this device does not do.
    if (cdb[length - 1]! & 0x04) throw invalidField(length - 1);
    switch (op) {
      case 0x00:
        return Buffer.alloc(0);
      case 0x03:
        return this.requestSense(cdb);
      case 0x07:
        return this.initializeElementStatus(null);
      case 0x37:
        return this.initializeElementStatus(cdb);
      case 0x12:
        return this.inquiry(cdb);
      case 0x1a:
      case 0x5a:
        return this.modeSense(cdb);
      case 0x15:
      case 0x55:
        return this.modeSelect(cdb, dataOut);
      case 0x1e:
        return this.preventAllow(cdb);
      case 0x2b:
        return this.positionToElement(cdb);
      case 0xa5:
        return this.moveMedium(cdb);
      case 0xa6:
        return this.exchangeMedium(cdb);
      case 0xb8:
        return this.readElementStatus(cdb);
    }
    throw illegal(0x20, 0x00, 0);
  }

  // ---- INQUIRY ----

  private inquiry(cdb: Buffer): Buffer {
    const evpd = cdb[1]! & 0x01;
    if (cdb[1]! & 0xfe) throw invalidField(1); // CMDDT (obsolete) and reserved bits
    const page = cdb[2]!;
    const alloc = cdb.readUInt16BE(3);
    if (!evpd) {
      if (page !== 0) throw invalidField(2);
      const d = Buffer.alloc(36, 0);
      d[0] = 0x08; // peripheral qualifier 0, device type 08h: medium changer
      d[1] = 0x80; // RMB: cartridges can be taken out (import/export)
      d[2] = 0x05; // SPC-3
      d[3] = 0x02; // response data format 2
      d[4] = d.length - 5;
      ascii(this.identity.vendor, 8).copy(d, 8);
      ascii(this.identity.product, 16).copy(d, 16);
      ascii(this.identity.revision, 4).copy(d, 32);
      return d.subarray(0, alloc);
    }
    return vpdPage(page, this.serial, this.identity.vendor, 0x08).subarray(0, alloc);
  }

  private requestSense(cdb: Buffer): Buffer {
    // Every CHECK CONDITION already carried its sense (autosense), so nothing is pending.
    if (cdb[1]! & 0x01) throw invalidField(1); // descriptor format: only fixed format here
    return fixedSense(SenseKey.NO_SENSE, 0, 0).subarray(0, cdb[4]!);
  }

  // ---- MODE SENSE / MODE SELECT ----

  private modePage(code: number): Buffer {
    const a = this.addresses;
    const n = (t: ElementType) => this.ofType(t).length;
    if (code === PAGE_1D) {
      const p = Buffer.alloc(20);
      p[0] = PAGE_1D;
      p[1] = 0x12;
      p.writeUInt16BE(a.mte, 2);
      p.writeUInt16BE(1, 4);
      p.writeUInt16BE(a.se, 6);
      p.writeUInt16BE(n(ElementType.SE), 8);
      p.writeUInt16BE(a.ie, 10);
      p.writeUInt16BE(n(ElementType.IE), 12);
      p.writeUInt16BE(a.dte, 14);
      p.writeUInt16BE(n(ElementType.DTE), 16);
      return p;
    }
    if (code === PAGE_1E) return Buffer.from([PAGE_1E, 0x02, 0x00, 0x00]); // one transport, cannot rotate
    const p = Buffer.alloc(20);
    p[0] = PAGE_1F;
    p[1] = 0x12;
    p[2] = 0x0e; // StorDT, StorI/E, StorST: the transport itself holds nothing between moves
    // Moves and exchanges between slots, import/export and drives, in any direction (bits ToDT,
    // ToI/E, ToST); nothing to or from the transport.
    p[5] = p[6] = p[7] = 0x0e;
    p[13] = p[14] = p[15] = 0x0e;
    return p;
  }

  private modeSense(cdb: Buffer): Buffer {
    const ten = cdb[0] === 0x5a;
    if (cdb[1]! & (ten ? 0xe7 : 0xf7)) throw invalidField(1); // only DBD (and LLBAA for (10))
    const pc = cdb[2]! >> 6;
    const code = cdb[2]! & 0x3f;
    const subpage = cdb[3]!;
    const alloc = ten ? cdb.readUInt16BE(7) : cdb[4]!;
    if (pc === 3) throw illegal(0x39, 0x00); // SAVING PARAMETERS NOT SUPPORTED
    if (subpage !== 0 && !(code === ALL_PAGES && subpage === 0xff)) throw invalidField(3);
    let codes: number[];
    if (code === ALL_PAGES) codes = [PAGE_1D, PAGE_1E, PAGE_1F];
    else if (code === PAGE_1D || code === PAGE_1E || code === PAGE_1F) codes = [code];
    else throw invalidField(2);
    const pages = codes.map((c) => {
      const p = this.modePage(c);
      if (pc === 1) p.fill(0, 2); // changeable values: nothing can be changed
      return p;
    });
    // No block descriptors whatever DBD says: a changer has no logical blocks.
    const body = Buffer.concat(pages);
    const header = Buffer.alloc(ten ? 8 : 4);
    if (ten) header.writeUInt16BE(header.length - 2 + body.length, 0);
    else header[0] = header.length - 1 + body.length;
    return Buffer.concat([header, body]).subarray(0, alloc);
  }

  /** Accepted only when it changes nothing (no page has changeable fields). */
  private modeSelect(cdb: Buffer, dataOut: Buffer): Buffer {
    const ten = cdb[0] === 0x55;
    if (!(cdb[1]! & 0x10)) throw invalidField(1); // PF: the pages must be in the standard format
    if (cdb[1]! & 0x01) throw invalidField(1); // SP: nothing can be saved
    const length = ten ? cdb.readUInt16BE(7) : cdb[4]!;
    const headerLen = ten ? 8 : 4;
    if (length === 0) return Buffer.alloc(0);
    if (length < headerLen || dataOut.length < length) throw illegal(0x1a, 0x00); // PARAMETER LIST LENGTH ERROR
    const list = dataOut.subarray(0, length);
    const bdLen = ten ? list.readUInt16BE(6) : list[3]!;
    let off = headerLen + bdLen;
    if (off > length) throw illegal(0x1a, 0x00);
    const badParameter = () => new Check(fixedSense(SenseKey.ILLEGAL_REQUEST, 0x26, 0x00, { byte: off, cdb: false }));
    if (bdLen !== 0) throw badParameter();
    while (off < length) {
      if (off + 2 > length) throw illegal(0x1a, 0x00);
      const code = list[off]! & 0x3f;
      const pageLen = list[off + 1]! + 2;
      if (off + pageLen > length) throw illegal(0x1a, 0x00);
      if (code !== PAGE_1D && code !== PAGE_1E && code !== PAGE_1F) throw badParameter();
      const current = this.modePage(code);
      if (pageLen !== current.length || !list.subarray(off + 2, off + pageLen).equals(current.subarray(2))) throw badParameter();
      off += pageLen;
    }
    return Buffer.alloc(0);
  }

  // ---- element commands ----

  private preventAllow(cdb: Buffer): Buffer {
    const prevent = cdb[4]! & 0x03;
    if (prevent > 1) throw invalidField(4);
    this.prevented = prevent === 1;
    return Buffer.alloc(0);
  }

  private initializeElementStatus(cdb: Buffer | null): Buffer {
    if (cdb && cdb[1]! & 0x01) {
      // WITH RANGE: the starting address must exist; the count may run past the last element.
      const start = cdb.readUInt16BE(2);
      if (!this.byAddress.has(start)) throw invalidElement(2);
    }
    // The inventory is always exact (no scanner to run), so there is nothing to do.
    return Buffer.alloc(0);
  }

  private positionToElement(cdb: Buffer): Buffer {
    this.transport(cdb, 2);
    this.element(cdb, 4);
    if (cdb[8]! & 0x01) throw invalidField(8); // INVERT: the transport cannot rotate
    return Buffer.alloc(0);
  }

  private async moveMedium(cdb: Buffer): Promise<Buffer> {
    this.transport(cdb, 2);
    const from = this.storage(cdb, 4);
    const to = this.storage(cdb, 6);
    if (cdb[10]! & 0x01) throw invalidField(10); // INVERT
    if (!from.medium) throw SOURCE_EMPTY();
    if (to.medium) throw DESTINATION_FULL();
    this.checkRemovable(from, to);
    const medium = from.medium;
    await this.takeOut(from);
    try {
      await this.putIn(to, medium);
    } catch (error) {
      await this.putIn(from, medium).catch(() => undefined); // back where it was
      throw error;
    }
    from.medium = null;
    to.medium = { tag: medium.tag, source: this.newSource(from, medium) };
    this.saveStateOrFail();
    return Buffer.alloc(0);
  }

  /** source -> first destination, and what was there -> second destination (SMC EXCHANGE MEDIUM). */
  private async exchangeMedium(cdb: Buffer): Promise<Buffer> {
    this.transport(cdb, 2);
    const src = this.storage(cdb, 4);
    const dst1 = this.storage(cdb, 6);
    const dst2 = this.storage(cdb, 8);
    if (cdb[10]! & 0x03) throw invalidField(10); // INV1, INV2
    if (!src.medium || !dst1.medium) throw SOURCE_EMPTY();
    if (src === dst1) throw invalidElement(6);
    if (dst2.medium && dst2 !== src) throw DESTINATION_FULL();
    this.checkRemovable(src, dst1);
    this.checkRemovable(dst1, dst2);
    const a = src.medium;
    const b = dst1.medium;
    await this.takeOut(src);
    await this.takeOut(dst1);
    await this.putIn(dst1, a);
    await this.putIn(dst2, b);
    src.medium = null;
    dst1.medium = { tag: a.tag, source: this.newSource(src, a) };
    dst2.medium = { tag: b.tag, source: this.newSource(dst1, b) };
    this.saveStateOrFail();
    return Buffer.alloc(0);
  }

  private readElementStatus(cdb: Buffer): Buffer {
    const volTag = (cdb[1]! & 0x10) !== 0;
    const typeCode = cdb[1]! & 0x0f;
    if (typeCode > 4) throw invalidField(1);
    const start = cdb.readUInt16BE(2);
    const count = cdb.readUInt16BE(4);
    const dvcid = (cdb[6]! & 0x01) !== 0;
    if (cdb[6]! & 0xfc) throw invalidField(6);
    const alloc = cdb.readUIntBE(7, 3);
    const chosen = this.elements
      .filter((e) => (typeCode === 0 || e.type === typeCode) && e.address >= start)
      .sort((x, y) => x.address - y.address)
      .slice(0, count);
    if (chosen.length === 0 && count > 0) throw invalidElement(2);

    // One element status page per run of elements of one type, in address order.
    const pages: Buffer[] = [];
    for (let i = 0; i < chosen.length; ) {
      let j = i;
      while (j < chosen.length && chosen[j]!.type === chosen[i]!.type) j++;
      pages.push(this.statusPage(chosen.slice(i, j), volTag, dvcid));
      i = j;
    }
    const body = Buffer.concat(pages);
    const header = Buffer.alloc(8);
    header.writeUInt16BE(chosen[0]?.address ?? start, 0);
    header.writeUInt16BE(chosen.length, 2);
    // The full size, even when the allocation length cuts the report short: a DMA asks again.
    header.writeUIntBE(body.length, 5, 3);
    return Buffer.concat([header, body]).subarray(0, alloc);
  }

  private statusPage(elements: Element[], volTag: boolean, dvcid: boolean): Buffer {
    const type = elements[0]!.type;
    const ids = elements.map((e) => (dvcid && e.type === ElementType.DTE ? Buffer.from(this.drives[e.index]!.serial, "latin1") : Buffer.alloc(0)));
    const idSpace = Math.ceil(Math.max(0, ...ids.map((b) => b.length)) / 4) * 4;
    const descLen = 12 + (volTag ? 36 : 0) + (dvcid ? 4 + idSpace : 0);
    const page = Buffer.alloc(8 + descLen * elements.length);
    page[0] = type;
    page[1] = volTag ? 0x80 : 0; // PVolTag; no alternate volume tags
    page.writeUInt16BE(descLen, 2);
    page.writeUIntBE(descLen * elements.length, 5, 3);
    elements.forEach((e, i) => {
      const d = page.subarray(8 + i * descLen, 8 + (i + 1) * descLen);
      d.writeUInt16BE(e.address, 0);
      let flags = e.medium ? 0x01 : 0; // FULL
      if (type === ElementType.IE) flags |= 0x20 | 0x10; // INENAB, EXENAB (IMPEXP 0: the changer put it there)
      // ACCESS: the transport can reach it; not a drive whose tape a session holds open.
      if (type !== ElementType.MTE && !(type === ElementType.DTE && this.driveInUse(e))) flags |= 0x08;
      d[2] = flags;
      if (e.medium && e.medium.source !== null) {
        d[9] = 0x80; // SVALID
        d.writeUInt16BE(e.medium.source, 10);
      }
      let off = 12;
      if (volTag) {
        if (e.medium) ascii(e.medium.tag, 32).copy(d, off); // then 2 reserved and a sequence number of 0
        off += 36;
      }
      if (dvcid) {
        const id = ids[i]!;
        if (id.length > 0) {
          d[off] = 0x02; // code set: ASCII
          d[off + 1] = 0x00; // identifier type: vendor specific (the drive's serial number)
          d[off + 3] = id.length;
          id.copy(d, off + 4);
        }
      }
    });
    return page;
  }

  // ---- helpers ----

  private ofType(type: ElementType): Element[] {
    return this.elements.filter((e) => e.type === type);
  }

  /** The transport element address field: ours, or 0 (the default transport). */
  private transport(cdb: Buffer, at: number): void {
    const address = cdb.readUInt16BE(at);
    if (address !== 0 && this.byAddress.get(address)?.type !== ElementType.MTE) throw invalidElement(at);
  }

  private element(cdb: Buffer, at: number): Element {
    const e = this.byAddress.get(cdb.readUInt16BE(at));
    if (!e) throw invalidElement(at);
    return e;
  }

  /** A slot, import/export element or drive: the transport holds nothing between moves. */
  private storage(cdb: Buffer, at: number): Element {
    const e = this.element(cdb, at);
    if (e.type === ElementType.MTE) throw invalidElement(at);
    return e;
  }

  private driveInUse(e: Element): boolean {
    return e.type === ElementType.DTE && this.drives[e.index]!.device.openMode !== null;
  }

  private checkRemovable(from: Element, to: Element): void {
    if (this.driveInUse(from)) throw REMOVAL_PREVENTED();
    if (this.prevented && to.type === ElementType.IE) throw REMOVAL_PREVENTED();
  }

  /** SValid/source: where the cartridge came from, but a drive-to-drive move keeps its home slot. */
  private newSource(from: Element, medium: Medium): number | null {
    if (from.type === ElementType.DTE && medium.source !== null) return medium.source;
    return from.address;
  }

  private async takeOut(e: Element): Promise<void> {
    if (e.type !== ElementType.DTE) return;
    try {
      await this.drives[e.index]!.device.unloadCartridge();
    } catch {
      throw new Check(fixedSense(SenseKey.HARDWARE_ERROR, 0x53, 0x00)); // MEDIA LOAD OR EJECT FAILED
    }
  }

  private async putIn(e: Element, medium: Medium): Promise<void> {
    if (e.type !== ElementType.DTE) return;
    try {
      await this.drives[e.index]!.device.loadCartridge(this.cartridgeFile(medium.tag));
    } catch {
      throw new Check(fixedSense(SenseKey.HARDWARE_ERROR, 0x53, 0x00)); // the cartridge file is missing or damaged
    }
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  // ---- state file ----

  private restoreState(raw: unknown, file: string): void {
    const bad = (why: string) => new ScsiError("IO", `${file}: ${why}`);
    const st = raw as { version?: unknown; slots?: unknown; ie?: unknown; drives?: unknown };
    if (typeof st !== "object" || st === null || st.version !== STATE_VERSION) throw bad(`not a version ${STATE_VERSION} library state file`);
    const parseSource = (s: unknown): number | null => {
      if (s === null || s === undefined) return null;
      const m = typeof s === "string" ? /^(slot|ie|drive)\/(\d+)$/.exec(s) : null;
      if (!m) throw bad(`bad source ${JSON.stringify(s)}`);
      const type = { slot: ElementType.SE, ie: ElementType.IE, drive: ElementType.DTE }[m[1] as "slot" | "ie" | "drive"];
      return this.ofType(type)[Number(m[2])]?.address ?? null; // an element since removed: no source
    };
    const seen = new Set<string>();
    for (const [key, type] of [["slots", ElementType.SE], ["ie", ElementType.IE], ["drives", ElementType.DTE]] as const) {
      const list = st[key];
      if (!Array.isArray(list)) throw bad(`${key} must be a list`);
      const here = this.ofType(type);
      list.forEach((entry: unknown, i: number) => {
        if (entry === null) return;
        const m = entry as { tag?: unknown; source?: unknown };
        if (typeof m.tag !== "string" || !/^[\x21-\x7e]{1,32}$/.test(m.tag) || m.tag.includes("/")) throw bad(`${key}[${i}]: bad volume tag`);
        if (seen.has(m.tag)) throw bad(`volume tag ${m.tag} is in two places`);
        seen.add(m.tag);
        const e = here[i];
        if (!e) throw bad(`${key}[${i}] holds ${m.tag} but the configuration has only ${here.length}; move it first or enlarge the library`);
        e.medium = { tag: m.tag, source: parseSource(m.source) };
      });
    }
  }

  private saveStateOrFail(): void {
    try {
      this.saveState();
    } catch {
      throw new Check(fixedSense(SenseKey.HARDWARE_ERROR, 0x44, 0x00)); // INTERNAL TARGET FAILURE
    }
  }

  /** Writes library.json atomically: a crash leaves the old or the new state, never a torn one. */
  saveState(): void {
    const name = (address: number | null): string | null => {
      if (address === null) return null;
      const e = this.byAddress.get(address);
      return e ? `${TYPE_KEY[e.type]}/${e.index}` : null;
    };
    const list = (type: ElementType) => this.ofType(type).map((e) => (e.medium ? { tag: e.medium.tag, source: name(e.medium.source) } : null));
    const text = JSON.stringify({ version: STATE_VERSION, slots: list(ElementType.SE), ie: list(ElementType.IE), drives: list(ElementType.DTE) }, null, 1) + "\n";
    const file = path.join(this.directory, STATE_FILE);
    const tmp = `${file}.tmp`;
    const fd = fs.openSync(tmp, "w", 0o644);
    try {
      fs.writeSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
    syncDirectory(this.directory);
  }
}

/** Element counts and address ranges must fit in 16 bits and must not overlap. */
export function checkGeometry(o: { slots: number; importExport: number; drives: unknown[]; addresses?: ElementAddresses }): void {
  const a = o.addresses ?? DEFAULT_ADDRESSES;
  const ranges: Array<[string, number, number]> = [
    ["transport", a.mte, 1],
    ["slots", a.se, o.slots],
    ["import/export", a.ie, o.importExport],
    ["drives", a.dte, o.drives.length],
  ];
  for (const [what, first, n] of ranges) {
    if (!Number.isInteger(first) || first < 0 || first + n - 1 > 0xffff) throw new ScsiError("ILLEGAL_ARGS", `${what}: addresses ${first}..${first + n - 1} do not fit in 0..65535`);
  }
  for (let i = 0; i < ranges.length; i++) {
    for (let j = i + 1; j < ranges.length; j++) {
      const [w1, f1, n1] = ranges[i]!;
      const [w2, f2, n2] = ranges[j]!;
      if (n1 > 0 && n2 > 0 && f1 < f2 + n2 && f2 < f1 + n1) throw new ScsiError("ILLEGAL_ARGS", `element addresses of ${w1} and ${w2} overlap`);
    }
  }
}

/** Space-padded ASCII of exactly `length` bytes (SCSI identification strings). */
function ascii(s: string, length: number): Buffer {
  const b = Buffer.alloc(length, 0x20);
  b.write(s.replace(/[^\x20-\x7e]/g, "?").slice(0, length), "latin1");
  return b;
}

/**
 * INQUIRY vital product data pages shared by the changer and the virtual drive: 00h (supported
 * pages), 80h (unit serial number), 83h (device identification: a T10 vendor ID designator).
 * An unknown page is an invalid field (byte 2).
 */
export function vpdPage(page: number, serial: string, vendor: string, deviceType: number): Buffer {
  let body: Buffer;
  if (page === 0x00) body = Buffer.from([0x00, 0x80, 0x83]);
  else if (page === 0x80) body = Buffer.from(serial, "latin1");
  else if (page === 0x83) {
    const id = Buffer.concat([ascii(vendor, 8), Buffer.from(serial, "latin1")]);
    body = Buffer.concat([Buffer.from([0x02, 0x01, 0x00, id.length]), id]); // ASCII, LU, T10 vendor ID
  } else throw invalidField(2);
  const head = Buffer.from([deviceType, page, 0, 0]);
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([head, body]);
}

/**
 * INQUIRY for other emulated devices (the virtual tape drive answers TAPE_EXECUTE_CDB with it):
 * standard data or a VPD page, and CHECK CONDITION for any other CDB.
 */
export function emulatedInquiry(
  cdb: Buffer,
  id: { deviceType: number; vendor: string; product: string; revision: string; serial: string; removable: boolean },
): { status: number; data: Buffer; sense: Buffer } {
  try {
    if (cdb.length !== 6 || cdb[0] !== 0x12) throw illegal(0x20, 0x00, 0);
    if (cdb[5]! & 0x04) throw invalidField(5);
    if (cdb[1]! & 0xfe) throw invalidField(1);
    const alloc = cdb.readUInt16BE(3);
    if (cdb[1]! & 0x01) return { status: ScsiStatus.GOOD, data: vpdPage(cdb[2]!, id.serial, id.vendor, id.deviceType).subarray(0, alloc), sense: Buffer.alloc(0) };
    if (cdb[2] !== 0) throw invalidField(2);
    const d = Buffer.alloc(36);
    d[0] = id.deviceType;
    d[1] = id.removable ? 0x80 : 0;
    d[2] = 0x05;
    d[3] = 0x02;
    d[4] = d.length - 5;
    ascii(id.vendor, 8).copy(d, 8);
    ascii(id.product, 16).copy(d, 16);
    ascii(id.revision, 4).copy(d, 32);
    return { status: ScsiStatus.GOOD, data: d.subarray(0, alloc), sense: Buffer.alloc(0) };
  } catch (error) {
    if (error instanceof Check) return { status: ScsiStatus.CHECK_CONDITION, data: Buffer.alloc(0), sense: error.sense };
    throw error;
  }
}

/**
 * One process at a time owns a library directory (the server, or `ndmpd changer` while the server
 * is stopped): two would overwrite each other's state. library.lock holds the owner's pid; a lock
 * whose process is gone is stale and taken over.
 */
function acquireLock(directory: string, name: string): void {
  const file = path.join(directory, "library.lock");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, `${process.pid}\n`, { flag: "wx", mode: 0o644 });
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw new ScsiError("IO", `${name}: cannot lock ${file}: ${String(error)}`);
    }
    const pid = Number.parseInt(fs.readFileSync(file, "utf8"), 10);
    if (Number.isInteger(pid) && pid > 0 && processAlive(pid)) {
      throw new ScsiError("BUSY", `library ${name} (${directory}) is in use by process ${pid}${pid === process.pid ? " (this one)" : ""}`);
    }
    fs.rmSync(file, { force: true });
  }
  throw new ScsiError("BUSY", `library ${name}: cannot take over the lock ${file}`);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function releaseLock(directory: string): void {
  const file = path.join(directory, "library.lock");
  try {
    if (Number.parseInt(fs.readFileSync(file, "utf8"), 10) === process.pid) fs.rmSync(file, { force: true });
  } catch {
    // already gone
  }
}

function syncDirectory(directory: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(directory, "r");
    fs.fsyncSync(fd);
  } catch {
    // some filesystems refuse fsync on directories; the file itself was synced
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
