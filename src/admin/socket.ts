/**
 * The admin socket: a Unix socket where `ndmpd sessions` and `ndmpd kill-session` reach the
 * running server. No TCP port: who may use it is decided by the file's owner and mode (0600
 * root, or 0660 with [admin] group), which the kernel checks at connect.
 *
 * Protocol: the client writes one JSON line, {"op":"sessions"} or {"op":"kill","id":N}; the
 * server answers one JSON line, {"ok":true,...} or {"ok":false,"error":"..."}, and closes.
 */
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, unlinkSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { dirname } from "node:path";
import type { Config } from "../config.ts";
import { hostIdOf } from "../host/accounts.ts";
import type { Logger } from "../log.ts";
import type { NdmpServer } from "../server/listener.ts";
import { describeSession, type SessionInfo } from "./sessions.ts";

export type AdminRequest = { op: "sessions" } | { op: "kill"; id: number };
export type AdminReply = { ok: true; sessions?: SessionInfo[]; killed?: number } | { ok: false; error: string };

/** Requests longer than this are not ours: the connection is dropped. */
const MAX_REQUEST = 4096;

export class AdminSocket {
  private server: Server | undefined;

  constructor(
    private readonly path: string,
    private readonly group: string | undefined,
    private readonly ndmp: NdmpServer,
    private readonly log: Logger,
  ) {}

  static forConfig(config: Config, ndmp: NdmpServer, log: Logger): AdminSocket {
    return new AdminSocket(config.admin.socket, config.admin.group, ndmp, log.child({ service: "admin" }));
  }

  async listen(): Promise<void> {
    const gid = this.group !== undefined ? hostIdOf("group", this.group) : undefined;
    if (this.group !== undefined && gid === undefined) throw new Error(`[admin] group ${this.group}: no such group`);
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o755 });
    await this.removeStale();
    const server = createServer((sock) => this.serve(sock));
    // Created with no access for anyone but root, then opened to the group: never a moment
    // when others may connect.
    const umask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(this.path, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } finally {
      process.umask(umask);
    }
    if (gid !== undefined) {
      chownSync(this.path, process.getuid?.() ?? 0, gid);
      chmodSync(this.path, 0o660);
    } else chmodSync(this.path, 0o600);
    server.on("error", (err) => this.log.error("admin socket error", { err }));
    this.server = server;
    this.log.info("admin socket", { path: this.path, group: this.group ?? null });
  }

  /** A socket file left by a server that died is removed; one a live server answers on is not. */
  private async removeStale(): Promise<void> {
    if (!existsSync(this.path)) return;
    if (!lstatSync(this.path).isSocket()) throw new Error(`${this.path} exists and is not a socket`);
    const alive = await new Promise<boolean>((resolve) => {
      const c = connect(this.path);
      c.once("connect", () => {
        c.destroy();
        resolve(true);
      });
      c.once("error", () => resolve(false));
    });
    if (alive) throw new Error(`${this.path}: another ndmpd is running (its admin socket answers)`);
    unlinkSync(this.path);
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    await new Promise<void>((r) => s.close(() => r()));
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }

  private serve(sock: Socket): void {
    let buf = "";
    sock.setEncoding("utf8");
    sock.on("error", () => {});
    sock.setTimeout(10_000, () => sock.destroy());
    sock.on("data", (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_REQUEST) return void sock.destroy();
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      sock.removeAllListeners("data");
      void this.handle(buf.slice(0, nl)).then((reply) => sock.end(JSON.stringify(reply) + "\n"));
    });
  }

  private async handle(line: string): Promise<AdminReply> {
    let req: AdminRequest;
    try {
      req = JSON.parse(line);
    } catch {
      return { ok: false, error: "not a JSON request" };
    }
    if (req?.op === "sessions") {
      return { ok: true, sessions: [...this.ndmp.sessions].filter((s) => !s.isClosed).map(describeSession) };
    }
    if (req?.op === "kill" && Number.isInteger(req.id)) {
      const s = [...this.ndmp.sessions].find((x) => x.id === req.id && !x.isClosed);
      if (!s) return { ok: false, error: `no session ${req.id}` };
      this.log.info("kill-session", { session: req.id });
      await s.kill("session ended by the administrator");
      return { ok: true, killed: req.id };
    }
    return { ok: false, error: "unknown request" };
  }
}

/** The client side: one request, one reply. */
export function adminRequest(path: string, req: AdminRequest, timeoutMs = 30_000): Promise<AdminReply> {
  return new Promise((resolve, reject) => {
    const c = connect(path);
    let buf = "";
    const timer = setTimeout(() => {
      c.destroy();
      reject(new Error(`${path}: no answer in ${timeoutMs / 1000} s`));
    }, timeoutMs);
    c.setEncoding("utf8");
    c.once("connect", () => c.write(JSON.stringify(req) + "\n"));
    c.on("data", (d: string) => (buf += d));
    c.once("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why =
        e.code === "EACCES"
          ? "permission denied (only root, or the [admin] group, may use the admin socket)"
          : e.code === "ENOENT" || e.code === "ECONNREFUSED"
            ? "no server is running there"
            : e.message;
      reject(new Error(`${path}: ${why}`));
    });
    c.once("end", () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf));
      } catch {
        reject(new Error(`${path}: not an ndmpd admin socket`));
      }
    });
  });
}
