/**
 * `ndmpd config check [FILE]` and `ndmpd config example`: every problem of a configuration
 * file at once, or the effective configuration (defaults filled in, secrets masked).
 */
import { readFileSync, statSync } from "node:fs";
import { stringify } from "smol-toml";
import { ConfigError, DEFAULT_CONFIG_FILE, defaultConfig, loadConfig, loginProblem, parseToml, validateConfig, type Config } from "./config.ts";
import { renderExample } from "./doc/config-keys.ts";
import { VERSION } from "./version.ts";

export interface CheckResult {
  file: string | undefined;
  problems: string[];
  config?: Config;
}

/**
 * Validates FILE and collects every problem: the validator stops at the first one, so each key
 * found wrong is taken out of the document and the rest validated again. A problem that is not
 * about one key (a table of the wrong shape, a user with no password) ends the search, as does
 * a key found wrong twice (a required one).
 */
export function checkConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): CheckResult {
  let source: string;
  try {
    source = readFileSync(file, "utf8");
  } catch (e) {
    return { file, problems: [`${file}: cannot read: ${(e as Error).message}`] };
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(source, file);
  } catch (e) {
    return { file, problems: [(e as Error).message] };
  }
  const problems: string[] = [];
  const seen = new Set<string>();
  for (let round = 0; round < 200; round++) {
    try {
      const config = validateConfig(doc, source, file, env);
      const locked = loginProblem(config, file);
      if (locked) problems.push(locked);
      if (problems.length > 0) return { file, problems };
      // The checks of the file itself (a password readable by everyone) are loadConfig's.
      try {
        return { file, problems, config: loadConfig(file, env) };
      } catch (e) {
        return { file, problems: [(e as Error).message], config };
      }
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      const key = JSON.stringify(e.path ?? null);
      if (seen.has(key)) return { file, problems };
      problems.push(e.message);
      if (!e.path || !removeKey(doc, e.path)) return { file, problems };
      seen.add(key);
    }
  }
  return { file, problems };
}

/** Deletes a leaf key (its last step a name); false when the path names no such key. */
function removeKey(doc: Record<string, unknown>, path: (string | number)[]): boolean {
  const last = path[path.length - 1];
  if (typeof last !== "string" || path.length < 2) return false;
  let t: unknown = doc;
  for (const step of path.slice(0, -1)) {
    if (t === null || typeof t !== "object") return false;
    t = (t as Record<string | number, unknown>)[step];
  }
  if (t === null || typeof t !== "object" || Array.isArray(t) || !(last in (t as object))) return false;
  delete (t as Record<string, unknown>)[last];
  return true;
}

const MASK = "********";

/** The effective configuration as TOML: every default filled in, every secret masked. */
export function renderEffective(c: Config): string {
  const addr = (a: { host: string; port: number }) => (a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`);
  const doc: Record<string, unknown> = {
    server: {
      listen: c.listen.map(addr),
      state_dir: c.stateDir,
      ...(c.dataPorts ? { data_port_range: `${c.dataPorts.from}-${c.dataPorts.to}` } : {}),
      ...(c.dataPeers ? { data_peers: c.dataPeers } : {}),
      max_sessions: c.maxSessions,
      versions: c.versions,
      max_message_size: c.maxMessageSize,
      log_level: c.logLevel,
      log_format: c.logFormat,
      auth_failure_delay_ms: c.authFailureDelayMs,
    },
    identity: c.identity,
    auth: { methods: c.authMethods },
    user: [...c.users.keys()].map((name) => {
      const s = c.scopes.get(name);
      return {
        name,
        password: MASK,
        ...(s?.paths ? { paths: s.paths } : {}),
        ...(s?.devices ? { devices: s.devices } : {}),
        ...(s?.readOnly ? { read_only: true } : {}),
        ...Object.fromEntries([...c.certUsers].filter(([, u]) => u === name).map(([cn]) => ["cert_cn", cn])),
      };
    }),
    ...(c.serverAuth ? { server_auth: { id: c.serverAuth.id, password: MASK, ...(c.serverAuth.allowText ? { allow_text: true } : {}) } } : {}),
    tape: c.tapes.map((t) => ({
      name: t.name,
      type: t.type,
      ...(t.path !== undefined ? { path: t.path } : {}),
      ...(t.capacity !== undefined ? { capacity: t.capacity } : {}),
      no_rewind: t.noRewind,
      serial: t.serial,
    })),
    changer: c.changers.map((x) => ({
      name: x.name,
      type: x.type,
      path: x.path,
      ...(x.type === "virtual"
        ? {
            slots: x.slots,
            import_export: x.importExport,
            drives: x.drives,
            autoload: x.autoload === true,
            ...(x.capacity !== undefined ? { capacity: x.capacity } : {}),
            barcode_prefix: x.barcodePrefix,
            mte_address: x.addresses.mte,
            se_address: x.addresses.se,
            ie_address: x.addresses.ie,
            dte_address: x.addresses.dte,
          }
        : {}),
      serial: x.serial,
    })),
    admin: { socket: c.admin.socket, ...(c.admin.group ? { group: c.admin.group } : {}) },
    ...(c.metrics ? { metrics: { listen: addr(c.metrics.listen) } } : {}),
    ...(c.tls
      ? {
          tls: {
            listen: c.tls.listen.map(addr),
            cert: c.tls.cert,
            key: c.tls.key,
            ...(c.tls.clientCa ? { client_ca: c.tls.clientCa } : {}),
            require_client_cert: c.tls.requireClientCert,
            handshake_timeout_ms: c.tls.handshakeTimeoutMs,
            ...(c.tls.peerCa ? { peer_ca: c.tls.peerCa } : {}),
          },
        }
      : {}),
    limits: {
      auth_timeout_s: c.limits.authTimeoutS,
      preauth_max_message_size: c.limits.preAuthMessageSize,
      max_unauthenticated: c.limits.maxUnauthenticated,
      max_unauthenticated_per_source: c.limits.maxUnauthenticatedPerSource,
      auth_failure_delay_max_ms: c.limits.authFailureDelayMaxMs,
      idle_timeout_s: c.limits.idleTimeoutS,
      max_nlist: c.limits.maxNlist,
    },
  };
  return stringify(doc) + "\n";
}

/** `ndmpd config check [FILE] [--json]`; returns the exit code. */
export function configCheckCommand(file: string | undefined, json: boolean, out: (s: string) => void, err: (s: string) => void, env = process.env): number {
  const named = file ?? env.NDMPD_CONFIG ?? (exists(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : undefined);
  const r: CheckResult = named ? checkConfigFile(named, env) : { file: undefined, problems: [], config: defaultConfig(env) };
  if (r.problems.length > 0) {
    for (const p of r.problems) err(`ndmpd: ${p}\n`);
    err(`ndmpd: ${r.problems.length} problem${r.problems.length === 1 ? "" : "s"} in ${named}\n`);
    return 2;
  }
  const cfg = r.config!;
  if (json) {
    out(JSON.stringify({ file: named ?? null, config: parseToml(renderEffective(cfg), "effective") }) + "\n");
  } else {
    out(`# ${named ? `${named}: OK` : "no configuration file: the embedded defaults"}; the effective configuration (secrets masked):\n`);
    out(renderEffective(cfg));
  }
  return 0;
}

export function configExample(): string {
  return renderExample(VERSION);
}

function exists(f: string): boolean {
  try {
    statSync(f);
    return true;
  } catch {
    return false;
  }
}
