/**
 * The configuration file (TOML) -> a validated Config, and the safe embedded defaults used
 * when there is no file. Every complaint names the key and the line it is on.
 */
import { randomBytes } from "node:crypto";
import { createSecureContext } from "node:tls";
import { existsSync, readFileSync, statfsSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { parse, TomlError } from "smol-toml";
import type { UserScope } from "./security/scope.ts";
import { parseCidr } from "./transport/peers.ts";
import { LOG_LEVELS, type LogFormat, type LogLevel } from "./log.ts";
import { SNAPSHOT_POLICIES, type SnapshotPolicy } from "./snapshot/policy.ts";
import { VERSION } from "./version.ts";

export type AuthMethod = "md5" | "text" | "none";

export interface ListenAddress {
  host: string;
  port: number;
}

export interface TapeConfig {
  /** What a DMA passes to TAPE_OPEN (ndmjob: -f NAME). */
  name: string;
  type: "virtual" | "st";
  /**
   * The cartridge file (virtual; created when missing) or the device node (st: /dev/nst0).
   * Absent for a virtual drive bound to a virtual library: the library loads its cartridges.
   */
  path?: string;
  /** The [[changer]] whose drive this is (set from the changer's `drives`). */
  changer?: string;
  /** Virtual only: the capacity of a cartridge created here. */
  capacity?: number;
  /** Virtual only: keep the position across close/open, like /dev/nst (default: rewind at open). */
  noRewind: boolean;
  /** Reported in CONFIG_GET_TAPE_INFO so a DMA can map changer drive elements to drives. */
  serial: string;
}

export interface Config {
  listen: ListenAddress[];
  /** Protocol versions offered, highest first. */
  versions: number[];
  authMethods: AuthMethod[];
  /** User name -> clear password bytes (NDMP MD5 needs the clear secret). */
  users: Map<string, Buffer>;
  /** User name -> what that user may touch ([[user]] paths, devices, read_only); absent = anything. */
  scopes: Map<string, UserScope>;
  /** What CONNECT_SERVER_AUTH answers with; absent = NOT_SUPPORTED_ERR. */
  serverAuth?: { id: string; password: Buffer; allowText: boolean };
  identity: { vendor: string; product: string; revision: string };
  /** Ports for DATA/MOVER LISTEN; null = any ephemeral port. */
  dataPorts: { from: number; to: number } | null;
  /** CIDR blocks data connections may come from or go to (data_peers); null = any address. */
  dataPeers: string[] | null;
  stateDir: string;
  maxSessions: number;
  maxMessageSize: number;
  logLevel: LogLevel;
  logFormat: LogFormat;
  /** Delay before answering a failed login: slows password guessing. */
  authFailureDelayMs: number;
  tapes: TapeConfig[];
  changers: ChangerConfig[];
  /** The admin socket (ndmpd sessions / kill-session): its path and the group that may use it. */
  admin: { socket: string; group?: string };
  /** The Prometheus listener; absent = off. */
  metrics?: { listen: ListenAddress };
  /** NDMPS: the TLS listener ([tls]); absent = off. */
  tls?: TlsConfig;
  /** A verified client certificate's subject CN -> the user it logs in as ([[user]] cert_cn). */
  certUsers: Map<string, string>;
  /** [limits]: what a hostile, slow or broken peer may hold. */
  limits: Limits;
  /** Set when the password was generated at start-up and must be shown once. */
  generatedPassword?: string;
  /** [backup]: job defaults. snapshot: the SNAPSHOT policy of a job that sends none (src/snapshot). */
  backup: { snapshot: SnapshotPolicy };
  /** [[snapshot]]: the admin's snapshot commands, first match on FILESYSTEM wins (before btrfs). */
  snapshotHooks: SnapshotHook[];
}

export interface SnapshotHook {
  /** A glob (picomatch) matched against FILESYSTEM. */
  path: string;
  /** argv: prints the directory where FILESYSTEM's snapshot can be read. */
  create: string[];
  /** argv: deletes it. */
  delete: string[];
  timeoutMs: number;
}

/** The [limits] table: bounds on what one peer may hold, with safe defaults (see defaultLimits). */
export interface Limits {
  /** Seconds a connection has to authenticate before it is closed. */
  authTimeoutS: number;
  /** The largest record accepted before authentication (max_message_size applies after). */
  preAuthMessageSize: number;
  /** Unauthenticated connections at once, in total; they never take max_sessions' slots. */
  maxUnauthenticated: number;
  /** Unauthenticated connections at once from one source address. */
  maxUnauthenticatedPerSource: number;
  /** The ceiling of the per-source delay after failed logins (it doubles from auth_failure_delay_ms). */
  authFailureDelayMaxMs: number;
  /** Seconds an authenticated session with no job may stay silent; 0 = no limit. */
  idleTimeoutS: number;
  /** Entries of a recovery's nlist (each costs a target and a LOG_FILE). */
  maxNlist: number;
}

export function defaultLimits(): Limits {
  return {
    authTimeoutS: 30,
    preAuthMessageSize: 64 * 1024,
    maxUnauthenticated: 32,
    maxUnauthenticatedPerSource: 8,
    authFailureDelayMaxMs: 10_000,
    idleTimeoutS: 0,
    maxNlist: 1_000_000,
  };
}

export interface TlsConfig {
  listen: ListenAddress[];
  /** PEM files: the server's certificate (chain) and its private key. */
  cert: string;
  key: string;
  /** PEM CA certificates client certificates are verified against; absent = none asked for. */
  clientCa?: string;
  /** CA certificates of other ndmpd servers: data connections in TLS (the NDMPD_DATA_TLS extension). */
  peerCa?: string;
  /** Refuse a connection without a valid client certificate (needs clientCa). */
  requireClientCert: boolean;
  /** A connection that has not finished its handshake by then (plain NDMP, say) is closed. */
  handshakeTimeoutMs: number;
}

export interface ChangerConfig {
  /** What a DMA passes to SCSI_OPEN (ndmjob: -r NAME). */
  name: string;
  type: "virtual" | "sg";
  /** virtual: the library directory (cartridges and state); sg: the device node (/dev/sg3). */
  path: string;
  /** Virtual only: storage slots, import/export elements, and the first address of each type. */
  slots: number;
  importExport: number;
  addresses: { mte: number; se: number; ie: number; dte: number };
  /** Bound [[tape]] drives, in element order (virtual only). */
  drives: string[];
  /** Virtual only: the capacity of the cartridges created at first start. */
  capacity?: number;
  /** Virtual only: volume tags are PREFIX + three digits + "L8". */
  barcodePrefix: string;
  serial: string;
  /** Virtual only: at the library's first start, load the first cartridge into each drive. */
  autoload?: boolean;
}

export class ConfigError extends Error {
  override name = "ConfigError";
  /** The key the problem is at, when there is one (config check goes on past it). */
  constructor(
    message: string,
    readonly path?: (string | number)[],
  ) {
    super(message);
  }
}

export const DEFAULT_PORT = 10000;
/** Offered highest first: NOTIFY_CONNECTION_STATUS announces the first (digest §1.6). */
const SUPPORTED_VERSIONS = [4, 3];

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  // For a trial run or a test: the state directory without writing a configuration file.
  if (env.NDMPD_STATE_DIR && env.NDMPD_STATE_DIR.startsWith("/")) return env.NDMPD_STATE_DIR;
  if (process.getuid?.() === 0) return "/var/lib/ndmpd";
  const xdg = process.env.XDG_STATE_HOME;
  return join(xdg && xdg.startsWith("/") ? xdg : join(homedir(), ".local", "state"), "ndmpd");
}

/** The embedded library's names: what `ndmpd backup` and a DMA use with no configuration. */
export const EMBEDDED_DRIVE = "vt0";
export const EMBEDDED_LIBRARY = "lib0";
const EMBEDDED_SLOTS = 4;

/**
 * The embedded virtual library: one drive and a few cartridges under STATE_DIR/lib0, created on
 * first use. Each cartridge may fill 90% of the space free where the state directory is (when
 * the configuration is made), between 64 MiB and 1 TiB: a backup meets end of medium, not a
 * full disk. A cartridge file grows as it is written, so this reserves nothing.
 */
export function embeddedDevices(stateDir: string): { tapes: TapeConfig[]; changers: ChangerConfig[] } {
  return {
    tapes: [{ name: EMBEDDED_DRIVE, type: "virtual", changer: EMBEDDED_LIBRARY, noRewind: false, serial: `NDMPD-${EMBEDDED_DRIVE}` }],
    changers: [
      {
        name: EMBEDDED_LIBRARY,
        type: "virtual",
        path: join(stateDir, EMBEDDED_LIBRARY),
        slots: EMBEDDED_SLOTS,
        importExport: 1,
        addresses: { mte: 0, se: 1000, ie: 10, dte: 500 },
        drives: [EMBEDDED_DRIVE],
        capacity: fittingCapacity(stateDir),
        barcodePrefix: "NDMP",
        serial: `NDMPD-${EMBEDDED_LIBRARY}`,
        autoload: true,
      },
    ],
  };
}

function fittingCapacity(dir: string): number {
  let d = dir;
  while (!existsSync(d) && dirname(d) !== d) d = dirname(d);
  let free = 64 * 2 ** 30;
  try {
    const s = statfsSync(d);
    free = Number(s.bavail) * Number(s.bsize);
  } catch {
    // no statfs here: the tape format's default
  }
  return Math.max(64 * 2 ** 20, Math.min(2 ** 40, Math.floor((free * 0.9) / 2 ** 20) * 2 ** 20));
}

/** The embedded defaults: loopback only, one user `ndmp`, the embedded library. */
export function defaultConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const fromEnv = env.NDMPD_PASSWORD || undefined; // an empty variable is no password
  const generated = fromEnv ? undefined : randomBytes(12).toString("base64url");
  const stateDir = defaultStateDir(env);
  return {
    listen: [{ host: "127.0.0.1", port: DEFAULT_PORT }],
    versions: [...SUPPORTED_VERSIONS],
    authMethods: ["md5", "text"],
    users: new Map([["ndmp", Buffer.from(fromEnv ?? generated!, "utf8")]]),
    scopes: new Map(),
    certUsers: new Map(),
    identity: { vendor: "ndmpd", product: "ndmpd", revision: VERSION },
    dataPorts: null,
    dataPeers: null,
    stateDir,
    maxSessions: 64,
    maxMessageSize: 32 * 1024 * 1024,
    logLevel: "info",
    logFormat: "human",
    authFailureDelayMs: 250,
    ...embeddedDevices(stateDir),
    admin: { socket: join(stateDir, "admin.sock") },
    limits: defaultLimits(),
    generatedPassword: generated,
    backup: { snapshot: "auto" },
    snapshotHooks: [],
  };
}

/**
 * Why no DMA could log in to a server with this configuration (undefined when one can): no user,
 * and auth.methods all need one. `ndmpd serve` refuses to start on it, `config check` reports it.
 */
export function loginProblem(config: Config, file: string): string | undefined {
  if (config.users.size > 0 || config.authMethods.includes("none")) return undefined;
  return (
    `${file}: no [[user]], so no DMA can log in (auth.methods = ${config.authMethods.join(", ")} need one): ` +
    `add a [[user]] table with name and password_file (or password / password_env), ` +
    `or set NDMPD_PASSWORD for the user ndmp`
  );
}

/** Where the CLI finds its configuration when none is named. */
export const DEFAULT_CONFIG_FILE = "/etc/ndmpd/ndmpd.toml";

/**
 * The CLI's configuration: FILE, else $NDMPD_CONFIG, else /etc/ndmpd/ndmpd.toml when it exists,
 * else the embedded defaults (`embedded` is then true, so the caller can say so).
 */
export function loadConfigOrDefault(file?: string, env: NodeJS.ProcessEnv = process.env): { config: Config; embedded: boolean } {
  const named = file ?? env.NDMPD_CONFIG;
  if (named) return { config: loadConfig(named, env), embedded: false };
  if (existsSync(DEFAULT_CONFIG_FILE)) return { config: loadConfig(DEFAULT_CONFIG_FILE, env), embedded: false };
  return { config: defaultConfig(env), embedded: true };
}

/** Reads and validates a config file. Throws ConfigError with "file:line: key: problem". */
export function loadConfig(path: string, env: NodeJS.ProcessEnv = process.env): Config {
  let source: string;
  try {
    source = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(`${path}: cannot read: ${(e as Error).message}`);
  }
  const cfg = parseConfig(source, path, env);
  if (hasInlineSecret(source)) {
    const mode = statSync(path).mode;
    if (mode & 0o004) {
      throw new ConfigError(
        `${path}: holds a password but is readable by everyone (mode ${(mode & 0o777).toString(8)}); ` +
          `chmod o-r it, or use password_file / password_env`,
      );
    }
  }
  return cfg;
}

function hasInlineSecret(source: string): boolean {
  return /^\s*password\s*=/m.test(source);
}

type Table = Record<string, unknown>;

export function parseConfig(source: string, file = "config", env: NodeJS.ProcessEnv = process.env): Config {
  return validateConfig(parseToml(source, file), source, file, env);
}

/** The TOML document, or a ConfigError naming the line. */
export function parseToml(source: string, file: string): Record<string, unknown> {
  try {
    return parse(source) as Table;
  } catch (e) {
    if (e instanceof TomlError) throw new ConfigError(`${file}:${e.line}: ${e.message.split("\n")[0]}`);
    throw e;
  }
}

/** Validates a parsed document (`source` only locates the lines of problems). */
export function validateConfig(doc: Record<string, unknown>, source: string, file = "config", env: NodeJS.ProcessEnv = process.env): Config {
  const at = (path: (string | number)[], problem: string): ConfigError =>
    new ConfigError(`${file}:${locate(source, path)}: ${formatKey(path)}: ${problem}`, path);

  const cfg = defaultConfig({ NDMPD_STATE_DIR: env.NDMPD_STATE_DIR });
  delete cfg.generatedPassword;
  // The users are the file's [[user]] tables. Without any, $NDMPD_PASSWORD keeps the embedded
  // user `ndmp` (as with no file); otherwise there is nobody, and `serve` refuses (loginProblem):
  // a random password nobody is shown would lock every DMA out without a word.
  const fromEnv = env.NDMPD_PASSWORD || undefined;
  cfg.users = fromEnv ? new Map([["ndmp", Buffer.from(fromEnv, "utf8")]]) : new Map();
  // A configuration file names its own devices: the embedded library is for running without one.
  cfg.tapes = [];
  cfg.changers = [];
  checkKeys(doc, [], ["server", "identity", "auth", "user", "server_auth", "tape", "changer", "admin", "metrics", "limits", "backup", "snapshot", "tls"], at);

  const server = table(doc, ["server"], at);
  checkKeys(server, ["server"], [
    "listen",
    "versions",
    "state_dir",
    "data_port_range",
    "data_peers",
    "max_sessions",
    "max_message_size",
    "log_level",
    "log_format",
    "auth_failure_delay_ms",
  ], at);
  if (server.listen !== undefined) {
    const list = Array.isArray(server.listen) ? server.listen : [server.listen];
    if (list.length === 0) throw at(["server", "listen"], "needs at least one address");
    cfg.listen = list.map((v) => {
      if (typeof v !== "string") throw at(["server", "listen"], "must be \"ADDR:PORT\" strings");
      try {
        return parseListen(v);
      } catch (e) {
        throw at(["server", "listen"], (e as Error).message);
      }
    });
  }
  if (server.versions !== undefined) {
    const v = server.versions;
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => SUPPORTED_VERSIONS.includes(x as number))) {
      throw at(["server", "versions"], `must be a non-empty list of ${SUPPORTED_VERSIONS.join(", ")}`);
    }
    cfg.versions = [...new Set(v as number[])].sort((a, b) => b - a);
  }
  if (server.state_dir !== undefined) {
    if (typeof server.state_dir !== "string" || !server.state_dir.startsWith("/")) {
      throw at(["server", "state_dir"], "must be an absolute path");
    }
    cfg.stateDir = server.state_dir;
    cfg.admin.socket = join(cfg.stateDir, "admin.sock");
  }
  if (server.data_port_range !== undefined) {
    const m = typeof server.data_port_range === "string" && /^(\d+)-(\d+)$/.exec(server.data_port_range);
    const from = m ? Number(m[1]) : NaN;
    const to = m ? Number(m[2]) : NaN;
    if (!m || from < 1 || to > 65535 || from > to) throw at(["server", "data_port_range"], 'must be "FROM-TO" within 1-65535');
    cfg.dataPorts = { from, to };
  }
  if (server.data_peers !== undefined) {
    const list = server.data_peers;
    if (!Array.isArray(list) || !list.every((x) => typeof x === "string")) {
      throw at(["server", "data_peers"], 'must be a list of "ADDRESS/PREFIX" strings, e.g. ["10.0.0.0/8", "::1/128"]');
    }
    for (const c of list) {
      try {
        parseCidr(c);
      } catch (e) {
        throw at(["server", "data_peers"], (e as Error).message);
      }
    }
    cfg.dataPeers = [...list];
  }
  if (server.max_sessions !== undefined) cfg.maxSessions = intIn(server.max_sessions, 1, 100_000, ["server", "max_sessions"], at);
  if (server.max_message_size !== undefined) {
    const n = parseSize(server.max_message_size);
    if (n === undefined || n < 64 * 1024 || n > 1024 * 1024 * 1024) {
      throw at(["server", "max_message_size"], 'must be a size between "64KiB" and "1GiB"');
    }
    cfg.maxMessageSize = n;
  }
  if (server.log_level !== undefined) {
    if (!LOG_LEVELS.includes(server.log_level as LogLevel)) throw at(["server", "log_level"], `must be one of ${LOG_LEVELS.join(", ")}`);
    cfg.logLevel = server.log_level as LogLevel;
  }
  if (server.log_format !== undefined) {
    if (server.log_format !== "human" && server.log_format !== "json") throw at(["server", "log_format"], 'must be "human" or "json"');
    cfg.logFormat = server.log_format;
  }
  if (server.auth_failure_delay_ms !== undefined) {
    cfg.authFailureDelayMs = intIn(server.auth_failure_delay_ms, 0, 10_000, ["server", "auth_failure_delay_ms"], at);
  }

  const identity = table(doc, ["identity"], at);
  checkKeys(identity, ["identity"], ["vendor", "product", "revision"], at);
  for (const k of ["vendor", "product", "revision"] as const) {
    const v = identity[k];
    if (v === undefined) continue;
    if (typeof v !== "string" || v.length === 0 || v.length > 255) throw at(["identity", k], "must be a string of 1-255 characters");
    cfg.identity[k] = v;
  }

  const auth = table(doc, ["auth"], at);
  checkKeys(auth, ["auth"], ["methods"], at);
  if (auth.methods !== undefined) {
    const ok: AuthMethod[] = ["md5", "text", "none"];
    const m = auth.methods;
    if (!Array.isArray(m) || m.length === 0 || !m.every((x) => ok.includes(x as AuthMethod))) {
      throw at(["auth", "methods"], 'must be a non-empty list of "md5", "text", "none"');
    }
    cfg.authMethods = [...new Set(m as AuthMethod[])];
  }

  if (doc.user !== undefined) {
    if (!Array.isArray(doc.user)) throw at(["user"], "must be an array of tables: [[user]]");
    cfg.users = new Map();
    doc.user.forEach((u: Table, i: number) => {
      const p = ["user", i];
      checkKeys(u, p, ["name", "password", "password_file", "password_env", "paths", "devices", "read_only", "cert_cn"], at);
      if (typeof u.name !== "string" || !/^[\x21-\x7e]{1,64}$/.test(u.name)) {
        throw at([...p, "name"], "must be 1-64 printable characters without spaces");
      }
      if (cfg.users.has(u.name)) throw at([...p, "name"], `user ${u.name} is defined twice`);
      if (u.cert_cn !== undefined) {
        if (typeof u.cert_cn !== "string" || u.cert_cn.length === 0) throw at([...p, "cert_cn"], "must be a certificate's subject CN");
        if (cfg.certUsers.has(u.cert_cn)) throw at([...p, "cert_cn"], `CN ${u.cert_cn} is mapped to two users`);
        cfg.certUsers.set(u.cert_cn, u.name);
      }
      // A user known by its certificate alone has no password: no password login works for it.
      const noPassword = u.cert_cn !== undefined && u.password === undefined && u.password_file === undefined && u.password_env === undefined;
      cfg.users.set(u.name, noPassword ? Buffer.alloc(0) : secret(u, p, env, at));
      const scope = parseScope(u, p, at);
      if (scope) cfg.scopes.set(u.name, scope);
    });
  }
  if (doc.server_auth !== undefined) {
    const s = table(doc, ["server_auth"], at);
    checkKeys(s, ["server_auth"], ["id", "password", "password_file", "password_env", "allow_text"], at);
    if (typeof s.id !== "string" || s.id.length === 0) throw at(["server_auth", "id"], "must be a non-empty string");
    if (s.allow_text !== undefined && typeof s.allow_text !== "boolean") throw at(["server_auth", "allow_text"], "must be true or false");
    cfg.serverAuth = { id: s.id, password: secret(s, ["server_auth"], env, at), allowText: s.allow_text === true };
  }
  parseOperations(doc, cfg, at);
  parseLimits(doc, cfg, at);
  parseSnapshots(doc, cfg, at);
  // Changers first: a tape bound to a virtual library needs no path of its own.
  const bound = new Map<string, string>();
  if (doc.changer !== undefined) {
    cfg.changers = parseChangers(doc.changer, at);
    for (const c of cfg.changers) for (const d of c.drives) bound.set(d, c.name);
  }
  if (doc.tape !== undefined) cfg.tapes = parseTapes(doc.tape, at, bound);
  // A scope naming a device that does not exist is a typo that would lock the user out.
  if (Array.isArray(doc.user)) {
    doc.user.forEach((u: Table, i: number) => {
      const s = cfg.scopes.get(u.name as string);
      for (const d of s?.devices ?? []) {
        if (!cfg.tapes.some((t) => t.name === d) && !cfg.changers.some((c) => c.name === d)) {
          throw at(["user", i, "devices"], `no [[tape]] or [[changer]] named ${d}`);
        }
      }
    });
  }
  for (const [i, c] of cfg.changers.entries()) {
    for (const d of c.drives) {
      const t = cfg.tapes.find((x) => x.name === d);
      if (!t) throw at(["changer", i, "drives"], `no [[tape]] named ${d}`);
      if (t.type !== "virtual") throw at(["changer", i, "drives"], `${d} is not a virtual tape: a virtual library drives virtual tapes only`);
    }
  }
  return cfg;
}

/** [tls]: the NDMPS listener. The certificate and keys are loaded here once, so a bad file is a config error. */
function parseTls(doc: Table, cfg: Config, at: At): void {
  if (doc.tls === undefined) return;
  const t = table(doc, ["tls"], at);
  checkKeys(t, ["tls"], ["listen", "cert", "key", "client_ca", "require_client_cert", "handshake_timeout_ms", "peer_ca"], at);
  const list = Array.isArray(t.listen) ? t.listen : t.listen === undefined ? [] : [t.listen];
  if (list.length === 0) throw at(["tls", "listen"], 'needs at least one "ADDR:PORT" (ONTAP uses port 30000)');
  const listen = list.map((v) => {
    if (typeof v !== "string") throw at(["tls", "listen"], 'must be "ADDR:PORT" strings');
    try {
      return parseListen(v);
    } catch (e) {
      throw at(["tls", "listen"], (e as Error).message);
    }
  });
  const file = (k: string, secretKey = false): string => {
    const f = t[k];
    if (typeof f !== "string" || !f.startsWith("/")) throw at(["tls", k], "must be an absolute path");
    let mode: number;
    try {
      mode = statSync(f).mode;
      readFileSync(f);
    } catch (e) {
      throw at(["tls", k], `cannot read ${f}: ${(e as Error).message}`);
    }
    if (secretKey && mode & 0o004) throw at(["tls", k], `${f} is readable by everyone; chmod o-r it`);
    return f;
  };
  const tls: TlsConfig = { listen, cert: file("cert"), key: file("key", true), requireClientCert: false, handshakeTimeoutMs: 10_000 };
  if (t.client_ca !== undefined) tls.clientCa = file("client_ca");
  if (t.peer_ca !== undefined) tls.peerCa = file("peer_ca");
  if (t.require_client_cert !== undefined) {
    if (typeof t.require_client_cert !== "boolean") throw at(["tls", "require_client_cert"], "must be true or false");
    if (t.require_client_cert && !tls.clientCa) throw at(["tls", "require_client_cert"], "needs client_ca, the CA client certificates are verified against");
    tls.requireClientCert = t.require_client_cert;
  }
  if (t.handshake_timeout_ms !== undefined) tls.handshakeTimeoutMs = intIn(t.handshake_timeout_ms, 100, 600_000, ["tls", "handshake_timeout_ms"], at);
  try {
    for (const ca of [tls.clientCa, tls.peerCa]) {
      createSecureContext({ cert: readFileSync(tls.cert), key: readFileSync(tls.key), ...(ca ? { ca: readFileSync(ca) } : {}) });
    }
  } catch (e) {
    throw at(["tls", "cert"], `the certificate, key or CA cannot be used: ${(e as Error).message}`);
  }
  cfg.tls = tls;
}

/** A [[user]]'s scope keys; undefined when it has none (the user may touch anything). */
function parseScope(u: Table, p: (string | number)[], at: At): UserScope | undefined {
  if (u.paths === undefined && u.devices === undefined && u.read_only === undefined) return undefined;
  const scope: UserScope = { readOnly: false };
  if (u.paths !== undefined) {
    if (!Array.isArray(u.paths) || !u.paths.every((x) => typeof x === "string" && x.startsWith("/"))) {
      throw at([...p, "paths"], "must be a list of absolute paths");
    }
    scope.paths = u.paths.map((x: string) => (x.length > 1 ? x.replace(/\/+$/, "") : x));
  }
  if (u.devices !== undefined) {
    if (!Array.isArray(u.devices) || !u.devices.every((x) => typeof x === "string")) throw at([...p, "devices"], "must be a list of device names");
    scope.devices = [...u.devices];
  }
  if (u.read_only !== undefined) {
    if (typeof u.read_only !== "boolean") throw at([...p, "read_only"], "must be true or false");
    scope.readOnly = u.read_only;
  }
  return scope;
}

function parseTapes(list: unknown, at: At, bound: Map<string, string>): TapeConfig[] {
  if (!Array.isArray(list)) throw at(["tape"], "must be an array of tables: [[tape]]");
  const names = new Set<string>();
  return list.map((t: Table, i: number) => {
    const p = ["tape", i];
    checkKeys(t, p, ["name", "type", "path", "capacity", "no_rewind", "serial"], at);
    if (typeof t.name !== "string" || !/^[\x21-\x7e]{1,128}$/.test(t.name)) throw at([...p, "name"], "must be 1-128 printable characters without spaces");
    if (names.has(t.name)) throw at([...p, "name"], `tape ${t.name} is defined twice`);
    names.add(t.name);
    const type = t.type ?? "virtual";
    if (type !== "virtual" && type !== "st") throw at([...p, "type"], 'must be "virtual" or "st"');
    const changer = bound.get(t.name);
    if (changer !== undefined && t.path !== undefined) {
      throw at([...p, "path"], `${t.name} is a drive of changer ${changer}, which loads its cartridges: remove path`);
    }
    if (changer === undefined && (typeof t.path !== "string" || !t.path.startsWith("/"))) throw at([...p, "path"], "must be an absolute path");
    let capacity: number | undefined;
    if (t.capacity !== undefined) {
      if (type !== "virtual") throw at([...p, "capacity"], "only a virtual tape has a configured capacity");
      capacity = parseSize(t.capacity);
      if (capacity === undefined || capacity < 1024 * 1024) throw at([...p, "capacity"], 'must be a size of at least "1MiB"');
    }
    if (t.no_rewind !== undefined && typeof t.no_rewind !== "boolean") throw at([...p, "no_rewind"], "must be true or false");
    if (t.serial !== undefined && (typeof t.serial !== "string" || !/^[\x21-\x7e]{1,32}$/.test(t.serial))) {
      throw at([...p, "serial"], "must be 1-32 printable characters");
    }
    return {
      name: t.name,
      type,
      path: t.path as string | undefined,
      ...(changer !== undefined ? { changer } : {}),
      capacity,
      noRewind: t.no_rewind === true,
      serial: (t.serial as string | undefined) ?? `NDMPD-${t.name}`.slice(0, 32),
    };
  });
}

function parseChangers(list: unknown, at: At): ChangerConfig[] {
  if (!Array.isArray(list)) throw at(["changer"], "must be an array of tables: [[changer]]");
  const names = new Set<string>();
  const drivesSeen = new Set<string>();
  return list.map((c: Table, i: number) => {
    const p = ["changer", i];
    checkKeys(c, p, ["name", "type", "path", "slots", "import_export", "drives", "capacity", "barcode_prefix", "serial", "mte_address", "se_address", "ie_address", "dte_address", "autoload"], at);
    if (typeof c.name !== "string" || !/^[\x21-\x7e]{1,128}$/.test(c.name)) throw at([...p, "name"], "must be 1-128 printable characters without spaces");
    if (names.has(c.name)) throw at([...p, "name"], `changer ${c.name} is defined twice`);
    names.add(c.name);
    const type = c.type ?? "virtual";
    if (type !== "virtual" && type !== "sg") throw at([...p, "type"], 'must be "virtual" or "sg"');
    if (typeof c.path !== "string" || !c.path.startsWith("/")) throw at([...p, "path"], "must be an absolute path");
    if (type === "sg") {
      for (const k of ["slots", "import_export", "drives", "capacity", "barcode_prefix", "mte_address", "se_address", "ie_address", "dte_address", "autoload"]) {
        if (c[k] !== undefined) throw at([...p, k], "only a virtual library has this setting (a real one reports its own)");
      }
    }
    const slots = c.slots === undefined ? 24 : intIn(c.slots, 1, 999, [...p, "slots"], at);
    const importExport = c.import_export === undefined ? 1 : intIn(c.import_export, 0, 64, [...p, "import_export"], at);
    const addr = (k: string, d: number) => (c[k] === undefined ? d : intIn(c[k], 0, 65535, [...p, k], at));
    const addresses = { mte: addr("mte_address", 0), se: addr("se_address", 1000), ie: addr("ie_address", 10), dte: addr("dte_address", 500) };
    let drives: string[] = [];
    if (c.drives !== undefined) {
      if (!Array.isArray(c.drives) || !c.drives.every((d) => typeof d === "string")) throw at([...p, "drives"], "must be a list of [[tape]] names");
      drives = c.drives as string[];
      for (const d of drives) {
        if (drivesSeen.has(d)) throw at([...p, "drives"], `${d} is bound twice`);
        drivesSeen.add(d);
      }
    }
    const ranges: Array<[string, number, number]> = [["mte_address", addresses.mte, 1], ["se_address", addresses.se, slots], ["ie_address", addresses.ie, importExport], ["dte_address", addresses.dte, drives.length]];
    for (const [k, first, n] of ranges) if (first + n - 1 > 65535) throw at([...p, k], "the addresses of these elements run past 65535");
    for (const [k1, f1, n1] of ranges) {
      for (const [k2, f2, n2] of ranges) {
        if (k1 < k2 && n1 > 0 && n2 > 0 && f1 < f2 + n2 && f2 < f1 + n1) throw at([...p, k2], `element addresses overlap those of ${k1}`);
      }
    }
    let capacity: number | undefined;
    if (c.capacity !== undefined) {
      capacity = parseSize(c.capacity);
      if (capacity === undefined || capacity < 64 * 1024) throw at([...p, "capacity"], 'must be a size of at least "64KiB"');
    }
    const prefix = c.barcode_prefix ?? "NDMP";
    if (typeof prefix !== "string" || !/^[A-Z0-9]{1,27}$/.test(prefix)) throw at([...p, "barcode_prefix"], "must be 1-27 characters A-Z, 0-9");
    if (c.serial !== undefined && (typeof c.serial !== "string" || !/^[\x21-\x7e]{1,32}$/.test(c.serial))) {
      throw at([...p, "serial"], "must be 1-32 printable characters");
    }
    if (c.autoload !== undefined && typeof c.autoload !== "boolean") throw at([...p, "autoload"], "must be true or false");
    return {
      name: c.name,
      type,
      path: c.path,
      ...(c.autoload === true ? { autoload: true } : {}),
      slots,
      importExport,
      addresses,
      drives,
      capacity,
      barcodePrefix: prefix,
      serial: (c.serial as string | undefined) ?? `NDMPD-${c.name}`.slice(0, 32),
    };
  });
}

type At = (path: (string | number)[], problem: string) => ConfigError;

/** [limits]: every key optional, each with a safe default. */
function parseLimits(doc: Table, cfg: Config, at: At): void {
  const t = table(doc, ["limits"], at);
  const keys = ["auth_timeout_s", "preauth_max_message_size", "max_unauthenticated", "max_unauthenticated_per_source", "auth_failure_delay_max_ms", "idle_timeout_s", "max_nlist"];
  checkKeys(t, ["limits"], keys, at);
  const l = cfg.limits;
  const int = (k: string, min: number, max: number) => intIn(t[k], min, max, ["limits", k], at);
  if (t.auth_timeout_s !== undefined) l.authTimeoutS = int("auth_timeout_s", 1, 3600);
  if (t.preauth_max_message_size !== undefined) {
    const n = parseSize(t.preauth_max_message_size);
    if (n === undefined || n < 1024 || n > 16 * 1024 * 1024) throw at(["limits", "preauth_max_message_size"], 'must be a size between "1KiB" and "16MiB"');
    l.preAuthMessageSize = n;
  }
  if (t.max_unauthenticated !== undefined) l.maxUnauthenticated = int("max_unauthenticated", 1, 100_000);
  if (t.max_unauthenticated_per_source !== undefined) l.maxUnauthenticatedPerSource = int("max_unauthenticated_per_source", 1, 100_000);
  if (t.auth_failure_delay_max_ms !== undefined) l.authFailureDelayMaxMs = int("auth_failure_delay_max_ms", 0, 600_000);
  if (t.idle_timeout_s !== undefined) l.idleTimeoutS = int("idle_timeout_s", 0, 7 * 86400);
  if (t.max_nlist !== undefined) l.maxNlist = int("max_nlist", 1, 100_000_000);
}

/** [admin] and [metrics]: the admin socket and the Prometheus listener. */
function parseOperations(doc: Table, cfg: Config, at: At): void {
  const admin = table(doc, ["admin"], at);
  checkKeys(admin, ["admin"], ["socket", "group"], at);
  if (admin.socket !== undefined) {
    if (typeof admin.socket !== "string" || !admin.socket.startsWith("/") || Buffer.byteLength(admin.socket) > 107) {
      throw at(["admin", "socket"], "must be an absolute path of at most 107 bytes (a Unix socket's limit)");
    }
    cfg.admin.socket = admin.socket;
  }
  if (admin.group !== undefined) {
    if (typeof admin.group !== "string" || !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/.test(admin.group)) throw at(["admin", "group"], "must be a group name");
    cfg.admin.group = admin.group;
  }
  parseTls(doc, cfg, at);
  const metrics = table(doc, ["metrics"], at);
  checkKeys(metrics, ["metrics"], ["listen"], at);
  if (metrics.listen !== undefined) {
    if (typeof metrics.listen !== "string") throw at(["metrics", "listen"], 'must be "ADDR:PORT"');
    try {
      cfg.metrics = { listen: parseListen(metrics.listen) };
    } catch (e) {
      throw at(["metrics", "listen"], (e as Error).message);
    }
  }
}

/** [backup] snapshot and the [[snapshot]] hooks. */
function parseSnapshots(doc: Table, cfg: Config, at: At): void {
  const backup = table(doc, ["backup"], at);
  checkKeys(backup, ["backup"], ["snapshot"], at);
  if (backup.snapshot !== undefined) {
    if (!SNAPSHOT_POLICIES.includes(backup.snapshot as SnapshotPolicy)) throw at(["backup", "snapshot"], `must be one of ${SNAPSHOT_POLICIES.join(", ")}`);
    cfg.backup.snapshot = backup.snapshot as SnapshotPolicy;
  }
  if (doc.snapshot === undefined) return;
  if (!Array.isArray(doc.snapshot)) throw at(["snapshot"], "must be an array of tables: [[snapshot]]");
  cfg.snapshotHooks = doc.snapshot.map((h: Table, i: number) => {
    const p = ["snapshot", i];
    checkKeys(h, p, ["path", "create", "delete", "timeout"], at);
    if (typeof h.path !== "string" || !h.path.startsWith("/")) throw at([...p, "path"], 'must be an absolute path or pattern ("/srv/db", "/srv/*")');
    const argv = (k: "create" | "delete") => {
      const v = h[k];
      if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === "string") || !(v[0] as string).startsWith("/")) {
        throw at([...p, k], 'must be a command as a list of strings, the program as an absolute path (["/usr/local/sbin/snap", "create", "{path}"]); no shell runs it');
      }
      return v as string[];
    };
    const timeout = h.timeout === undefined ? 60 : intIn(h.timeout, 1, 3600, [...p, "timeout"], at);
    return { path: h.path, create: argv("create"), delete: argv("delete"), timeoutMs: timeout * 1000 };
  });
}

function secret(t: Table, p: (string | number)[], env: NodeJS.ProcessEnv, at: At): Buffer {
  const given = ["password", "password_file", "password_env"].filter((k) => t[k] !== undefined);
  if (given.length !== 1) throw at(p, "needs exactly one of password, password_file, password_env");
  let pw: string;
  if (t.password !== undefined) {
    if (typeof t.password !== "string") throw at([...p, "password"], "must be a string");
    pw = t.password;
  } else if (t.password_file !== undefined) {
    const f = t.password_file;
    if (typeof f !== "string" || !f.startsWith("/")) throw at([...p, "password_file"], "must be an absolute path");
    let st;
    try {
      st = statSync(f);
      pw = readFileSync(f, "utf8").replace(/\r?\n$/, "");
    } catch (e) {
      throw at([...p, "password_file"], `cannot read ${f}: ${(e as Error).message}`);
    }
    if (st.mode & 0o004) throw at([...p, "password_file"], `${f} is readable by everyone; chmod o-r it`);
  } else {
    const name = t.password_env;
    if (typeof name !== "string") throw at([...p, "password_env"], "must name an environment variable");
    const v = env[name];
    if (v === undefined) throw at([...p, "password_env"], `environment variable ${name} is not set`);
    pw = v;
  }
  if (pw.length === 0) throw at(p, "the password is empty");
  return Buffer.from(pw, "utf8");
}

function table(doc: Table, path: string[], at: At): Table {
  const v = doc[path[path.length - 1]!];
  if (v === undefined) return {};
  if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof Date) throw at(path, "must be a table");
  return v as Table;
}

function checkKeys(t: Table, path: (string | number)[], known: string[], at: At): void {
  for (const k of Object.keys(t)) {
    if (!known.includes(k)) throw at([...path, k], `unknown key (known here: ${known.join(", ")})`);
  }
}

function intIn(v: unknown, min: number, max: number, path: (string | number)[], at: At): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw at(path, `must be an integer from ${min} to ${max}`);
  return v;
}

export function parseListen(s: string): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(s.trim());
  if (!m) throw new Error(`"${s}" is not ADDR:PORT (IPv6 as [ADDR]:PORT)`);
  const port = Number(m[3]);
  // Port 0 asks the kernel for any free port (tests use it; the log says which).
  if (port > 65535) throw new Error(`port ${port} out of range`);
  return { host: m[1] ?? m[2]!, port };
}

export function parseSize(v: unknown): number | undefined {
  if (typeof v === "number" && Number.isInteger(v) && v >= 0) return v;
  if (typeof v !== "string") return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$/i.exec(v);
  if (!m) return undefined;
  const unit = (m[2] ?? "B").toUpperCase();
  const mult: Record<string, number> = {
    B: 1,
    KB: 1e3,
    MB: 1e6,
    GB: 1e9,
    TB: 1e12,
    KIB: 2 ** 10,
    MIB: 2 ** 20,
    GIB: 2 ** 30,
    TIB: 2 ** 40,
  };
  return Math.round(Number(m[1]) * mult[unit]!);
}

function formatKey(path: (string | number)[]): string {
  return path.map((p) => (typeof p === "number" ? `[${p}]` : p)).join(".").replace(/\.\[/g, "[");
}

/**
 * The 1-based line where `path` is set, found by scanning table headers, so that
 * validation errors (which TOML parsers don't locate) still point at a line.
 */
export function locate(source: string, path: (string | number)[]): number {
  const lines = source.split("\n");
  const arrayCounts = new Map<string, number>();
  let current: (string | number)[] = [];
  const want = path.filter((p) => typeof p === "string" || typeof p === "number");
  const tablePath = want.slice(0, -1);
  const key = want[want.length - 1];
  let tableLine = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    let m;
    if ((m = /^\[\[\s*([^\]]+?)\s*\]\]/.exec(line))) {
      const name = m[1]!;
      const n = arrayCounts.get(name) ?? 0;
      arrayCounts.set(name, n + 1);
      current = [...name.split("."), n];
      if (sameStart(want, current)) tableLine ||= i + 1;
      if (same(current, want)) return i + 1;
    } else if ((m = /^\[\s*([^\]]+?)\s*\]/.exec(line))) {
      current = m[1]!.split(".");
      if (sameStart(want, current)) tableLine ||= i + 1;
      if (same(current, want)) return i + 1;
    } else if ((m = /^([A-Za-z0-9_-]+)\s*=/.exec(line))) {
      if (same(current, tablePath) && m[1] === key) return i + 1;
      if (current.length === 0 && want.length === 1 && m[1] === key) return i + 1;
    }
  }
  return tableLine || 1;
}

function same(a: (string | number)[], b: (string | number)[]): boolean {
  return a.length === b.length && a.every((x, i) => String(x) === String(b[i]));
}
function sameStart(full: (string | number)[], prefix: (string | number)[]): boolean {
  return prefix.length <= full.length && prefix.every((x, i) => String(x) === String(full[i]));
}
