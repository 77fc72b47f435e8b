/**
 * The local backup catalog: which cartridges we wrote, which backups are on each, and the file
 * history of every backup with its stream offsets (fh_info) so that restores can use direct
 * access. It never holds the only copy of anything: every backup's label and file history can be
 * read back from the tape (`ndmpd catalog rebuild`).
 *
 * Backends, chosen by openCatalog():
 *  - bun:sqlite (the compiled binary and `bun`): STATE_DIR/catalog.sqlite;
 *  - node:sqlite where Node has it (22.5+), same file and schema;
 *  - otherwise a JSON-lines file, STATE_DIR/catalog.jsonl (Node 20, which runs the unit tests).
 *
 * SQL schema (version 1):
 *   media(media_id TEXT PK, drive, barcode, created)
 *   jobs(job_id INTEGER PK, media_id, seq, label_file, image_file, label, date, format, host,
 *        root, level, record_size, env JSON, bytes, entries)        UNIQUE(media_id, seq)
 *   files(job_id, path BLOB, node, fh_info, ftype, mode, uid, gid, size, mtime)  PK(job_id, path)
 *   spans(job_id, part, media_id, seq, barcode, slot, start, bytes)            PK(job_id, part)
 *        only for a backup that went on on other cartridges: each cartridge of its image, in
 *        order (part 1 is the job's own cartridge), and the image offset its part starts at.
 *
 * Durability (SQL backends): WAL with synchronous=NORMAL, so the small writes of a job (its
 * cartridge, an overwrite's deletions) cost no fsync each; a crash or power loss may lose such a
 * write but never leaves the file inconsistent (SQLite's WAL guarantee). addJob commits with
 * synchronous=FULL: once it returns, that backup's row and file history, and every write before
 * it, are on disk (one fsync of the WAL per job). Anything lost is read back from the tape by
 * `ndmpd catalog rebuild`.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface MediaRow {
  /** The cartridge's identity: a UUID written in every label on it. */
  mediaId: string;
  /** Where it was last seen: the drive name (and host for remote drives). */
  drive: string;
  /** The cartridge's volume tag when a library loaded it (--slot), else "". */
  barcode: string;
  /** ISO date of the first backup on it. */
  created: string;
}

export interface JobRow {
  jobId: number;
  mediaId: string;
  /** Backup number on the cartridge, 1-based (`--file N`). */
  seq: number;
  labelFile: number;
  imageFile: number;
  label: string;
  date: string;
  format: string;
  host: string;
  root: string;
  level: number;
  recordSize: number;
  /** The backup environment (DATA_GET_ENV after the backup, or the label's on a rebuild). */
  env: Array<[string, string]>;
  bytes: number;
  entries: number;
}

export interface FileRow {
  /** Path inside the backup, "/" = the root (raw bytes: names need not be UTF-8). */
  path: Buffer;
  node: number | null;
  /** Stream offset of the entry (direct access), null when unknown. */
  fhInfo: number | null;
  ftype: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
}

export type NewJob = Omit<JobRow, "jobId">;

/** One cartridge of a backup whose image spans cartridges (see Catalog.addSpan). */
export interface SpanPart {
  /** 1, 2, ...: part 1 is on the job's own cartridge (its mediaId and seq). */
  part: number;
  mediaId: string;
  /** The part's backup number on that cartridge (its label and image tape files). */
  seq: number;
  /** The cartridge's volume tag ("" when the library has none). */
  barcode: string;
  /** The storage slot it was loaded from when it was written. */
  slot: number;
  /** Where the part starts in the image, in bytes. */
  start: number;
  /** Bytes of the image on the part. */
  bytes: number;
}

export interface Catalog {
  readonly backend: "bun:sqlite" | "node:sqlite" | "jsonl";
  readonly path: string;
  upsertMedia(m: MediaRow): void;
  media(mediaId: string): MediaRow | undefined;
  /** Adds a backup with its file history; replaces an earlier row for the same (media, seq). */
  /** `files` is read once, in order (a backup's rows may come from a spill file, never all in memory). */
  addJob(job: NewJob, files: Iterable<FileRow>): number;
  jobs(mediaId: string): JobRow[];
  job(mediaId: string, seq: number): JobRow | undefined;
  files(jobId: number): FileRow[];
  /** One entry by its exact path, or undefined. */
  lookup(jobId: number, path: Buffer): FileRow | undefined;
  /** Forgets a cartridge's backups (before a rebuild, or when it is rewritten from the start). */
  dropJobsFrom(mediaId: string, fromSeq: number): void;
  /** Records the cartridges of a job's image, in order (a job on one cartridge has none). */
  addSpan(jobId: number, parts: SpanPart[]): void;
  /** The parts of a job's image in order; empty when it is on one cartridge. */
  span(jobId: number): SpanPart[];
  /** The parts (2, 3, ...) of other cartridges' backups that are on this cartridge. */
  spansOn(mediaId: string): Array<{ jobId: number; part: SpanPart }>;
  close(): void;
}

// ---------------------------------------------------------------------------------------------
// SQL backends: bun:sqlite and node:sqlite share prepare(sql).run/all/get with positional
// parameters, which is all this uses.

interface SqlStatement {
  run(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  get(...params: unknown[]): unknown;
}
export interface SqlDatabase {
  exec(sql: string): void;
  prepare(sql: string): SqlStatement;
  close(): void;
}

const SCHEMA = `
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = ON;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('schema', '1');
CREATE TABLE IF NOT EXISTS media (
  media_id TEXT PRIMARY KEY, drive TEXT NOT NULL, barcode TEXT NOT NULL, created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
  job_id INTEGER PRIMARY KEY AUTOINCREMENT,
  media_id TEXT NOT NULL REFERENCES media(media_id),
  seq INTEGER NOT NULL, label_file INTEGER NOT NULL, image_file INTEGER NOT NULL,
  label TEXT NOT NULL, date TEXT NOT NULL, format TEXT NOT NULL, host TEXT NOT NULL,
  root TEXT NOT NULL, level INTEGER NOT NULL, record_size INTEGER NOT NULL, env TEXT NOT NULL,
  bytes INTEGER NOT NULL, entries INTEGER NOT NULL,
  UNIQUE (media_id, seq)
);
CREATE TABLE IF NOT EXISTS files (
  job_id INTEGER NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
  path BLOB NOT NULL, node INTEGER, fh_info INTEGER, ftype INTEGER NOT NULL, mode INTEGER NOT NULL,
  uid INTEGER NOT NULL, gid INTEGER NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL,
  PRIMARY KEY (job_id, path)
) WITHOUT ROWID;
`;

/** Added after schema 1 shipped: created when missing, so older catalogs gain it on open. */
const SPAN_SCHEMA = `
CREATE TABLE IF NOT EXISTS spans (
  job_id INTEGER NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
  part INTEGER NOT NULL, media_id TEXT NOT NULL, seq INTEGER NOT NULL, barcode TEXT NOT NULL,
  slot INTEGER NOT NULL, start INTEGER NOT NULL, bytes INTEGER NOT NULL,
  PRIMARY KEY (job_id, part)
);
`;

/** Rows per multi-row INSERT: 10 values each, under SQLite's oldest limit of 999 parameters. */
const INSERT_ROWS = 99;
const ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

function pushRow(values: unknown[], jobId: number, f: FileRow): void {
  values.push(jobId, f.path, f.node, f.fhInfo, f.ftype, f.mode, f.uid, f.gid, f.size, f.mtime);
}

export class SqlCatalog implements Catalog {
  constructor(
    private readonly db: SqlDatabase,
    readonly backend: "bun:sqlite" | "node:sqlite",
    readonly path: string,
  ) {
    db.exec(SCHEMA);
    db.exec(SPAN_SCHEMA);
  }

  upsertMedia(m: MediaRow): void {
    this.db
      .prepare("INSERT INTO media VALUES (?, ?, ?, ?) ON CONFLICT(media_id) DO UPDATE SET drive = excluded.drive, barcode = excluded.barcode")
      .run(m.mediaId, m.drive, m.barcode, m.created);
  }

  media(mediaId: string): MediaRow | undefined {
    const r = this.db.prepare("SELECT * FROM media WHERE media_id = ?").get(mediaId) as Record<string, any> | undefined;
    return r ? { mediaId: r.media_id, drive: r.drive, barcode: r.barcode, created: r.created } : undefined;
  }

  addJob(j: NewJob, files: Iterable<FileRow>): number {
    // One transaction: a crash leaves either the whole backup's history or none of it; and a
    // durable one (see the head of this file): the WAL is synced at its commit.
    this.db.exec("PRAGMA synchronous = FULL");
    this.db.exec("BEGIN");
    try {
      this.db.prepare("DELETE FROM jobs WHERE media_id = ? AND seq = ?").run(j.mediaId, j.seq);
      const r = this.db
        .prepare("INSERT INTO jobs (media_id, seq, label_file, image_file, label, date, format, host, root, level, record_size, env, bytes, entries) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING job_id")
        .get(j.mediaId, j.seq, j.labelFile, j.imageFile, j.label, j.date, j.format, j.host, j.root, j.level, j.recordSize, JSON.stringify(j.env), j.bytes, j.entries) as { job_id: number };
      const jobId = Number(r.job_id);
      // Many rows per statement: one call into SQLite per INSERT_ROWS rows, not per row (a tree
      // of small files made that call a third of a CLI backup's time).
      const many = this.db.prepare(`INSERT OR REPLACE INTO files VALUES ${Array(INSERT_ROWS).fill(ROW).join(", ")}`);
      const values: unknown[] = [];
      let rows = 0;
      for (const f of files) {
        pushRow(values, jobId, f);
        if (++rows < INSERT_ROWS) continue;
        many.run(...values);
        values.length = 0;
        rows = 0;
      }
      const one = this.db.prepare(`INSERT OR REPLACE INTO files VALUES ${ROW}`);
      for (let i = 0; i < rows; i++) one.run(...values.slice(i * 10, i * 10 + 10));
      this.db.exec("COMMIT");
      return jobId;
    } catch (e) {
      this.db.exec("ROLLBACK");
      throw e;
    } finally {
      this.db.exec("PRAGMA synchronous = NORMAL");
    }
  }

  jobs(mediaId: string): JobRow[] {
    return (this.db.prepare("SELECT * FROM jobs WHERE media_id = ? ORDER BY seq").all(mediaId) as Record<string, any>[]).map(jobFromSql);
  }

  job(mediaId: string, seq: number): JobRow | undefined {
    const r = this.db.prepare("SELECT * FROM jobs WHERE media_id = ? AND seq = ?").get(mediaId, seq) as Record<string, any> | undefined;
    return r ? jobFromSql(r) : undefined;
  }

  files(jobId: number): FileRow[] {
    return (this.db.prepare("SELECT * FROM files WHERE job_id = ? ORDER BY path").all(jobId) as Record<string, any>[]).map(fileFromSql);
  }

  lookup(jobId: number, path: Buffer): FileRow | undefined {
    const r = this.db.prepare("SELECT * FROM files WHERE job_id = ? AND path = ?").get(jobId, path) as Record<string, any> | undefined;
    return r ? fileFromSql(r) : undefined;
  }

  dropJobsFrom(mediaId: string, fromSeq: number): void {
    this.db.prepare("DELETE FROM jobs WHERE media_id = ? AND seq >= ?").run(mediaId, fromSeq);
  }

  addSpan(jobId: number, parts: SpanPart[]): void {
    this.db.exec("BEGIN");
    try {
      this.db.prepare("DELETE FROM spans WHERE job_id = ?").run(jobId);
      const ins = this.db.prepare("INSERT INTO spans VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
      for (const p of parts) ins.run(jobId, p.part, p.mediaId, p.seq, p.barcode, p.slot, p.start, p.bytes);
      this.db.exec("COMMIT");
    } catch (e) {
      this.db.exec("ROLLBACK");
      throw e;
    }
  }

  span(jobId: number): SpanPart[] {
    return (this.db.prepare("SELECT * FROM spans WHERE job_id = ? ORDER BY part").all(jobId) as Record<string, any>[]).map(spanFromSql);
  }

  spansOn(mediaId: string): Array<{ jobId: number; part: SpanPart }> {
    const rows = this.db.prepare("SELECT * FROM spans WHERE media_id = ? AND part > 1 ORDER BY seq").all(mediaId) as Record<string, any>[];
    return rows.map((r) => ({ jobId: Number(r.job_id), part: spanFromSql(r) }));
  }

  close(): void {
    this.db.close();
  }
}

function jobFromSql(r: Record<string, any>): JobRow {
  return {
    jobId: Number(r.job_id),
    mediaId: r.media_id,
    seq: Number(r.seq),
    labelFile: Number(r.label_file),
    imageFile: Number(r.image_file),
    label: r.label,
    date: r.date,
    format: r.format,
    host: r.host,
    root: r.root,
    level: Number(r.level),
    recordSize: Number(r.record_size),
    env: JSON.parse(r.env),
    bytes: Number(r.bytes),
    entries: Number(r.entries),
  };
}

function spanFromSql(r: Record<string, any>): SpanPart {
  return {
    part: Number(r.part),
    mediaId: r.media_id,
    seq: Number(r.seq),
    barcode: r.barcode,
    slot: Number(r.slot),
    start: Number(r.start),
    bytes: Number(r.bytes),
  };
}

function fileFromSql(r: Record<string, any>): FileRow {
  const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    path: Buffer.from(r.path as Uint8Array),
    node: num(r.node),
    fhInfo: num(r.fh_info),
    ftype: Number(r.ftype),
    mode: Number(r.mode),
    uid: Number(r.uid),
    gid: Number(r.gid),
    size: Number(r.size),
    mtime: Number(r.mtime),
  };
}

// ---------------------------------------------------------------------------------------------
// JSON-lines fallback: an append-only log of changes, replayed into memory at open. Paths are
// stored base64 (bytes need not be UTF-8).

type JsonRecord =
  | { t: "media"; m: MediaRow }
  | { t: "job"; j: JobRow; files: Array<Omit<FileRow, "path"> & { path: string }> }
  | { t: "drop"; mediaId: string; fromSeq: number }
  | { t: "span"; jobId: number; parts: SpanPart[] };

export class JsonlCatalog implements Catalog {
  readonly backend = "jsonl" as const;
  private readonly mediaRows = new Map<string, MediaRow>();
  private readonly jobRows = new Map<number, JobRow>();
  private readonly fileRows = new Map<number, Map<string, FileRow>>();
  private readonly spanRows = new Map<number, SpanPart[]>();
  private nextId = 1;

  constructor(readonly path: string) {
    if (!existsSync(path)) return;
    for (const line of readFileSync(path, "utf8").split("\n")) {
      if (!line.trim()) continue;
      let rec: JsonRecord;
      try {
        rec = JSON.parse(line) as JsonRecord;
      } catch {
        continue; // a torn last line after a crash: the rest is intact
      }
      this.apply(rec);
    }
  }

  private apply(rec: JsonRecord): void {
    if (rec.t === "media") {
      const old = this.mediaRows.get(rec.m.mediaId);
      this.mediaRows.set(rec.m.mediaId, old ? { ...rec.m, created: old.created } : rec.m);
    } else if (rec.t === "job") {
      this.dropWhere((j) => j.mediaId === rec.j.mediaId && j.seq === rec.j.seq);
      this.jobRows.set(rec.j.jobId, rec.j);
      this.fileRows.set(rec.j.jobId, new Map(rec.files.map((f) => [f.path, { ...f, path: Buffer.from(f.path, "base64") }])));
      this.nextId = Math.max(this.nextId, rec.j.jobId + 1);
    } else if (rec.t === "drop") {
      this.dropWhere((j) => j.mediaId === rec.mediaId && j.seq >= rec.fromSeq);
    } else if (rec.t === "span") {
      if (this.jobRows.has(rec.jobId)) this.spanRows.set(rec.jobId, rec.parts);
    }
  }

  private dropWhere(pred: (j: JobRow) => boolean): void {
    for (const [id, j] of this.jobRows) {
      if (!pred(j)) continue;
      this.jobRows.delete(id);
      this.fileRows.delete(id);
      this.spanRows.delete(id);
    }
  }

  private append(rec: JsonRecord): void {
    this.apply(rec);
    appendFileSync(this.path, JSON.stringify(rec) + "\n", { mode: 0o600 });
  }

  upsertMedia(m: MediaRow): void {
    this.append({ t: "media", m });
  }

  media(mediaId: string): MediaRow | undefined {
    return this.mediaRows.get(mediaId);
  }

  addJob(j: NewJob, files: Iterable<FileRow>): number {
    const jobId = this.nextId++;
    const rows = [...files].map((f) => ({ ...f, path: f.path.toString("base64") }));
    this.append({ t: "job", j: { ...j, jobId }, files: rows });
    return jobId;
  }

  jobs(mediaId: string): JobRow[] {
    return [...this.jobRows.values()].filter((j) => j.mediaId === mediaId).sort((a, b) => a.seq - b.seq);
  }

  job(mediaId: string, seq: number): JobRow | undefined {
    return this.jobs(mediaId).find((j) => j.seq === seq);
  }

  files(jobId: number): FileRow[] {
    return [...(this.fileRows.get(jobId)?.values() ?? [])].sort((a, b) => Buffer.compare(a.path, b.path));
  }

  lookup(jobId: number, path: Buffer): FileRow | undefined {
    return this.fileRows.get(jobId)?.get(path.toString("base64"));
  }

  dropJobsFrom(mediaId: string, fromSeq: number): void {
    this.append({ t: "drop", mediaId, fromSeq });
  }

  addSpan(jobId: number, parts: SpanPart[]): void {
    this.append({ t: "span", jobId, parts });
  }

  span(jobId: number): SpanPart[] {
    return [...(this.spanRows.get(jobId) ?? [])].sort((a, b) => a.part - b.part);
  }

  spansOn(mediaId: string): Array<{ jobId: number; part: SpanPart }> {
    const out: Array<{ jobId: number; part: SpanPart }> = [];
    for (const [jobId, parts] of this.spanRows) for (const part of parts) if (part.mediaId === mediaId && part.part > 1) out.push({ jobId, part });
    return out.sort((a, b) => a.part.seq - b.part.seq);
  }

  /** Rewrites the log with only what is live (keeps the file from growing without bound). */
  compact(): void {
    const lines: string[] = [];
    for (const m of this.mediaRows.values()) lines.push(JSON.stringify({ t: "media", m }));
    for (const j of this.jobRows.values()) {
      const files = this.files(j.jobId).map((f) => ({ ...f, path: f.path.toString("base64") }));
      lines.push(JSON.stringify({ t: "job", j, files }));
      const parts = this.spanRows.get(j.jobId);
      if (parts) lines.push(JSON.stringify({ t: "span", jobId: j.jobId, parts }));
    }
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, lines.map((l) => l + "\n").join(""), { mode: 0o600 });
    renameSync(tmp, this.path);
  }

  close(): void {}
}

// ---------------------------------------------------------------------------------------------

function isBun(): boolean {
  return typeof process.versions?.bun === "string";
}

/** Opens the catalog under `stateDir` with the best backend this runtime has. */
export async function openCatalog(stateDir: string, opts: { backend?: "jsonl" } = {}): Promise<Catalog> {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  if (opts.backend === "jsonl") return new JsonlCatalog(join(stateDir, "catalog.jsonl"));
  const file = join(stateDir, "catalog.sqlite");
  if (isBun()) {
    // A variable specifier: bundlers for Node (vitest's vite) must not try to resolve it.
    const specifier = "bun:sqlite";
    const { Database } = (await import(specifier)) as { Database: new (path: string, opts?: object) => SqlDatabase };
    return new SqlCatalog(new Database(file, { create: true, strict: false }), "bun:sqlite", file);
  }
  try {
    const specifier = "node:sqlite";
    const { DatabaseSync } = (await import(specifier)) as { DatabaseSync: new (path: string) => SqlDatabase };
    return new SqlCatalog(new DatabaseSync(file), "node:sqlite", file);
  } catch {
    return new JsonlCatalog(join(stateDir, "catalog.jsonl"));
  }
}
