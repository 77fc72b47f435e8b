/**
 * What the CLI's job commands share: option parsing with usage errors, numbers, progress mode,
 * and logging in to a remote NDMP server.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { readFileSync } from "node:fs";
import { NdmpClient, type TlsOptions } from "../client/client.ts";
import { DEFAULT_PORT, parseListen } from "../config.ts";
import type { ProgressMode } from "./progress.ts";
import { JobError } from "./target.ts";

export class UsageError extends Error {}

export function parse<T extends NonNullable<ParseArgsConfig["options"]>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options: { ...options, help: { type: "boolean", short: "h" } }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

export function int(v: string | undefined, what: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`${what} must be a number from ${min} to ${max}`);
  return Number(v);
}

export function progressMode(json: boolean | undefined): ProgressMode {
  return json ? "json" : process.stdout.isTTY ? "tty" : "plain";
}

export const out = { write: (s: string) => process.stdout.write(s) };

export function parseHost(s: string): { host: string; port: number } {
  if (/^\[.*\]:\d+$/.test(s) || /^[^:]+:\d+$/.test(s)) return parseListen(s);
  return { host: s.replace(/^\[(.*)\]$/, "$1"), port: DEFAULT_PORT };
}

/** --tls and its files: NDMPS to every server the command talks to. */
export const TLS_OPTIONS = {
  tls: { type: "boolean" },
  "tls-ca": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
} as const;

/** The TLS settings the options ask for (files read now), or undefined without --tls. */
export function tlsFrom(values: { tls?: boolean; "tls-ca"?: string; "tls-cert"?: string; "tls-key"?: string }): TlsOptions | undefined {
  const given = values["tls-ca"] ?? values["tls-cert"] ?? values["tls-key"];
  if (!values.tls) {
    if (given !== undefined) throw new UsageError("--tls-ca, --tls-cert and --tls-key go with --tls");
    return undefined;
  }
  if ((values["tls-cert"] === undefined) !== (values["tls-key"] === undefined)) throw new UsageError("--tls-cert and --tls-key go together");
  const read = (opt: "tls-ca" | "tls-cert" | "tls-key") => {
    const f = values[opt];
    if (f === undefined) return undefined;
    try {
      return readFileSync(f);
    } catch (e) {
      throw new UsageError(`--${opt} ${f}: ${(e as Error).message}`);
    }
  };
  return { ca: read("tls-ca"), cert: read("tls-cert"), key: read("tls-key") };
}

/** A control connection: plain, or NDMPS when `tls` is given. */
export function connectTo(host: string, port: number, tls: TlsOptions | undefined): Promise<NdmpClient> {
  return tls ? NdmpClient.connectTls(host, port, tls) : NdmpClient.connect(host, port);
}

export async function login(where: string, user: string, password: string | undefined, auth: string, tls?: TlsOptions): Promise<NdmpClient> {
  if (password === undefined) throw new UsageError(`no password for ${where}: give it as an option or in the environment`);
  const a = parseHost(where);
  let c: NdmpClient;
  try {
    c = await connectTo(a.host, a.port, tls);
  } catch (e) {
    throw new JobError(`${where}: ${(e as Error).message}`);
  }
  try {
    await c.open(Math.min(c.offeredVersion, 4));
    if (auth === "text") await c.authText(user, password);
    else await c.authMd5(user, password);
    return c;
  } catch (e) {
    await c.close();
    throw new JobError(`${where}: ${(e as Error).message}`);
  }
}

export function print(s: string): number {
  process.stdout.write(s);
  return 0;
}
