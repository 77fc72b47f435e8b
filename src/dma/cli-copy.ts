/**
 * `ndmpd remote copy`: a tree from one NDMP server into another (or into another path of the
 * same one), data service to data service (copy.ts); `ndmpd remote duplicate`: tape files of
 * one drive's cartridge onto another drive's, mover to mover (duplicate.ts).
 * Exit code 0 ok, 1 failed, 2 bad usage.
 */
import { isAbsolute } from "node:path";
import { openCatalog } from "../catalog/catalog.ts";
import type { NdmpClient } from "../client/client.ts";
import { defaultStateDir } from "../config.ts";
import { MAX_LEVEL } from "../incremental/index.ts";
import { Message } from "../protocol/codes.ts";
import { int, login, out, parse, parseHost, progressMode, TLS_OPTIONS, tlsFrom, UsageError } from "./cli-common.ts";
import { copyJob } from "./copy.ts";
import { duplicateJob } from "./duplicate.ts";
import { loadRemoteSlot } from "./remote-changer.ts";
import { JobError } from "./target.ts";
import { Progress } from "./progress.ts";

/** "HOST[:PORT]:/path" -> host part and path (the path is what follows the first ":/"). */
export function parseEnd(s: string, what: string): { where: string; path: string } {
  const i = s.indexOf(":/");
  if (i <= 0) throw new UsageError(`${what} must be HOST[:PORT]:/PATH (an absolute path on that server), not ${s}`);
  return { where: s.slice(0, i), path: s.slice(i + 1) };
}

/** Two spellings of one server ("h" and "h:10000") are one server. */
export function sameServer(a: string, b: string): boolean {
  const x = parseHost(a);
  const y = parseHost(b);
  return x.host === y.host && x.port === y.port;
}

/** What copy and duplicate both take: a login for each server, the output form, TLS. */
const TWO_SERVER_OPTIONS = {
  "src-user": { type: "string" },
  "src-password": { type: "string" },
  "dst-user": { type: "string" },
  "dst-password": { type: "string" },
  auth: { type: "string" },
  json: { type: "boolean" },
  ...TLS_OPTIONS,
} as const;

export async function copyCmd(args: string[], help: string): Promise<number> {
  const { values, positionals } = parse(args, {
    format: { type: "string", short: "f" },
    level: { type: "string" },
    exclude: { type: "string", short: "x", multiple: true },
    listen: { type: "string" },
    ...TWO_SERVER_OPTIONS,
  });
  if (values.help) {
    out.write(help);
    return 0;
  }
  if (positionals.length !== 2) throw new UsageError("usage: ndmpd remote copy SRC_HOST[:PORT]:/PATH DST_HOST[:PORT]:/PATH [options]");
  const src = parseEnd(positionals[0]!, "the source");
  const dst = parseEnd(positionals[1]!, "the destination");
  const format = values.format ?? "tar";
  if (format !== "tar" && format !== "dump") throw new UsageError("--format must be tar or dump");
  const level = int(values.level, "--level", 0, MAX_LEVEL) ?? 0;
  const listen = values.listen ?? "dst";
  if (listen !== "src" && listen !== "dst") throw new UsageError("--listen must be src or dst");
  const tls = tlsFrom(values);
  const auth = values.auth ?? "md5";
  if (auth !== "md5" && auth !== "text") throw new UsageError("--auth must be md5 or text");
  const one = sameServer(src.where, dst.where);
  if (one && src.path.replace(/\/+$/, "") === dst.path.replace(/\/+$/, "")) throw new UsageError("the source and the destination are the same directory");
  const env = process.env;
  const clients: NdmpClient[] = [];
  try {
    // Two sessions even on one server: each has one data service, and a copy needs two.
    const s = await login(src.where, values["src-user"] ?? "ndmp", values["src-password"] ?? env.NDMPD_SRC_PASSWORD ?? env.NDMPD_PASSWORD, auth, tls);
    clients.push(s);
    const d = await login(dst.where, values["dst-user"] ?? "ndmp", values["dst-password"] ?? env.NDMPD_DST_PASSWORD ?? env.NDMPD_PASSWORD, auth, tls);
    clients.push(d);
    const abort = onSignals(clients);
    try {
      const r = await copyJob(
        { client: s, path: src.path, name: src.where },
        { client: d, path: dst.path, name: dst.where },
        { format, level, excludes: values.exclude ?? [], listen, sameServer: one, progress: new Progress(out, progressMode(values.json), "copy") },
      );
      return r.ok ? 0 : 1;
    } finally {
      abort();
    }
  } finally {
    for (const c of clients) await c.close();
  }
}

/**
 * SIGINT/SIGTERM abort the job the NDMP way (DATA_ABORT and MOVER_ABORT on every session), so
 * both servers wind down as for any failed job; a second signal exits at once. Returns the
 * function that removes the handlers.
 */
export function onSignals(clients: NdmpClient[]): () => void {
  let signalled = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalled) process.exit(130);
    signalled = true;
    process.stderr.write(`ndmpd: ${sig}: aborting the job (again to quit at once)\n`);
    for (const c of clients) {
      void c.request(Message.DATA_ABORT, {}, { allowBodyError: true }).catch(() => {});
      void c.request(Message.MOVER_ABORT, {}, { allowBodyError: true }).catch(() => {});
    }
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return () => {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  };
}

/** "HOST[:PORT]/DRIVE" -> host part and drive name (everything after the first "/": a drive may be a path). */
export function parseDrive(s: string, what: string): { where: string; device: string } {
  const i = s.indexOf("/");
  if (i <= 0 || i === s.length - 1) throw new UsageError(`${what} must be HOST[:PORT]/DRIVE, not ${s}`);
  return { where: s.slice(0, i), device: s.slice(i + 1) };
}

/** "N", "N-M" or "N-" (to the end). */
function parseFiles(s: string | undefined): { first: number; last?: number } | undefined {
  if (s === undefined) return undefined;
  const m = /^(\d+)(?:-(\d*))?$/.exec(s);
  if (!m) throw new UsageError(`--files ${s}: give N, N-M or N-`);
  const first = Number(m[1]);
  const last = m[2] === undefined ? first : m[2] === "" ? undefined : Number(m[2]);
  if (last !== undefined && last < first) throw new UsageError(`--files ${s}: the range is backwards`);
  return { first, last };
}

export async function duplicateCmd(args: string[], help: string): Promise<number> {
  const { values, positionals } = parse(args, {
    from: { type: "string" },
    to: { type: "string" },
    files: { type: "string" },
    slot: { type: "string" },
    "from-slot": { type: "string" },
    listen: { type: "string" },
    overwrite: { type: "boolean" },
    "state-dir": { type: "string" },
    ...TWO_SERVER_OPTIONS,
  });
  if (values.help) {
    out.write(help);
    return 0;
  }
  const tls = tlsFrom(values);
  if (positionals.length > 0) throw new UsageError(`remote duplicate takes no positional arguments (${positionals[0]})`);
  if (!values.from || !values.to) throw new UsageError("usage: ndmpd remote duplicate --from HOST[:PORT]/DRIVE --to HOST[:PORT]/DRIVE [options]");
  const from = parseDrive(values.from, "--from");
  const to = parseDrive(values.to, "--to");
  const one = sameServer(from.where, to.where);
  if (one && from.device === to.device) throw new UsageError("--from and --to are the same drive");
  const files = parseFiles(values.files);
  const slots = values.slot === undefined ? [] : values.slot.split(",").map((x) => int(x, "--slot", 1, 9999)!);
  const fromSlot = int(values["from-slot"], "--from-slot", 1, 9999);
  const listen = values.listen ?? "dst";
  if (listen !== "src" && listen !== "dst") throw new UsageError("--listen must be src or dst");
  const auth = values.auth ?? "md5";
  if (auth !== "md5" && auth !== "text") throw new UsageError("--auth must be md5 or text");
  const stateDir = values["state-dir"] ?? defaultStateDir();
  if (!isAbsolute(stateDir)) throw new UsageError("--state-dir must be an absolute path");
  const env = process.env;
  const clients: NdmpClient[] = [];
  try {
    // Two sessions even on one server: each session has one tape and one mover.
    const s = await login(from.where, values["src-user"] ?? "ndmp", values["src-password"] ?? env.NDMPD_SRC_PASSWORD ?? env.NDMPD_PASSWORD, auth, tls);
    clients.push(s);
    const d = await login(to.where, values["dst-user"] ?? "ndmp", values["dst-password"] ?? env.NDMPD_DST_PASSWORD ?? env.NDMPD_PASSWORD, auth, tls);
    clients.push(d);
    if (fromSlot !== undefined) await loadRemoteSlot(s, from.device, fromSlot);
    const barcode = slots.length > 0 ? await loadRemoteSlot(d, to.device, slots[0]!) : "";
    let next = 1;
    const catalog = await openCatalog(stateDir);
    const abort = onSignals(clients);
    try {
      const r = await duplicateJob(
        { client: s, device: from.device, name: `${from.where}/${from.device}` },
        { client: d, device: to.device, name: `${to.where}/${to.device}` },
        {
          files,
          listen,
          sameServer: one,
          overwrite: values.overwrite,
          barcode,
          nextCartridge: slots.length > 1 ? async () => {
            if (next >= slots.length) throw new JobError(`the cartridge of slot ${slots[next - 1]} is full and --slot names no further one`);
            return loadRemoteSlot(d, to.device, slots[next++]!);
          } : undefined,
          catalog,
          progress: new Progress(out, progressMode(values.json), "duplicate"),
        },
      );
      return r.ok ? 0 : 1;
    } finally {
      abort();
      catalog.close();
    }
  } finally {
    for (const c of clients) await c.close();
  }
}
