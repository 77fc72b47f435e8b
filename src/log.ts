/**
 * One line per event on stderr: human-readable by default, JSON with `--log-format json`.
 * Loggers are cheap children that carry context fields (session id, peer address).
 */

export type LogLevel = "error" | "warn" | "info" | "debug";
export type LogFormat = "human" | "json";
export const LOG_LEVELS: readonly LogLevel[] = ["error", "warn", "info", "debug"];

const rank: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export interface LogSink {
  write(line: string): void;
}

const stderrSink: LogSink = { write: (line) => process.stderr.write(line) };

export type Fields = Record<string, unknown>;

export class Logger {
  constructor(
    private readonly level: LogLevel = "info",
    private readonly format: LogFormat = "human",
    private readonly context: Fields = {},
    private readonly sink: LogSink = stderrSink,
  ) {}

  child(fields: Fields): Logger {
    return new Logger(this.level, this.format, { ...this.context, ...fields }, this.sink);
  }

  enabled(level: LogLevel): boolean {
    return rank[level] <= rank[this.level];
  }

  error(msg: string, fields?: Fields): void {
    this.log("error", msg, fields);
  }
  warn(msg: string, fields?: Fields): void {
    this.log("warn", msg, fields);
  }
  info(msg: string, fields?: Fields): void {
    this.log("info", msg, fields);
  }
  debug(msg: string, fields?: Fields): void {
    this.log("debug", msg, fields);
  }

  log(level: LogLevel, msg: string, fields?: Fields): void {
    if (this.enabled(level)) this.write(level, msg, fields);
  }

  /**
   * A line written whatever `log_level` says (the audit trail): an admin who turns the log down
   * to errors must not lose the record of who backed up or restored what.
   */
  record(level: LogLevel, msg: string, fields?: Fields): void {
    this.write(level, msg, fields);
  }

  private write(level: LogLevel, msg: string, fields?: Fields): void {
    const all = { ...this.context, ...fields };
    const time = new Date().toISOString();
    if (this.format === "json") {
      this.sink.write(JSON.stringify({ time, level, msg, ...all }, jsonValue) + "\n");
      return;
    }
    const extra = Object.entries(all)
      .map(([k, v]) => `${k}=${humanValue(v)}`)
      .join(" ");
    this.sink.write(`${time} ${level.toUpperCase().padEnd(5)} ${msg}${extra ? " " + extra : ""}\n`);
  }
}

function jsonValue(_key: string, v: unknown): unknown {
  if (typeof v === "bigint") return v.toString();
  if (v instanceof Error) return v.message;
  return v;
}

function humanValue(v: unknown): string {
  if (v instanceof Error) v = v.message;
  const s = typeof v === "string" ? v : typeof v === "bigint" ? v.toString() : JSON.stringify(v);
  return /[\s"=]/.test(s ?? "") ? JSON.stringify(s) : String(s);
}

/** A logger that drops everything (tests, library use). */
export const silentLogger = new Logger("error", "human", {}, { write: () => {} });
