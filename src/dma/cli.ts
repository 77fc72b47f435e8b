/**
 * The CLI's job commands: backup, recover, list, catalog rebuild (local drives, through an
 * in-process server) and remote backup|recover (ndmpd as a small DMA of other servers).
 * Each returns the exit code: 0 ok, 1 the job failed, 2 bad usage or configuration.
 */
import { randomBytes } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { opendir, lstat } from "node:fs/promises";
import { hostname } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { openCatalog, type Catalog, type FileRow } from "../catalog/catalog.ts";
import { NdmpClient } from "../client/client.ts";
import { ConfigError, defaultStateDir, loadConfigOrDefault, type Config } from "../config.ts";
import { moveMedium, readInventory } from "../devices/changer/smc.ts";
import { DeviceRegistry } from "../devices/registry.ts";
import { Logger } from "../log.ts";
import { FileType, Message, TapeMtioOp, TapeOpenMode } from "../protocol/codes.ts";
import { NdmpServer } from "../server/listener.ts";
import { loadNative } from "../native/index.ts";
import { cleanupLeftovers } from "../snapshot/index.ts";
import { prewarmScanWorkers } from "../engine/scan.ts";
import { backupJob, DEFAULT_RECORD_SIZE, JobError, listJob, rebuildJob, recoverJob, type JobTarget, type Listing } from "./jobs.ts";
import type { JobLibrary } from "./target.ts";
import { formatBytes, Progress } from "./progress.ts";
import { readNdmjobIndex } from "./ndmjob-index.ts";
import { copyCmd, duplicateCmd } from "./cli-copy.ts";
import { int, login, out, parse, parseHost, print, progressMode, TLS_OPTIONS, tlsFrom, UsageError } from "./cli-common.ts";
import { commandHelp } from "../doc/render.ts";
import { formatNs, isoSeconds, MAX_LEVEL, readDumpdates } from "../incremental/index.ts";

const EXIT_USAGE = 2;
const DEFAULT_CONFIG = "/etc/ndmpd/ndmpd.toml";

/** Each job command's --help, from the documentation data (src/doc/commands.ts). */
export const JOB_HELP: Record<string, string> = Object.fromEntries(
  ["backup", "list", "recover", "dumpdates", "catalog", "remote"].map((name) => [name, commandHelp(name)!]),
);


/** Runs one command, turning usage and job errors into messages and exit codes. */
export async function runJobCommand(cmd: string, args: string[]): Promise<number> {
  try {
    switch (cmd) {
      case "backup":
        return await backupCmd(args);
      case "recover":
        return await recoverCmd(args);
      case "list":
        return await listCmd(args);
      case "catalog":
        return await catalogCmd(args);
      case "dumpdates":
        return dumpdatesCmd(args);
      case "remote":
        return await remoteCmd(args);
      default:
        throw new UsageError(`unknown command ${cmd}`);
    }
  } catch (e) {
    if (e instanceof UsageError || e instanceof ConfigError) {
      process.stderr.write(`ndmpd: ${e.message}\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`ndmpd ${cmd}: ${(e as Error).message}\n`);
    return 1;
  }
}

// ---------------------------------------------------------------------------------------------
// Local jobs: an in-process server with the configured drive, reached over loopback

interface Session {
  target: JobTarget;
  config: Config;
  close(): Promise<void>;
}

function loadJobConfig(file: string | undefined): Config {
  const { config, embedded } = loadConfigOrDefault(file);
  if (embedded) {
    const lib = config.changers[0]!;
    process.stderr.write(`ndmpd: no ${DEFAULT_CONFIG}: using the embedded library ${lib.name} (drive ${lib.drives[0]}) in ${lib.path}\n`);
  }
  return config;
}

/** --tape NAME, or the only drive when there is one. */
function pickTape(config: Config, tape: string | undefined, cmd: string): string {
  if (tape !== undefined) return tape;
  if (config.tapes.length === 1) return config.tapes[0]!.name;
  throw new UsageError(`${cmd} needs --tape NAME (the configuration has ${config.tapes.length === 0 ? "no [[tape]]" : `drives ${config.tapes.map((t) => t.name).join(", ")}`})`);
}

/**
 * --tape-file N [--format F] [--record-size N] [--index FILE]: an image with no ndmpd label
 * (another DMA's); an ndmjob index gives its paths' offsets, for direct access.
 */
function rawImage(values: { "tape-file"?: string; format?: string; "record-size"?: string; index?: string }) {
  const file = int(values["tape-file"], "--tape-file", 0, 1_000_000);
  if (file === undefined) {
    if (values.index !== undefined) throw new UsageError("--index goes with --tape-file (an image another DMA wrote)");
    return undefined;
  }
  let offsets: Map<string, bigint> | undefined;
  if (values.index !== undefined) {
    try {
      offsets = readNdmjobIndex(readFileSync(values.index, "latin1"));
    } catch (e) {
      throw new UsageError(`--index ${values.index}: ${(e as Error).message}`);
    }
  }
  return { file, format: values.format ?? "tar", recordSize: int(values["record-size"], "--record-size", 512, 4 * 1024 * 1024) ?? 10240, offsets };
}

async function localSession(config: Config, tape: string, slotOrSlots: number | number[] | undefined): Promise<Session> {
  const slots = slotOrSlots === undefined ? [] : Array.isArray(slotOrSlots) ? slotOrSlots : [slotOrSlots];
  const slot = slots[0];
  const tapeCfg = config.tapes.find((t) => t.name === tape);
  if (!tapeCfg) {
    const names = config.tapes.map((t) => t.name).join(", ");
    throw new UsageError(`no [[tape]] named ${tape} in the configuration${names ? ` (there are: ${names})` : ""}`);
  }
  const changer = config.changers?.find((c) => c.drives.includes(tape));
  if (slot !== undefined && !changer) throw new UsageError(`--slot: drive ${tape} belongs to no [[changer]] in the configuration`);
  // Only this drive (and its library): the other devices may be in use by a running server.
  const devices = await DeviceRegistry.fromConfig([tapeCfg], changer ? [{ ...changer, drives: [tape] }] : []);
  try {
    const barcode = slot !== undefined ? await loadSlot(devices, changer!.name, slot) : "";
    // A one-time user that exists only in this process, on a loopback port nobody else knows.
    const user = "dma";
    const password = randomBytes(18).toString("base64url");
    const cfg: Config = {
      ...config,
      listen: [{ host: "127.0.0.1", port: 0 }],
      users: new Map([[user, Buffer.from(password)]]),
      authMethods: ["md5"],
      authFailureDelayMs: 0,
    };
    const logger = new Logger("warn", "human");
    // What a killed `ndmpd backup` left (its records name it; a running server's are left alone).
    await cleanupLeftovers(config.stateDir, await loadNative(), logger);
    const server = new NdmpServer(cfg, devices, logger);
    const [addr] = await server.listen();
    const client = await NdmpClient.connect("127.0.0.1", addr!.port);
    await client.open(4);
    await client.authMd5(user, password);
    const target: JobTarget = {
      data: client,
      tape: client,
      device: tape,
      driveId: tape,
      barcode,
      host: hostname(),
      // The server's only session is this client's (a one-time user on a private port).
      tapFileHistory(sink) {
        for (const s of server.sessions) s.fileHistoryTap = sink;
      },
    };
    if (changer) target.library = jobLibrary(devices, changer.name, target, client);
    if (slots.length > 1) {
      // The cartridges of a span, in order: each next one replaces the one in the drive.
      let next = 1;
      target.nextCartridge = async () => {
        if (next >= slots.length) return false;
        await client.request(Message.TAPE_CLOSE, {}, { allowBodyError: true });
        target.barcode = await loadSlot(devices, changer!.name, slots[next++]!);
        await client.request(Message.TAPE_OPEN, { device: tape, mode: TapeOpenMode.READ });
        await client.request(Message.TAPE_MTIO, { tape_op: TapeMtioOp.REW, count: 1 });
        return true;
      };
    }
    return {
      config,
      target,
      async close() {
        await client.close();
        await server.shutdown("job done");
        devices.shutdown();
      },
    };
  } catch (e) {
    devices.shutdown();
    throw e;
  }
}

/** The job's view of the drive's library (span.ts: backups and recoveries over several cartridges). */
function jobLibrary(devices: DeviceRegistry, changerName: string, target: JobTarget, client: NdmpClient): JobLibrary {
  return {
    name: changerName,
    async inventory() {
      const dev = await devices.openScsi(devices.changers.get(changerName)!);
      try {
        const inv = await readInventory(dev);
        const se = inv.elements.filter((e) => e.type === "SE");
        const drive = inv.elements.find((e) => e.type === "DTE");
        const slots = se.map((e, i) => ({ slot: i + 1, barcode: e.tag ?? "", full: e.full }));
        const home = drive?.full ? se.findIndex((e) => e.address === drive.source) : -1;
        return { slots, drive: drive?.full ? { barcode: drive.tag ?? "", ...(home >= 0 ? { slot: home + 1 } : {}) } : undefined };
      } finally {
        await dev.close();
      }
    },
    async load(slot, mode) {
      // The library refuses to unload a drive that is open (as a real one with Linux st does).
      await client.request(Message.TAPE_CLOSE, {}, { allowBodyError: true });
      target.barcode = await loadSlot(devices, changerName, slot);
      await client.request(Message.TAPE_OPEN, { device: target.device, mode });
      return target.barcode;
    },
  };
}

/**
 * Moves the cartridge of storage slot N (1-based) into the drive, first emptying the drive.
 * Returns the cartridge's volume tag ("" when the library has none).
 */
async function loadSlot(devices: DeviceRegistry, changerName: string, slot: number): Promise<string> {
  const target = devices.changers.get(changerName)!;
  const dev = await devices.openScsi(target);
  try {
    const inv = await readInventory(dev);
    const of = (t: string) => inv.elements.filter((e) => e.type === t);
    const se = of("SE")[slot - 1];
    if (!se) throw new UsageError(`--slot: ${changerName} has slots 1-${of("SE").length}`);
    const drive = of("DTE")[0];
    if (!drive) throw new JobError(`${changerName} reports no drive`);
    const transport = of("MTE")[0]?.address ?? 0;
    if (drive.full && drive.source === se.address) return drive.tag ?? ""; // already there
    if (!se.full) throw new JobError(`slot ${slot} of ${changerName} is empty`);
    if (drive.full) {
      const home = of("SE").find((e) => e.address === drive.source && !e.full) ?? of("SE").find((e) => !e.full);
      if (!home) throw new JobError(`${changerName}: the drive is full and there is no empty slot to unload it to`);
      await moveMedium(dev, transport, drive.address, home.address);
    }
    await moveMedium(dev, transport, se.address, drive.address);
    return se.tag ?? "";
  } finally {
    await dev.close();
  }
}

/** A rough size of the tree (regular files' sizes), for the ETA; computed beside the backup. */
function estimate(root: string): { get(): number | undefined } {
  let total: number | undefined;
  (async () => {
    let sum = 0;
    const stack = [root];
    while (stack.length > 0) {
      const dir = stack.pop()!;
      let d;
      try {
        d = await opendir(dir);
      } catch {
        continue;
      }
      for await (const e of d) {
        const p = join(dir, e.name);
        sum += 1024; // headers (pax + ustar) per entry
        if (e.isDirectory()) stack.push(p);
        else if (e.isFile()) sum += await lstat(p).then((s) => Math.ceil(s.size / 512) * 512, () => 0);
      }
    }
    total = sum;
  })().catch(() => {});
  return { get: () => total };
}

/**
 * Runs a job with the catalog open. SIGINT/SIGTERM abort the job the NDMP way (DATA_ABORT,
 * MOVER_ABORT), so that it winds down like any failed job (a failed backup is cut off the tape);
 * a second signal exits at once.
 */
async function withCatalog<T>(stateDir: string, body: (c: Catalog) => Promise<T>, target?: JobTarget): Promise<T> {
  const catalog = await openCatalog(stateDir);
  let signalled = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalled || !target) process.exit(130);
    signalled = true;
    process.stderr.write(`ndmpd: ${sig}: aborting the job (again to quit at once)\n`);
    void target.data.request(Message.DATA_ABORT, {}, { allowBodyError: true }).catch(() => {});
    void target.tape.request(Message.MOVER_ABORT, {}, { allowBodyError: true }).catch(() => {});
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    return await body(catalog);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    catalog.close();
  }
}

const backupOptions = {
  tape: { type: "string", short: "t" },
  config: { type: "string", short: "c" },
  format: { type: "string", short: "f" },
  exclude: { type: "string", short: "x", multiple: true },
  label: { type: "string", short: "L" },
  level: { type: "string" },
  snapshot: { type: "string" },
  slot: { type: "string" },
  "record-size": { type: "string" },
  json: { type: "boolean" },
} as const;

function backupSettings(values: { format?: string; level?: string; "record-size"?: string; exclude?: string[]; label?: string; snapshot?: string }, positionals: string[]) {
  if (positionals.length !== 1) throw new UsageError("backup needs exactly one PATH");
  const path = resolve(positionals[0]!);
  const format = values.format ?? "tar";
  if (format !== "tar" && format !== "dump") throw new UsageError("--format must be tar or dump");
  const level = int(values.level, "--level", 0, MAX_LEVEL) ?? 0;
  const recordSize = int(values["record-size"], "--record-size", 512, 4 * 1024 * 1024) ?? DEFAULT_RECORD_SIZE;
  if (recordSize % 512 !== 0) throw new UsageError("--record-size must be a multiple of 512");
  const snapshot = values.snapshot;
  if (snapshot !== undefined && !["y", "n", "auto", "required"].includes(snapshot)) throw new UsageError("--snapshot must be y, n, auto or required");
  return { path, format, level, recordSize, excludes: values.exclude ?? [], label: values.label, snapshot };
}

async function backupCmd(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, backupOptions);
  if (values.help) return print(JOB_HELP.backup!);
  const s = backupSettings(values, positionals);
  // Checked here for a clear message: NDMP's ILLEGAL_ARGS_ERR would not say what is wrong.
  if (!statSync(s.path, { throwIfNoEntry: false })?.isDirectory()) throw new UsageError(`${s.path} is not a directory`);
  // The scan's workers start now, beside the setup (drive, server, catalog), not after it.
  void prewarmScanWorkers();
  const config = loadJobConfig(values.config);
  const tape = pickTape(config, values.tape, "backup");
  const session = await localSession(config, tape, int(values.slot, "--slot", 1, 9999));
  try {
    // The ETA's estimate walks the tree a second time, beside the backup: only for a person
    // watching a terminal. Logs and --json show the elapsed time instead.
    const mode = progressMode(values.json);
    const est = mode === "tty" ? estimate(s.path) : undefined;
    const r = await withCatalog(config.stateDir, (catalog) =>
      backupJob(session.target, { ...s, catalog, progress: new Progress(out, mode, "backup"), total: est?.get }),
      session.target,
    );
    return r.ok ? 0 : 1;
  } finally {
    await session.close();
  }
}

async function recoverCmd(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    tape: { type: "string", short: "t" },
    file: { type: "string", short: "n" },
    date: { type: "string" },
    only: { type: "boolean" },
    to: { type: "string", short: "C" },
    config: { type: "string", short: "c" },
    slot: { type: "string", multiple: true },
    "tape-file": { type: "string" },
    format: { type: "string" },
    "record-size": { type: "string" },
    index: { type: "string" },
    json: { type: "boolean" },
  });
  if (values.help) return print(JOB_HELP.recover!);
  const slots = (values.slot ?? []).map((v) => int(v, "--slot", 1, 9999)!);
  const raw = rawImage(values);
  // Our own spanning backups are found through the catalog; several slots are for an image another DMA wrote (no label).
  if (slots.length > 1 && !raw) throw new UsageError("several --slot (an image that spans cartridges) need --tape-file N: the image's tape file on the first one");
  if (values.file !== undefined && values.date !== undefined) throw new UsageError("give --file or --date, not both");
  const before = values.date === undefined ? undefined : Date.parse(values.date);
  if (before !== undefined && Number.isNaN(before)) throw new UsageError(`--date ${values.date}: not a date (ISO 8601, e.g. 2026-12-03T08:00)`);
  if (!values.to) throw new UsageError("recover needs --to DIR");
  const config = loadJobConfig(values.config);
  const session = await localSession(config, pickTape(config, values.tape, "recover"), slots);
  try {
    const r = await withCatalog(config.stateDir, (catalog) =>
      recoverJob(session.target, {
        raw,
        seq: int(values.file, "--file", 1, 1_000_000),
        before,
        chain: !values.only,
        to: resolve(values.to!),
        paths: positionals,
        catalog,
        progress: new Progress(out, progressMode(values.json), "recover"),
      }),
      session.target,
    );
    return r.ok ? 0 : 1;
  } finally {
    await session.close();
  }
}

async function listCmd(args: string[]): Promise<number> {
  const { values } = parse(args, {
    tape: { type: "string", short: "t" },
    file: { type: "string", short: "n" },
    config: { type: "string", short: "c" },
    slot: { type: "string" },
    json: { type: "boolean" },
  });
  if (values.help) return print(JOB_HELP.list!);
  const config = loadJobConfig(values.config);
  const tape = pickTape(config, values.tape, "list");
  const session = await localSession(config, tape, int(values.slot, "--slot", 1, 9999));
  try {
    const seq = int(values.file, "--file", 1, 1_000_000);
    const listing = await withCatalog(config.stateDir, (catalog) => listJob(session.target, { seq, catalog }));
    printListing(listing, tape, !!values.json);
    return 0;
  } finally {
    await session.close();
  }
}

function dumpdatesCmd(args: string[]): number {
  const { values, positionals } = parse(args, { config: { type: "string", short: "c" }, json: { type: "boolean" } });
  if (values.help) return print(JOB_HELP.dumpdates!);
  if (positionals.length > 1) throw new UsageError("dumpdates takes at most one PATH");
  const config = loadJobConfig(values.config);
  const want = positionals[0] === undefined ? undefined : Buffer.from(resolve(positionals[0]));
  const records = readDumpdates(config.stateDir).filter((r) => !want || r.path.equals(want));
  records.sort((a, b) => Buffer.compare(a.path, b.path) || a.type.localeCompare(b.type) || a.level - b.level);
  if (values.json) {
    const rows = records.map((r) => ({ path: showPath(r.path), fsid: r.fsid, type: r.type, level: r.level, date: isoNs(r.date), token: r.token }));
    process.stdout.write(JSON.stringify(rows) + "\n");
    return 0;
  }
  if (records.length === 0) {
    process.stdout.write(`no dumpdates records${want ? ` for ${showPath(want)}` : ""} in ${config.stateDir}\n`);
    return 0;
  }
  process.stdout.write("type  level  date (UTC)                       fsid    token                 path\n");
  for (const r of records) {
    process.stdout.write(`${r.type.padEnd(4)}  ${String(r.level).padStart(5)}  ${isoNs(r.date).padEnd(31)}  ${r.fsid.padEnd(6)}  ${r.token.padEnd(20)}  ${showPath(r.path)}\n`);
  }
  return 0;
}

/** ISO 8601 with the nanoseconds. */
function isoNs(ns: bigint): string {
  const frac = formatNs(ns).split(".")[1]!;
  return isoSeconds(ns).replace(/Z$/, `.${frac}Z`);
}

async function catalogCmd(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    tape: { type: "string", short: "t" },
    config: { type: "string", short: "c" },
    slot: { type: "string" },
    json: { type: "boolean" },
  });
  if (values.help) return print(JOB_HELP.catalog!);
  if (positionals[0] !== "rebuild" || positionals.length !== 1) throw new UsageError("usage: ndmpd catalog rebuild --tape NAME");
  const config = loadJobConfig(values.config);
  const session = await localSession(config, pickTape(config, values.tape, "catalog rebuild"), int(values.slot, "--slot", 1, 9999));
  try {
    await withCatalog(config.stateDir, (catalog) =>
      rebuildJob(session.target, { catalog, progress: new Progress(out, progressMode(values.json), "catalog rebuild") }),
      session.target,
    );
    return 0;
  } finally {
    await session.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Remote jobs

async function remoteCmd(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === "--help" || sub === "-h") return print(JOB_HELP.remote!);
  if (sub === "copy") return copyCmd(rest, JOB_HELP.remote!);
  if (sub === "duplicate") return duplicateCmd(rest, JOB_HELP.remote!);
  if (sub !== "backup" && sub !== "recover") throw new UsageError("usage: ndmpd remote backup|recover|copy|duplicate ... (see 'ndmpd remote --help')");
  const { values, positionals } = parse(rest, {
    ...backupOptions,
    data: { type: "string", short: "D" },
    tape: { type: "string", short: "T" },
    device: { type: "string", short: "d" },
    "data-user": { type: "string" },
    "data-password": { type: "string" },
    "tape-user": { type: "string" },
    "tape-password": { type: "string" },
    auth: { type: "string" },
    "state-dir": { type: "string" },
    file: { type: "string", short: "n" },
    to: { type: "string", short: "C" },
    "tape-file": { type: "string" },
    ...TLS_OPTIONS,
  });
  if (values.help) return print(JOB_HELP.remote!);
  const tls = tlsFrom(values);
  if (!values.data) throw new UsageError(`remote ${sub} needs --data HOST[:PORT]`);
  if (!values.device) throw new UsageError(`remote ${sub} needs --device NAME (the drive at the tape agent)`);
  const auth = values.auth ?? "md5";
  if (auth !== "md5" && auth !== "text") throw new UsageError("--auth must be md5 or text");
  const stateDir = values["state-dir"] ?? defaultStateDir();
  if (!isAbsolute(stateDir)) throw new UsageError("--state-dir must be an absolute path");
  const env = process.env;
  const data = await login(values.data, values["data-user"] ?? "ndmp", values["data-password"] ?? env.NDMPD_DATA_PASSWORD ?? env.NDMPD_PASSWORD, auth, tls);
  let tape = data;
  try {
    if (values.tape) tape = await login(values.tape, values["tape-user"] ?? "ndmp", values["tape-password"] ?? env.NDMPD_TAPE_PASSWORD ?? env.NDMPD_PASSWORD, auth, tls);
    const target: JobTarget = {
      data,
      tape,
      device: values.device,
      driveId: `${values.tape ?? values.data}/${values.device}`,
      barcode: "",
      host: parseHost(values.data).host,
    };
    const mode = progressMode(values.json);
    if (sub === "backup") {
      const s = backupSettings(values, positionals);
      if (!isAbsolute(positionals[0]!)) throw new UsageError("remote backup needs PATH as an absolute path on the data agent");
      const r = await withCatalog(stateDir, (catalog) => backupJob(target, { ...s, catalog, progress: new Progress(out, mode, "backup") }), target);
      return r.ok ? 0 : 1;
    }
    if (!values.to || !values.to.startsWith("/")) throw new UsageError("remote recover needs --to DIR, an absolute path on the data agent");
    const raw = rawImage(values);
    const r = await withCatalog(stateDir, (catalog) =>
      recoverJob(target, { seq: int(values.file, "--file", 1, 1_000_000), raw, to: values.to!, paths: positionals, catalog, progress: new Progress(out, mode, "recover") }),
      target,
    );
    return r.ok ? 0 : 1;
  } finally {
    if (tape !== data) await tape.close();
    await data.close();
  }
}

// ---------------------------------------------------------------------------------------------

/** A path for display: UTF-8 when it is, else with \xNN escapes for the bytes that are not. */
export function showPath(p: Buffer): string {
  const s = p.toString("utf8");
  if (Buffer.from(s, "utf8").equals(p)) return s;
  return [...p].map((b) => (b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`)).join("");
}

const TYPE_CHAR: Record<number, string> = {
  [FileType.DIR]: "d",
  [FileType.FIFO]: "p",
  [FileType.CSPEC]: "c",
  [FileType.BSPEC]: "b",
  [FileType.REG]: "-",
  [FileType.SLINK]: "l",
  [FileType.SOCK]: "s",
};

function printListing(l: Listing, tape: string, json: boolean): void {
  if (json) {
    const entry = (f: FileRow) => ({ ...f, path: showPath(f.path) });
    process.stdout.write(JSON.stringify({ source: l.source, mediaId: l.mediaId ?? null, backups: l.backups, entries: l.entries?.map(entry) }) + "\n");
    return;
  }
  if (l.backups.length === 0) {
    process.stdout.write(`the cartridge in ${tape} holds no ndmpd backup\n`);
    return;
  }
  if (!l.entries) {
    process.stdout.write(`cartridge ${l.mediaId} in ${tape} (${l.source === "catalog" ? "from the catalog" : "read from the tape; run 'ndmpd catalog rebuild' to index it"})\n`);
    process.stdout.write(" #  date                  format level base  size        label / host:path\n");
    for (const b of l.backups) {
      const size = b.bytes !== undefined ? formatBytes(b.bytes) : "-";
      const base = b.base === undefined ? "-" : String(b.base);
      const name = b.partOf ? `part ${b.partOf.part} of backup ${b.partOf.of.split("#")[1]} (${b.label}) of cartridge ${b.partOf.of.split("#")[0]}` : b.label;
      process.stdout.write(
        `${String(b.seq).padStart(2)}  ${b.date.slice(0, 19).replace("T", " ")}   ${b.format.padEnd(6)} ${String(b.level).padStart(5)} ${base.padStart(4)}  ${size.padEnd(10)}  ${name}  ${b.host}:${b.root}\n`,
      );
      // A backup over several cartridges: each one, in the order a recovery loads them.
      for (const p of b.span ?? []) {
        process.stdout.write(`      part ${p.part}: ${p.barcode || "(no volume tag)"} slot ${p.slot}, from byte ${p.start}, ${formatBytes(p.bytes)}\n`);
      }
    }
    return;
  }
  for (const f of l.entries) {
    const mtime = new Date(f.mtime * 1000).toISOString().slice(0, 16).replace("T", " ");
    process.stdout.write(
      `${TYPE_CHAR[f.ftype] ?? "?"}${(f.mode & 0o7777).toString(8).padStart(4, "0")} ${String(f.uid).padStart(6)} ${String(f.gid).padStart(6)} ${String(f.size).padStart(12)} ${mtime} ${showPath(f.path)}${f.fhInfo !== null ? ` @${f.fhInfo}` : ""}\n`,
    );
  }
}
