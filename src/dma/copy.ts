/**
 * Data migration (ndmpcopy's job): one server's backup stream goes straight into another
 * server's recovery over one data connection, data service to data service, never through us.
 *
 * One side DATA_LISTENs (TCP between two servers, IPC between two sessions of one server), the
 * other DATA_CONNECTs to the address it gave; then DATA_START_RECOVER on the destination and
 * DATA_START_BACKUP on the source. The source's file history comes to us (we count it, and a
 * caller may keep it); the destination's LOG_MESSAGE and LOG_FILE say what it restored. A level
 * N copy is an incremental backup of the source (its dumpdates) restored onto the destination,
 * which applies the deletions the incremental's directories record.
 */
import type { FileRow } from "../catalog/catalog.ts";
import type { NdmpClient, Post } from "../client/client.ts";
import { AddrType, ALL1, DataHaltReason, LogType, Message, RecoveryStatus } from "../protocol/codes.ts";
import { toBuffer } from "../protocol/xdr/codec.ts";
import { HistoryCollector } from "./history.ts";
import type { Progress } from "./progress.ts";
import { PostPair } from "./post-pair.ts";
import { JobError } from "./target.ts";

export interface CopyEnd {
  client: NdmpClient;
  /** An absolute path on that server. */
  path: string;
  /** For messages: "host:port". */
  name: string;
}

export interface CopyOptions {
  format: "tar" | "dump";
  level: number;
  excludes: string[];
  /** The side that DATA_LISTENs (the other connects): the destination by default. */
  listen: "src" | "dst";
  /** Both ends are sessions of one server: IPC instead of TCP. */
  sameServer: boolean;
  progress: Progress;
  /** Keep the source's file history rows (else only counted). */
  keepHistory?: boolean;
}

export interface CopyResult {
  ok: boolean;
  /** Bytes the source sent. */
  bytes: number;
  /** File history entries the source posted. */
  entries: number;
  /** The destination's count of restored entries, from its "recovery done" report. */
  restored?: number;
  srcHalt: number;
  dstHalt: number;
  errors: string[];
  /** LOG_FILE outcomes from the destination that were not SUCCESSFUL. */
  failed: string[];
  /** The destination's LOG_FILE outcome for the tree ("SUCCESSFUL", ...), when it reported one. */
  outcome?: string;
  /** The source's DATA_GET_ENV after the backup (DUMP_DATE, LEVEL...). */
  env: Array<[string, string]>;
  history?: FileRow[];
}

const POLL_MS = 250;

export async function copyJob(src: CopyEnd, dst: CopyEnd, o: CopyOptions): Promise<CopyResult> {
  const result: CopyResult = { ok: false, bytes: 0, entries: 0, srcHalt: 0, dstHalt: 0, errors: [], failed: [], env: [] };
  const history = new HistoryCollector();
  const posts = new PostPair({ src: src.client, dst: dst.client }, (side) => `the ${side === "src" ? "source" : "destination"} ${side === "src" ? src.name : dst.name}`);
  const queue = posts.queue;
  const both = [src.client, dst.client];
  try {
    const [listener, connector] = o.listen === "src" ? [src.client, dst.client] : [dst.client, src.client];
    const l = await listener.request(Message.DATA_LISTEN, { addr_type: o.sameServer ? AddrType.IPC : AddrType.TCP });
    await connector.request(Message.DATA_CONNECT, { addr: l.body.connect_addr });

    o.progress.start({ from: `${src.name}:${src.path}`, to: `${dst.name}:${dst.path}`, format: o.format, level: o.level, connection: o.sameServer ? "IPC" : `TCP (${o.listen === "src" ? "source" : "destination"} listens)` });
    await started(queue, "destination", () =>
      dst.client.request(Message.DATA_START_RECOVER, {
        butype_name: o.format,
        env: pairs([
          ["FILESYSTEM", dst.path],
          ["TYPE", o.format],
          ["HIST", "n"],
          ["DIRECT", "n"],
        ]),
        // The whole tree, as one nlist entry: the destination reports its outcome with LOG_FILE.
        nlist: [{ original_path: "/", destination_path: dst.path, name: "", other_name: "", node: ALL1, fh_info: ALL1 }],
      }),
    );
    await started(queue, "source", () =>
      src.client.request(Message.DATA_START_BACKUP, {
        butype_name: o.format,
        env: pairs([
          ["FILESYSTEM", src.path],
          ["TYPE", o.format],
          ["HIST", "y"],
          ["LEVEL", String(o.level)],
          // Recorded in the source's dumpdates: the next level builds on this copy.
          ["UPDATE", "y"],
          ...o.excludes.map((p): [string, string] => ["EXCLUDE", p]),
        ]),
      }),
    );

    const halted: { src?: number; dst?: number } = {};
    let lastPoll = 0;
    while (halted.src === undefined || halted.dst === undefined) {
      await posts.settle(POLL_MS);
      const now = Date.now();
      if (now - lastPoll >= POLL_MS && halted.src === undefined) {
        lastPoll = now;
        const st = (await src.client.request(Message.DATA_GET_STATE)).body;
        result.bytes = Number(st.bytes_processed);
        o.progress.update(result.bytes, history.count);
      }
      while (queue.length > 0) {
        const { from, p } = queue.shift()!;
        switch (p.code) {
          case Message.FH_ADD_FILE:
          case Message.FH_ADD_DIR:
          case Message.FH_ADD_NODE:
            if (from === "src") history.add(p);
            break;
          case Message.LOG_MESSAGE: {
            const text = toBuffer(p.body.entry).toString("utf8");
            const who = from === "src" ? "source" : "destination";
            if (p.body.log_type === LogType.ERROR) result.errors.push(`${who}: ${text}`);
            if (p.body.log_type === LogType.ERROR || p.body.log_type === LogType.WARNING) {
              o.progress.note(`${p.body.log_type === LogType.ERROR ? "error" : "warning"} (${who}): ${text}`);
            }
            const m = /^recovery done: (\d+) entries read, (\d+) restored/.exec(text);
            if (m && from === "dst") result.restored = +m[2]!;
            break;
          }
          case Message.LOG_FILE:
            if (from !== "dst") break;
            result.outcome = statusName(p.body.recovery_status);
            if (p.body.recovery_status !== RecoveryStatus.SUCCESSFUL) result.failed.push(`${toBuffer(p.body.name).toString("utf8")} (${result.outcome})`);
            break;
          case Message.NOTIFY_DATA_READ:
            break; // the destination asks for the stream from the start: the source sends exactly that
          case Message.NOTIFY_DATA_HALTED: {
            const reason = p.body.reason as number;
            halted[from] = reason;
            // One side failed: the other cannot finish (the stream is cut or unread); end it now.
            const other = from === "src" ? "dst" : "src";
            if (reason !== DataHaltReason.SUCCESSFUL && halted[other] === undefined) {
              await (other === "src" ? src : dst).client.request(Message.DATA_ABORT, {}, { allowBodyError: true });
            }
            break;
          }
        }
      }
    }
    result.srcHalt = halted.src!;
    result.dstHalt = halted.dst!;
    const st = (await src.client.request(Message.DATA_GET_STATE)).body;
    result.bytes = Math.max(result.bytes, Number(st.bytes_processed));
    if (halted.src === DataHaltReason.SUCCESSFUL) {
      const env = (await src.client.request(Message.DATA_GET_ENV, {}, { allowBodyError: true })).body.env ?? [];
      result.env = env.map((p: any) => [toBuffer(p.name).toString("utf8"), toBuffer(p.value).toString("utf8")]);
    }
    for (const c of both) await c.request(Message.DATA_STOP);
    result.entries = history.count;
    if (o.keepHistory) result.history = history.rows();
    result.ok = halted.src === DataHaltReason.SUCCESSFUL && halted.dst === DataHaltReason.SUCCESSFUL && result.errors.length === 0 && result.failed.length === 0;
    o.progress.update(result.bytes, history.count);
    o.progress.end(result.ok, {
      bytes: result.bytes,
      entries: result.entries,
      restored: result.restored ?? "?",
      outcome: result.outcome ?? "?",
      ...(result.ok ? {} : { source: haltName(halted.src!), destination: haltName(halted.dst!) }),
      ...(result.errors.length ? { errors: result.errors.join("; ") } : {}),
    });
    return result;
  } catch (e) {
    // Leave both data services idle for the next job (best effort: a connection may be gone).
    for (const c of both) {
      await c.request(Message.DATA_ABORT, {}, { allowBodyError: true }).catch(() => {});
      await c.request(Message.DATA_STOP, {}, { allowBodyError: true }).catch(() => {});
    }
    // A request cut off by a lost connection says only "connection closed": say which one.
    throw posts.lost && !(e instanceof JobError) ? new JobError(posts.lost) : e;
  } finally {
    posts.close();
  }
}

/** A refused start, with the data service's LOG_MESSAGE saying why (a missing base level...). */
async function started(queue: Array<{ p: Post }>, who: string, start: () => Promise<unknown>): Promise<void> {
  try {
    await start();
  } catch (e) {
    const why = queue.filter(({ p }) => p.code === Message.LOG_MESSAGE && p.body.log_type === LogType.ERROR).map(({ p }) => toBuffer(p.body.entry).toString("utf8"));
    throw new JobError(`the ${who} refused to start: ${(e as Error).message}${why.length ? `: ${why.join("; ")}` : ""}`);
  }
}

function pairs(list: Array<[string, string]>) {
  return list.map(([name, value]) => ({ name, value }));
}

function statusName(s: number): string {
  return Object.entries(RecoveryStatus).find(([, v]) => v === s)?.[0] ?? String(s);
}

function haltName(r: number): string {
  return Object.entries(DataHaltReason).find(([, v]) => v === r)?.[0] ?? String(r);
}
