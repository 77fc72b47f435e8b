/**
 * The live display of a running job: bytes, files, rate and ETA.
 *  - tty:   one line redrawn in place (\r and erase-to-end-of-line) a few times a second;
 *  - plain: a line every few seconds (logs, pipes, cron mail);
 *  - json:  one JSON object per line: {"event":"start"}, {"event":"progress"}..., {"event":"end"}.
 * The job feeds samples (bytes from DATA_GET_STATE, files from the FH posts); this module only
 * decides when and how to show them.
 */

export type ProgressMode = "tty" | "plain" | "json";

export interface Sample {
  bytes: number;
  files: number;
  elapsedMs: number;
  /** Expected total bytes, when known (an estimate): gives the ETA. */
  total?: number;
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function formatBytes(n: number): string {
  let i = 0;
  let v = n;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${UNITS[i]}`;
}

/** h:mm:ss, or m:ss under an hour. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** Bytes per second over the whole job so far (steady enough for a tape job). */
export function rate(s: Sample): number {
  return s.elapsedMs > 0 ? (s.bytes * 1000) / s.elapsedMs : 0;
}

/** Seconds left, or undefined when there is no total or no rate yet. */
export function eta(s: Sample): number | undefined {
  const r = rate(s);
  if (s.total === undefined || r <= 0) return undefined;
  return Math.max(0, s.total - s.bytes) / r;
}

function etaSeconds(s: Sample): number | null {
  const left = eta(s);
  return left === undefined ? null : Math.round(left);
}

export function progressLine(what: string, s: Sample): string {
  const parts = [`${what}: ${formatBytes(s.bytes)}`];
  if (s.total !== undefined && s.total > 0) parts[0] += ` of ~${formatBytes(s.total)} (${Math.min(100, Math.floor((s.bytes * 100) / s.total))}%)`;
  parts.push(`${s.files} files`, `${formatBytes(Math.round(rate(s)))}/s`);
  const left = eta(s);
  parts.push(left === undefined ? `elapsed ${formatDuration(s.elapsedMs / 1000)}` : `ETA ${formatDuration(left)}`);
  return parts.join(", ");
}

export interface ProgressSink {
  write(s: string): unknown;
}

export class Progress {
  private readonly t0 = Date.now();
  private lastShown = 0;
  private drawn = false;
  private sample: Sample = { bytes: 0, files: 0, elapsedMs: 0 };

  constructor(
    private readonly out: ProgressSink,
    readonly mode: ProgressMode,
    private readonly what: string,
    /** Minimum time between two displays; defaults: tty 200 ms, plain 5 s, json 1 s. */
    private readonly intervalMs = mode === "tty" ? 200 : mode === "plain" ? 5000 : 1000,
  ) {}

  start(info: Record<string, unknown>): void {
    if (this.mode === "json") this.json({ event: "start", job: this.what, ...info });
    else this.out.write(`${this.what}: ${Object.entries(info).map(([k, v]) => `${k} ${v}`).join(", ")}\n`);
  }

  /** A new sample; shown if the interval has passed. */
  update(bytes: number, files: number, total?: number): void {
    this.sample = { bytes, files, elapsedMs: Date.now() - this.t0, total };
    const now = Date.now();
    if (now - this.lastShown < this.intervalMs) return;
    this.lastShown = now;
    if (this.mode === "json") {
      const s = this.sample;
      this.json({ event: "progress", bytes: s.bytes, files: s.files, total: s.total ?? null, rate: Math.round(rate(s)), eta: etaSeconds(s) });
    } else if (this.mode === "tty") {
      // \r back to the start, the line, then erase whatever a longer previous line left.
      this.out.write(`\r${progressLine(this.what, this.sample)}\x1b[K`);
      this.drawn = true;
    } else {
      this.out.write(progressLine(this.what, this.sample) + "\n");
    }
  }

  /** A message from the server (warnings, errors) without breaking the redrawn line. */
  note(text: string): void {
    if (this.mode === "json") return this.json({ event: "log", text });
    this.clearLine();
    this.out.write(`${text}\n`);
  }

  end(ok: boolean, summary: Record<string, unknown>): void {
    const s = { ...this.sample, elapsedMs: Date.now() - this.t0 };
    if (this.mode === "json") {
      this.json({ event: "end", ok, bytes: s.bytes, files: s.files, seconds: s.elapsedMs / 1000, ...summary });
      return;
    }
    // On a terminal the summary always starts on a cleared line, whether or not a progress
    // line was drawn since the last message (a short job may draw none).
    if (this.mode === "tty") {
      this.out.write("\r\x1b[K");
      this.drawn = false;
    } else this.clearLine();
    const extra = Object.entries(summary).map(([k, v]) => `${k} ${v}`).join(", ");
    this.out.write(
      `${this.what} ${ok ? "done" : "FAILED"}: ${formatBytes(s.bytes)}, ${s.files} files in ${formatDuration(s.elapsedMs / 1000)}` +
        ` (${formatBytes(Math.round(rate(s)))}/s)${extra ? `; ${extra}` : ""}\n`,
    );
  }

  private clearLine(): void {
    if (this.drawn) this.out.write("\r\x1b[K");
    this.drawn = false;
  }

  private json(o: Record<string, unknown>): void {
    this.out.write(JSON.stringify(o) + "\n");
  }
}
