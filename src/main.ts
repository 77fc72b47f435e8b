#!/usr/bin/env bun
/**
 * The ndmpd command line: serve | query | version | help.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { NdmpClient } from "./client/client.ts";
import { runQuery } from "./client/query.ts";
import { ConfigError, defaultConfig, DEFAULT_PORT, loadConfig, parseListen, type Config } from "./config.ts";
import { LOG_LEVELS, Logger, type LogFormat, type LogLevel } from "./log.ts";
import { DeviceRegistry } from "./devices/registry.ts";
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
    devices = await DeviceRegistry.fromConfig(config.tapes);
  } catch (e) {
    log.error("cannot set up the configured devices", { err: e });
    return 1;
  }
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
      server.shutdown(`server shutting down (${sig})`).then(
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
      case "version":
      case "--version":
        if (rest.includes("--help") || rest.includes("-h")) return print(HELP.version!);
        return print(`ndmpd ${VERSION}\n`);
      case "help":
      case "--help":
      case "-h":
        return print(HELP[rest[0] ?? "main"] ?? HELP.main!);
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
