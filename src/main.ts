#!/usr/bin/env bun
/**
 * The ndmpd command line: serve | query | version | help.
 */
// The compiled binary starts at launch.ts (which may start it again first); from source, here.
import { parseArgs, type ParseArgsConfig } from "node:util";
import { runQuery } from "./client/query.ts";
import { ConfigError, defaultConfig, DEFAULT_PORT, loadConfig, loadConfigOrDefault, loginProblem, parseListen, type Config } from "./config.ts";
import { LOG_LEVELS, Logger, type LogFormat, type LogLevel } from "./log.ts";
import { formatInventory, moveMedium, readInventory } from "./devices/changer/smc.ts";
import { DeviceRegistry } from "./devices/registry.ts";
import { JOB_HELP, runJobCommand } from "./dma/cli.ts";
import { connectTo, TLS_OPTIONS, tlsFrom } from "./dma/cli-common.ts";
import { NdmpServer } from "./server/listener.ts";
import { cleanupLeftovers } from "./snapshot/index.ts";
import { loadNative } from "./native/index.ts";
import { VERSION } from "./version.ts";
import { COMMANDS } from "./doc/commands.ts";
import { configCheckCommand, configExample } from "./config-check.ts";
import { adminSocketPath, killSessionCommand, sessionsCommand } from "./admin/cli.ts";
import { AdminSocket } from "./admin/socket.ts";
import { MetricsListener } from "./metrics/http.ts";
import { observe } from "./metrics/metrics.ts";
import { commandHelp, mainHelp, manPage } from "./doc/render.ts";

/** Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad configuration. */
const EXIT_USAGE = 2;

/** Help texts, rendered from the documentation data (src/doc/commands.ts) like the man page. */
const HELP: Record<string, string> = {
  main: mainHelp(),
  ...Object.fromEntries(COMMANDS.map((c) => [c.name, commandHelp(c.name)!])),
};

class UsageError extends Error {}

function parse<T extends NonNullable<ParseArgsConfig["options"]>>(args: string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args, options: { ...options, help: { type: "boolean", short: "h" } }, allowPositionals, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

async function serve(args: string[]): Promise<number> {
  const { values } = parse(args, {
    config: { type: "string", short: "c" },
    listen: { type: "string", short: "l", multiple: true },
    "log-level": { type: "string" },
    "log-format": { type: "string" },
  });
  if (values.help) return print(HELP.serve!);
  let config: Config;
  try {
    config = values.config ? loadConfig(values.config) : defaultConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`ndmpd: ${e.message}\n`);
      return EXIT_USAGE;
    }
    throw e;
  }
  const locked = values.config ? loginProblem(config, values.config) : undefined;
  if (locked) {
    process.stderr.write(`ndmpd: ${locked}\n`);
    return EXIT_USAGE;
  }
  if (values.listen) {
    try {
      config.listen = values.listen.map(parseListen);
    } catch (e) {
      throw new UsageError(`--listen: ${(e as Error).message}`);
    }
  }
  const level = values["log-level"] ?? config.logLevel;
  if (!LOG_LEVELS.includes(level as LogLevel)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(", ")}`);
  const format = values["log-format"] ?? config.logFormat;
  if (format !== "human" && format !== "json") throw new UsageError("--log-format must be human or json");
  const log = new Logger(level as LogLevel, format as LogFormat);

  if (config.generatedPassword) {
    // Printed once, on stdout, so that it is not mixed into the log stream.
    process.stdout.write(
      `ndmpd: no configuration and no NDMPD_PASSWORD: user 'ndmp' has the one-time password ${config.generatedPassword}\n`,
    );
  }
  if (!values.config) {
    const lib = config.changers[0]!;
    process.stdout.write(`ndmpd: no configuration: embedded library ${lib.name} with drive ${lib.drives[0]} (${lib.slots} cartridges in ${lib.path})\n`);
  }
  let devices: DeviceRegistry;
  try {
    devices = await DeviceRegistry.fromConfig(config.tapes, config.changers);
  } catch (e) {
    log.error("cannot set up the configured devices", { err: e });
    return 1;
  }
  // A bug in one session's asynchronous work must not take every other session down with it:
  // log it loudly and keep serving (each session's own error paths halt its services).
  process.on("unhandledRejection", (reason) => log.error("unhandled rejection (a bug)", { err: reason, stack: (reason as Error)?.stack }));
  process.on("uncaughtException", (err) => log.error("uncaught exception (a bug)", { err, stack: err.stack }));
  // Snapshots a crash or kill -9 left behind (recorded in the state directory): deleted before
  // any job can make new ones.
  await cleanupLeftovers(config.stateDir, await loadNative(), log.child({ service: "snapshot" }));
  const server = new NdmpServer(config, devices, log);
  // The admin socket is for operators; a server that cannot make it still serves its DMAs.
  // Made before the NDMP port opens, so it is there when "listening" is logged.
  const admin = AdminSocket.forConfig(config, server, log);
  await admin.listen().catch((e) => log.error("no admin socket: 'ndmpd sessions' will not reach this server", { err: e }));
  observe(server);
  const metrics = config.metrics ? new MetricsListener(config.metrics.listen, log.child({ service: "metrics" })) : undefined;
  try {
    await metrics?.listen();
    await server.listen();
  } catch (e) {
    log.error("cannot listen", { err: e });
    await admin.close();
    await metrics?.close();
    return 1;
  }
  log.info("ndmpd started", { version: VERSION, pid: process.pid, vendor: config.identity.vendor });
  return await new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      log.info("signal received, shutting down", { signal: sig });
      Promise.all([admin.close(), metrics?.close()])
        .then(() => server.shutdown(`server shutting down (${sig})`))
        .finally(() => devices.shutdown())
        .then(
          () => resolve(0),
          () => resolve(1),
        );
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  });
}

async function query(args: string[]): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      user: { type: "string", short: "u" },
      password: { type: "string", short: "p" },
      auth: { type: "string", short: "a" },
      version: { type: "string" },
      json: { type: "boolean" },
      ...TLS_OPTIONS,
    },
    true,
  );
  if (values.help) return print(HELP.query!);
  let tls;
  try {
    tls = tlsFrom(values);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (positionals.length !== 1) throw new UsageError("query needs exactly one HOST[:PORT]");
  const target = positionals[0]!;
  const addr = parseTarget(target);
  const user = values.user;
  const password = values.password ?? process.env.NDMPD_PASSWORD;
  if (!user) throw new UsageError("query needs --user");
  if (password === undefined) throw new UsageError("query needs --password or $NDMPD_PASSWORD");
  const auth = values.auth ?? "md5";
  if (auth !== "md5" && auth !== "text") throw new UsageError("--auth must be md5 or text");

  const client = await connectTo(addr.host, addr.port, tls);
  try {
    const version = values.version ? Number(values.version) : Math.min(client.offeredVersion, 4);
    await client.open(version);
    if (auth === "md5") await client.authMd5(user, password);
    else await client.authText(user, password);
    const result = await runQuery(client);
    if (values.json) {
      process.stdout.write(JSON.stringify(result.replies, (_k, v) => (typeof v === "bigint" ? v.toString() : v?.type === "Buffer" ? Buffer.from(v.data).toString() : v), 2) + "\n");
    } else {
      process.stdout.write(`Server ${addr.host}:${addr.port} NDMPv${version}${tls ? " (TLS)" : ""}\n` + result.lines.join("\n") + "\n");
    }
    return 0;
  } finally {
    await client.close();
  }
}

async function configCmd(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: "boolean" } }, true);
  const [sub, file, ...extra] = positionals;
  if (values.help || sub === undefined) return print(HELP.config!);
  if (sub === "example" && file === undefined) return print(configExample());
  if (sub !== "check" || extra.length > 0) throw new UsageError("usage: ndmpd config check [FILE] | ndmpd config example");
  return configCheckCommand(file, !!values.json, (s) => process.stdout.write(s), (s) => process.stderr.write(s));
}

async function sessionsCmd(args: string[]): Promise<number> {
  const { values } = parse(args, { config: { type: "string", short: "c" }, socket: { type: "string", short: "s" }, json: { type: "boolean" } });
  if (values.help) return print(HELP.sessions!);
  return sessionsCommand(values.socket ?? adminSocketPath(values.config), !!values.json);
}

async function killSessionCmd(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { config: { type: "string", short: "c" }, socket: { type: "string", short: "s" } }, true);
  if (values.help) return print(HELP["kill-session"]!);
  if (positionals.length !== 1 || !/^\d+$/.test(positionals[0]!)) throw new UsageError("usage: ndmpd kill-session N (N from 'ndmpd sessions')");
  return killSessionCommand(values.socket ?? adminSocketPath(values.config), Number(positionals[0]));
}

async function changer(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { config: { type: "string", short: "c" }, changer: { type: "string", short: "n" } }, true);
  if (values.help) return print(HELP.changer!);
  const [cmd, ...params] = positionals;
  if (!cmd) throw new UsageError("changer needs a command (see 'ndmpd changer --help')");
  let config: Config;
  try {
    config = loadConfigOrDefault(values.config).config;
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`ndmpd: ${e.message}\n`);
      return EXIT_USAGE;
    }
    throw e;
  }
  const cfg = values.changer ? config.changers.find((c) => c.name === values.changer) : config.changers[0];
  if (!cfg) throw new UsageError(values.changer ? `no [[changer]] named ${values.changer}` : "the configuration has no [[changer]]");
  // Only the changer and its drives: other devices may be in use by a running server.
  const tapes = config.tapes.filter((t) => cfg.drives.includes(t.name));
  const devices = await DeviceRegistry.fromConfig(tapes, [cfg]);
  const target = devices.changers.get(cfg.name)!;
  const dev = await devices.openScsi(target);
  try {
    const inv = await readInventory(dev);
    const of = (t: string) => inv.elements.filter((e) => e.type === t);
    const num = (s: string | undefined, what: string) => {
      if (s === undefined || !/^\d+$/.test(s)) throw new UsageError(`${what} must be a number`);
      return Number(s);
    };
    const slot = (s: string | undefined) => {
      const e = of("SE")[num(s, "SLOT") - 1];
      if (!e) throw new UsageError(`there is no slot ${s} (1..${of("SE").length})`);
      return e;
    };
    const drive = (s: string | undefined) => {
      if (s === undefined) return of("DTE")[0] ?? fail("the library has no drives");
      const byName = cfg.drives.indexOf(s);
      const e = of("DTE")[byName >= 0 ? byName : num(s, "DRIVE")];
      if (!e) throw new UsageError(`there is no drive ${s}`);
      return e;
    };
    const fail = (why: string): never => {
      throw new UsageError(why);
    };
    const transport = of("MTE")[0]?.address ?? 0;
    switch (cmd) {
      case "status":
      case "inventory":
        process.stdout.write(formatInventory(cfg.name, inv, cfg.drives));
        return 0;
      case "load": {
        const from = slot(params[0]);
        const to = drive(params[1]);
        await moveMedium(dev, transport, from.address, to.address);
        break;
      }
      case "unload": {
        const from = drive(params[0]);
        if (!from.full) throw new UsageError(`drive @${from.address} is empty`);
        const home = of("SE").find((e) => e.address === from.source && !e.full);
        const to = params[1] !== undefined ? slot(params[1]) : (home ?? of("SE").find((e) => !e.full) ?? fail("no empty slot"));
        await moveMedium(dev, transport, from.address, to.address);
        break;
      }
      case "move":
        await moveMedium(dev, transport, num(params[0], "FROM"), num(params[1], "TO"));
        break;
      default:
        throw new UsageError(`unknown changer command '${cmd}' (see 'ndmpd changer --help')`);
    }
    process.stdout.write(formatInventory(cfg.name, await readInventory(dev), cfg.drives));
    return 0;
  } finally {
    await dev.close();
    devices.shutdown();
  }
}

/** HOST, HOST:PORT, [V6]:PORT or a bare IPv6 address. */
function parseTarget(s: string) {
  if (/^\[.*\]:\d+$/.test(s) || /^[^:]+:\d+$/.test(s)) return parseListen(s);
  return { host: s.replace(/^\[(.*)\]$/, "$1"), port: DEFAULT_PORT };
}

function print(s: string): number {
  process.stdout.write(s);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case "serve":
        return await serve(rest);
      case undefined:
        // A daemon started with no arguments serves, on the safe embedded defaults.
        return await serve([]);
      case "query":
        return await query(rest);
      case "changer":
        return await changer(rest);
      case "config":
        return await configCmd(rest);
      case "sessions":
        return await sessionsCmd(rest);
      case "kill-session":
        return await killSessionCmd(rest);
      case "backup":
      case "recover":
      case "list":
      case "dumpdates":
      case "catalog":
      case "remote":
        // Jobs from the CLI live in src/dma/cli.ts (their own options, help and exit codes).
        return await runJobCommand(cmd, rest);
      case "man":
        return print(manPage());
      case "version":
      case "--version":
        if (rest.includes("--help") || rest.includes("-h")) return print(HELP.version!);
        return print(`ndmpd ${VERSION}\n`);
      case "help":
      case "--help":
      case "-h":
        return print(HELP[rest[0] ?? "main"] ?? JOB_HELP[rest[0] ?? ""] ?? HELP.main!);
      default:
        throw new UsageError(`unknown command '${cmd}' (see 'ndmpd help')`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`ndmpd: ${e.message}\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`ndmpd: ${(e as Error).message}\n`);
    return 1;
  }
}

// `deno task start -- version` hands the "--" through: it only separates task arguments.
const argv = process.argv.slice(2);
main(argv[0] === "--" ? argv.slice(1) : argv).then((code) => process.exit(code));
