#!/usr/bin/env bun
/**
 * The ndmpd command line: serve | query | version | help.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { NdmpClient } from "./client/client.ts";
import { runQuery } from "./client/query.ts";
import { ConfigError, defaultConfig, DEFAULT_PORT, loadConfig, parseListen, type Config } from "./config.ts";
import { LOG_LEVELS, Logger, type LogFormat, type LogLevel } from "./log.ts";
import { formatInventory, moveMedium, readInventory } from "./devices/changer/smc.ts";
import { DeviceRegistry } from "./devices/registry.ts";
import { JOB_HELP, runJobCommand } from "./dma/cli.ts";
import { NdmpServer } from "./server/listener.ts";
import { VERSION } from "./version.ts";

/** Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad configuration. */
const EXIT_USAGE = 2;

const HELP: Record<string, string> = {
  main: `ndmpd ${VERSION} — an NDMP server for Linux file servers

Usage: ndmpd [<command>] [options]       (no command: serve)

Commands:
  serve     run the NDMP server (default port ${DEFAULT_PORT})
  query     ask an NDMP server what it offers (like ndmjob -q)
  changer   show and move cartridges of a configured tape library (like mtx)
  backup    back up a directory to a configured drive (a local job, no DMA needed)
  recover   restore a backup, or paths from it, from a configured drive
  list      list the backups on a cartridge, or the entries of one
  dumpdates list the incremental records (dumpdates) of this host's backups
  catalog   'catalog rebuild': re-read a cartridge's labels and file history into the catalog
  remote    'remote backup|recover': drive other NDMP servers (ndmpd as a small DMA)
  version   print the version
  help      print this help, or 'ndmpd help <command>'

Run 'ndmpd <command> --help' for a command's options.
`,
  serve: `Usage: ndmpd serve [--config FILE] [--listen ADDR:PORT]... [--log-level L] [--log-format F]

Runs the NDMP server. Without --config it runs on safe embedded defaults: it listens on
127.0.0.1:${DEFAULT_PORT} only, with one user 'ndmp' whose password is $NDMPD_PASSWORD, or a
random one printed once at start-up.

  -c, --config FILE      TOML configuration file
  -l, --listen ADDR:PORT address to listen on (repeatable; IPv6 as [ADDR]:PORT); overrides the file
      --log-level L      error | warn | info | debug (default info)
      --log-format F     human | json (default human)
`,
  query: `Usage: ndmpd query HOST[:PORT] --user U [--password P] [--auth md5|text] [--version 4]

Connects to an NDMP server, authenticates and prints what the CONFIG requests return.
The password may also come from $NDMPD_PASSWORD.

  -u, --user U           user name
  -p, --password P       password (default: $NDMPD_PASSWORD)
  -a, --auth M           md5 (default) or text
      --version N        protocol version to open (default: the server's offer)
      --json             print the raw replies as JSON
`,
  changer: `Usage: ndmpd changer [--config FILE] [--changer NAME] <command>

Operates a [[changer]] of the configuration directly, in this process, with the same SCSI
commands a DMA sends. A virtual library can only be used while no server holds it.

Commands:
  status | inventory       list drives, slots and import/export elements with volume tags
  load SLOT [DRIVE]        slot (1-based, as mtx counts) -> drive (0-based, default 0)
  unload [DRIVE] [SLOT]    drive -> SLOT, default the slot it came from (or the first empty one)
  move FROM TO             any element -> any element, by element address (see 'status')

  -c, --config FILE      TOML configuration file (default /etc/ndmpd/ndmpd.toml)
  -n, --changer NAME     which [[changer]] (default: the first one)
`,
  version: `Usage: ndmpd version\n\nPrints the version.\n`,
  help: `Usage: ndmpd help [command]\n`,
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
  const server = new NdmpServer(config, devices, log);
  try {
    await server.listen();
  } catch (e) {
    log.error("cannot listen", { err: e });
    return 1;
  }
  log.info("ndmpd started", { version: VERSION, pid: process.pid, vendor: config.identity.vendor });
  return await new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      log.info("signal received, shutting down", { signal: sig });
      server
        .shutdown(`server shutting down (${sig})`)
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
    },
    true,
  );
  if (values.help) return print(HELP.query!);
  if (positionals.length !== 1) throw new UsageError("query needs exactly one HOST[:PORT]");
  const target = positionals[0]!;
  const addr = parseTarget(target);
  const user = values.user;
  const password = values.password ?? process.env.NDMPD_PASSWORD;
  if (!user) throw new UsageError("query needs --user");
  if (password === undefined) throw new UsageError("query needs --password or $NDMPD_PASSWORD");
  const auth = values.auth ?? "md5";
  if (auth !== "md5" && auth !== "text") throw new UsageError("--auth must be md5 or text");

  const client = await NdmpClient.connect(addr.host, addr.port);
  try {
    const version = values.version ? Number(values.version) : Math.min(client.offeredVersion, 4);
    await client.open(version);
    if (auth === "md5") await client.authMd5(user, password);
    else await client.authText(user, password);
    const result = await runQuery(client);
    if (values.json) {
      process.stdout.write(JSON.stringify(result.replies, (_k, v) => (typeof v === "bigint" ? v.toString() : v?.type === "Buffer" ? Buffer.from(v.data).toString() : v), 2) + "\n");
    } else {
      process.stdout.write(`Server ${addr.host}:${addr.port} NDMPv${version}\n` + result.lines.join("\n") + "\n");
    }
    return 0;
  } finally {
    await client.close();
  }
}

async function changer(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { config: { type: "string", short: "c" }, changer: { type: "string", short: "n" } }, true);
  if (values.help) return print(HELP.changer!);
  const [cmd, ...params] = positionals;
  if (!cmd) throw new UsageError("changer needs a command (see 'ndmpd changer --help')");
  let config: Config;
  try {
    config = loadConfig(values.config ?? "/etc/ndmpd/ndmpd.toml");
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
      case "backup":
      case "recover":
      case "list":
      case "dumpdates":
      case "catalog":
      case "remote":
        // Jobs from the CLI live in src/dma/cli.ts (their own options, help and exit codes).
        return await runJobCommand(cmd, rest);
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
