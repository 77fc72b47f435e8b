/**
 * `ndmpd sessions` and `ndmpd kill-session N`: clients of the running server's admin socket.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_CONFIG_FILE, defaultConfig, parseToml } from "../config.ts";
import { formatSessions } from "./sessions.ts";
import { adminRequest } from "./socket.ts";

/**
 * The socket of the server that FILE configures: [admin] socket, else STATE_DIR/admin.sock.
 * Only those two keys are read, without validating the rest: a member of the admin group may
 * not be allowed to read the password files the configuration names.
 */
export function adminSocketPath(file: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const named = file ?? env.NDMPD_CONFIG ?? (existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : undefined);
  const fallback = defaultConfig({ NDMPD_STATE_DIR: env.NDMPD_STATE_DIR, NDMPD_PASSWORD: "-" }).admin.socket;
  if (!named) return fallback;
  const doc = parseToml(readFileSync(named, "utf8"), named) as { admin?: { socket?: unknown }; server?: { state_dir?: unknown } };
  if (typeof doc.admin?.socket === "string") return doc.admin.socket;
  if (typeof doc.server?.state_dir === "string") return join(doc.server.state_dir, "admin.sock");
  return fallback;
}

export async function sessionsCommand(socket: string, json: boolean): Promise<number> {
  const r = await adminRequest(socket, { op: "sessions" });
  if (!r.ok) throw new Error(r.error);
  process.stdout.write(json ? JSON.stringify(r.sessions) + "\n" : formatSessions(r.sessions ?? []));
  return 0;
}

export async function killSessionCommand(socket: string, id: number): Promise<number> {
  const r = await adminRequest(socket, { op: "kill", id });
  if (!r.ok) {
    process.stderr.write(`ndmpd: kill-session: ${r.error}\n`);
    return 1;
  }
  process.stdout.write(`session ${id} ended\n`);
  return 0;
}
