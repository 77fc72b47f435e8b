/**
 * The SCSI service and the virtual library against real peers: ndmjob as the DMA of a robot
 * (query, load, unload, move, export, import, init-elem-status, -Z), a backup that spans two
 * cartridges through the robot and its restore, the SCSI service's open rules and CDB replies
 * through our client, and the `ndmpd changer` command line. Everything runs the compiled binary.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NdmpClientError, type NdmpClient } from "../../src/client/client.ts";
import { parseSense } from "../../src/devices/changer/device.ts";
import { parseElementStatus } from "../../src/devices/changer/smc.ts";
import { ErrorCode, Message, ScsiFlag, TapeOpenMode } from "../../src/protocol/codes.ts";
import { dma, seededBytes } from "../helpers/dma.ts";
import { createNetns, type Netns } from "../helpers/netns.ts";
import { jobSucceeded, ndmjob, parseIndex } from "../helpers/ndmjob.ts";
import { BINARY, havePeers } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";
import { compareTrees } from "../helpers/tree.ts";

/** A server with one bound drive and a 4-slot library of 1 MiB cartridges; "$DIR" = server dir. */
function libraryConfig(listen: string): string {
  return `[server]
listen = "${listen}"
state_dir = "$DIR/state"
auth_failure_delay_ms = 0
[[user]]
name = "${USER}"
password = "${PASSWORD}"
[[tape]]
name = "vt0"
serial = "VT0-SERIAL"
[[tape]]
name = "loose"
path = "$DIR/loose.tape"
[[changer]]
name = "lib0"
path = "$DIR/lib0"
slots = 4
import_export = 1
drives = ["vt0"]
capacity = "1MiB"
serial = "LIB0-SERIAL"
`;
}

interface QrElement {
  address: number;
  type: string;
  full: boolean;
  tag: string | null;
  src: number | null;
}

/** The "Status" block of `ndmjob -q -R ... -r NAME`, element by element. */
function parseQr(out: string): QrElement[] {
  const els: QrElement[] = [];
  for (const line of out.split("\n")) {
    let m;
    if ((m = /^QR "\s+\d+\s+@(\d+)\s+(\w+)\s+(Full|Empty)(?:\s+PVolTag\(([^,]*),#\d+\))?/.exec(line))) {
      els.push({ address: Number(m[1]), type: m[2]!, full: m[3] === "Full", tag: m[4] ?? null, src: null });
    } else if ((m = /^QR "\s+SValid\(src=(\d+)/.exec(line)) && els.length > 0) {
      els[els.length - 1]!.src = Number(m[1]);
    }
  }
  return els;
}

const okRobot = (out: string) => out.includes('SESS "Operation complete"') && !out.includes("had problems");

const ready = havePeers("binary", "ndmjob", "unshare");

describe.runIf(ready)("a virtual library driven by ndmjob", () => {
  let ns: Netns;
  let srv: RunningServer;
  const W = mkdtempSync(join(tmpdir(), "ndmpd-changer-"));
  const SRC = join(W, "src");
  const A = `127.0.0.1:10000/4,${USER},${PASSWORD}`;
  const R = ["-R", A, "-r", "lib0"];

  async function inventory(): Promise<Map<number, QrElement>> {
    const r = await ndmjob(ns, ["-q", ...R], 30_000);
    expect(r.stdout).not.toContain("ERROR");
    return new Map(parseQr(r.stdout).map((e) => [e.address, e]));
  }
  /** address -> volume tag (or null), for the elements that matter. */
  async function where(): Promise<Record<number, string | null>> {
    const inv = await inventory();
    const out: Record<number, string | null> = {};
    for (const a of [10, 500, 1000, 1001, 1002, 1003]) out[a] = inv.get(a)!.full ? inv.get(a)!.tag : null;
    return out;
  }
  async function robot(...opts: string[]): Promise<void> {
    const r = await ndmjob(ns, [...opts, ...R, "-v"], 30_000);
    expect(okRobot(r.stdout), r.stdout).toBe(true);
  }

  beforeAll(async () => {
    ns = await createNetns();
    // About 1.5 MB: more than one 1 MiB cartridge (LEOM at 960 KiB), less than two.
    mkdirSync(join(SRC, "sub", "deeper"), { recursive: true });
    for (let i = 0; i < 5; i++) writeFileSync(join(SRC, `f${i}.bin`), seededBytes(280_000, i));
    writeFileSync(join(SRC, "sub", "a.txt"), "alpha\n");
    writeFileSync(join(SRC, "sub", "deeper", "b.txt"), "beta\n".repeat(1000));
    srv = await startServer({ netns: ns, config: libraryConfig("127.0.0.1:10000") });
  }, 60_000);

  afterAll(async () => {
    await srv?.stop();
    await ns?.stop();
    rmSync(W, { recursive: true, force: true });
  });

  it("ndmjob -q shows the changer in SCSI_INFO and our inventory", async () => {
    const r = await ndmjob(ns, ["-q", ...R], 30_000);
    expect(r.stdout).toContain('QR "    device     lib0"');
    expect(r.stdout).toContain("SERIAL_NUMBER=LIB0-SERIAL");
    expect(r.stdout).toContain(`QR "    'NDMPD   VIRTUAL LIBRARY 0001'"`);
    expect(r.stdout).toContain('QR "     slots 4@1000  drive 1@500  arm 1@0  i/e 1@10"');
    const els = parseQr(r.stdout);
    expect(els.map((e) => [e.address, e.type, e.full, e.tag])).toEqual([
      [0, "ARM", false, null],
      [10, "IEE", false, null],
      [500, "TAPE", false, null],
      [1000, "SLOT", true, "NDMP001L8"],
      [1001, "SLOT", true, "NDMP002L8"],
      [1002, "SLOT", true, "NDMP003L8"],
      [1003, "SLOT", true, "NDMP004L8"],
    ]);
    // The tape agent's view keeps the drive serial, for matching drive elements to drives.
    const t = await ndmjob(ns, ["-q", "-T", A], 30_000);
    expect(t.stdout).toContain("SERIAL_NUMBER=VT0-SERIAL");
  });

  it("load, unload, move, -Z, export, import and init-elem-status each leave the right inventory", async () => {
    await robot("-o", "load=1001");
    expect(await where()).toEqual({ 10: null, 500: "NDMP002L8", 1000: "NDMP001L8", 1001: null, 1002: "NDMP003L8", 1003: "NDMP004L8" });
    expect((await inventory()).get(500)!.src).toBe(1001);
    await robot("-o", "unload");
    expect(await where()).toEqual({ 10: null, 500: null, 1000: "NDMP001L8", 1001: "NDMP002L8", 1002: "NDMP003L8", 1003: "NDMP004L8" });
    await robot("-o", "move", "-o", "from-addr=1002", "-o", "to-addr=500");
    expect(await where()).toEqual({ 10: null, 500: "NDMP003L8", 1000: "NDMP001L8", 1001: "NDMP002L8", 1002: null, 1003: "NDMP004L8" });
    await robot("-Z");
    expect(await where()).toEqual({ 10: null, 500: null, 1000: "NDMP001L8", 1001: "NDMP002L8", 1002: "NDMP003L8", 1003: "NDMP004L8" });
    await robot("-o", "export=1000");
    expect(await where()).toEqual({ 10: "NDMP001L8", 500: null, 1000: null, 1001: "NDMP002L8", 1002: "NDMP003L8", 1003: "NDMP004L8" });
    await robot("-o", "import=1000");
    expect(await where()).toEqual({ 10: null, 500: null, 1000: "NDMP001L8", 1001: "NDMP002L8", 1002: "NDMP003L8", 1003: "NDMP004L8" });
    await robot("-o", "init-elem-status");
    expect(await where()).toEqual({ 10: null, 500: null, 1000: "NDMP001L8", 1001: "NDMP002L8", 1002: "NDMP003L8", 1003: "NDMP004L8" });
    // A move the library refuses: ndmjob reports it as a problem, nothing changes.
    const bad = await ndmjob(ns, ["-o", "move", "-o", "from-addr=1000", "-o", "to-addr=1001", ...R, "-v"], 30_000);
    expect(bad.stdout).toContain("had problems");
    expect((await where())[1000]).toBe("NDMP001L8");
  });

  it("a backup through the robot spans two cartridges and puts them back; the restore reads both", async () => {
    const idx = join(W, "span.idx");
    const b = await ndmjob(ns, ["-c", "-v", "-D", A, "-T", A, ...R, "-f", "vt0", "-m", "@1001", "-m", "@1002", "-B", "tar", "-C", SRC, "-I", idx], 120_000);
    expect(jobSucceeded(b.stdout), b.stdout).toBe(true);
    expect(b.stdout).toContain("Operation requires next tape");
    expect(b.stdout).toContain('"Commanding robot to load slot @1002 into drive @500"');
    const media = parseIndex(readFileSync(idx, "latin1")).media;
    expect(media).toHaveLength(2);
    expect(media[0]).toMatch(/^01 \+0\/\d+K@1001$/);
    expect(media[1]).toMatch(/^02 \+0\/\d+K@1002$/);
    expect(await where()).toEqual({ 10: null, 500: null, 1000: "NDMP001L8", 1001: "NDMP002L8", 1002: "NDMP003L8", 1003: "NDMP004L8" });
    // The cartridges hold the data (more than the LEOM of the first one).
    expect(readFileSync(join(srv.dir, "lib0", "NDMP002L8.tape")).length).toBeGreaterThan(900_000);
    expect(readFileSync(join(srv.dir, "lib0", "NDMP003L8.tape")).length).toBeGreaterThan(100_000);

    const out = join(W, "restore");
    const x = await ndmjob(ns, ["-x", "-v", "-D", A, "-T", A, ...R, "-f", "vt0", "-m", "@1001", "-m", "@1002", "-B", "tar", "-C", out, "-J", idx], 120_000);
    expect(jobSucceeded(x.stdout), x.stdout).toBe(true);
    expect(await compareTrees(SRC, out)).toEqual([]);
    expect((await where())[500]).toBeNull();
  });
});

const readyLocal = havePeers("binary");

describe.runIf(readyLocal)("the SCSI service through our client, and `ndmpd changer`", () => {
  let srv: RunningServer;
  let a: NdmpClient;
  let b: NdmpClient;

  beforeAll(async () => {
    srv = await startServer({ config: libraryConfig("127.0.0.1:0") });
    a = await dma(srv.port);
    b = await dma(srv.port);
  }, 30_000);

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await srv?.stop();
  });

  const errorOf = async (p: Promise<unknown>) => {
    try {
      await p;
      return "NO_ERR";
    } catch (e) {
      expect(e).toBeInstanceOf(NdmpClientError);
      return Object.entries(ErrorCode).find(([, v]) => v === (e as NdmpClientError & { error: number }).error)?.[0];
    }
  };
  const cdb = (c: NdmpClient, bytes: number[], datain_len = 4096, code: number = Message.SCSI_EXECUTE_CDB) =>
    c.request(code, { flags: datain_len > 0 ? ScsiFlag.DATA_IN : 0, timeout: 300_000, datain_len, cdb: Buffer.from(bytes), dataout: Buffer.alloc(0) }).then((r) => r.body);

  it("SCSI_OPEN: unknown -> NO_DEVICE, busy elsewhere, one device (tape or SCSI) per session", async () => {
    expect(await errorOf(a.request(Message.SCSI_OPEN, { device: "nope" }))).toBe("NO_DEVICE_ERR");
    expect(await errorOf(a.request(Message.SCSI_GET_STATE))).toBe("DEV_NOT_OPEN_ERR");
    expect(await errorOf(a.request(Message.SCSI_OPEN, { device: "lib0" }))).toBe("NO_ERR");
    expect(await errorOf(a.request(Message.SCSI_OPEN, { device: "lib0" }))).toBe("DEVICE_OPENED_ERR");
    expect(await errorOf(a.request(Message.TAPE_OPEN, { device: "loose", mode: TapeOpenMode.READ }))).toBe("DEVICE_OPENED_ERR");
    expect(await errorOf(b.request(Message.SCSI_OPEN, { device: "lib0" }))).toBe("DEVICE_BUSY_ERR");
    expect(await errorOf(b.request(Message.TAPE_OPEN, { device: "loose", mode: TapeOpenMode.READ }))).toBe("NO_ERR");
    expect(await errorOf(b.request(Message.SCSI_OPEN, { device: "lib0" }))).toBe("DEVICE_OPENED_ERR");
    expect((await a.request(Message.SCSI_GET_STATE)).body).toMatchObject({ target_controller: -1, target_id: -1, target_lun: -1 });
    expect(await errorOf(a.request(Message.SCSI_RESET_DEVICE))).toBe("NO_ERR");
    expect(await errorOf(a.request(Message.SCSI_CLOSE))).toBe("NO_ERR");
    expect(await errorOf(a.request(Message.SCSI_CLOSE))).toBe("DEV_NOT_OPEN_ERR");
    expect(await errorOf(b.request(Message.TAPE_CLOSE))).toBe("NO_ERR");
    expect(await errorOf(b.request(Message.SCSI_OPEN, { device: "lib0" }))).toBe("NO_ERR");
    expect(await errorOf(b.request(Message.SCSI_CLOSE))).toBe("NO_ERR");
  });

  it("SCSI_EXECUTE_CDB: data in, CHECK CONDITION with fixed sense, bad flags; a dropped session frees the changer", async () => {
    await a.request(Message.SCSI_OPEN, { device: "lib0" });
    const inq = await cdb(a, [0x12, 0, 0, 0, 0x80, 0], 128);
    expect(inq.status).toBe(0);
    expect(inq.datain[0]).toBe(0x08);
    const res = await cdb(a, [0xb8, 0x10, 0, 0, 0, 0x50, 0x01, 0, 0x20, 0, 0, 0], 8192);
    expect(parseElementStatus(Buffer.from(res.datain)).find((e) => e.type === "DTE")).toMatchObject({ address: 500, identifier: "VT0-SERIAL" });
    const empty = await cdb(a, [0xa5, 0, 0, 0, 0x01, 0xf4, 0x03, 0xe8, 0, 0, 0, 0], 0); // drive -> slot, drive empty
    expect(empty.status).toBe(2);
    expect(parseSense(Buffer.from(empty.ext_sense))).toEqual({ key: 5, asc: 0x3b, ascq: 0x0e });
    expect((await cdb(a, [0x99], 0)).status).toBe(2);
    const both = a.request(Message.SCSI_EXECUTE_CDB, { flags: 3, timeout: 0, datain_len: 1, cdb: Buffer.from([0, 0, 0, 0, 0, 0]), dataout: Buffer.alloc(0) });
    expect(await errorOf(both)).toBe("ILLEGAL_ARGS_ERR");
    await a.close();
    // The server noticed the drop and released lib0.
    const c = await dma(srv.port);
    let opened = "";
    for (let i = 0; i < 50 && opened !== "NO_ERR"; i++) {
      opened = (await errorOf(c.request(Message.SCSI_OPEN, { device: "lib0" }))) ?? "";
      if (opened !== "NO_ERR") await new Promise((r) => setTimeout(r, 100));
    }
    expect(opened).toBe("NO_ERR");
    a = c;
  });

  it("TAPE_EXECUTE_CDB answers the virtual drive's INQUIRY with its serial", async () => {
    await a.request(Message.SCSI_CLOSE);
    await a.request(Message.TAPE_OPEN, { device: "loose", mode: TapeOpenMode.READ });
    const sn = await cdb(a, [0x12, 1, 0x80, 0, 0xff, 0], 255, Message.TAPE_EXECUTE_CDB);
    expect(sn.status).toBe(0);
    expect(Buffer.from(sn.datain).subarray(4).toString()).toBe("NDMPD-loose");
    const std = await cdb(a, [0x12, 0, 0, 0, 36, 0], 36, Message.TAPE_EXECUTE_CDB);
    expect(std.datain[0]).toBe(0x01);
    expect(await errorOf(cdb(a, [0x00, 0, 0, 0, 0, 0], 0, Message.TAPE_EXECUTE_CDB))).toBe("NOT_SUPPORTED_ERR");
    await a.request(Message.TAPE_CLOSE);
  });

  it("`ndmpd changer` refuses a library a server holds, and operates one that is free", async () => {
    const cfg = join(srv.dir, "ndmpd.toml");
    const busy = await run(BINARY, ["changer", "--config", cfg, "status"]);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/lib0 .* is in use by process \d+/);

    const dir = mkdtempSync(join(tmpdir(), "ndmpd-cli-"));
    try {
      const own = join(dir, "c.toml");
      writeFileSync(own, libraryConfig("127.0.0.1:0").replaceAll("$DIR", dir));
      chmodSync(own, 0o600);
      const ch = (...args: string[]) => run(BINARY, ["changer", "-c", own, ...args]);
      const st = await ch("status");
      expect(st.code, st.stderr).toBe(0);
      expect(st.stdout).toContain("Storage Changer lib0:1 Drives, 4 Slots ( 1 Import/Export )");
      expect(st.stdout).toMatch(/Data Transfer Element 0:Empty\s+@500 \(vt0, serial VT0-SERIAL\)/);
      expect(st.stdout).toMatch(/Storage Element 3:Full :VolumeTag = NDMP003L8\s+@1002/);
      expect(st.stdout).toMatch(/Storage Element 5 IMPORT\/EXPORT:Empty\s+@10/);
      const load = await ch("load", "3");
      expect(load.code, load.stderr).toBe(0);
      expect(load.stdout).toMatch(/Data Transfer Element 0:Full \(Storage Element 3 Loaded\):VolumeTag = NDMP003L8/);
      expect(load.stdout).toMatch(/Storage Element 3:Empty/);
      const again = await ch("load", "2", "vt0");
      expect(again.code).toBe(1);
      expect(again.stderr).toMatch(/3bh\/0dh \(medium destination element full\)/);
      const unload = await ch("unload");
      expect(unload.code, unload.stderr).toBe(0);
      expect(unload.stdout).toMatch(/Storage Element 3:Full :VolumeTag = NDMP003L8/);
      const move = await ch("move", "1000", "10");
      expect(move.code, move.stderr).toBe(0);
      expect(move.stdout).toMatch(/IMPORT\/EXPORT:Full :VolumeTag = NDMP001L8/);
      // The state persisted: a new process sees it.
      expect((await ch("inventory")).stdout).toMatch(/Storage Element 1:Empty/);
      expect(existsSync(join(dir, "lib0", "library.lock"))).toBe(false);
      expect((await ch("load", "9")).code).toBe(2);
      expect((await ch("frobnicate")).code).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
