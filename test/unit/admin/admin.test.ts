/**
 * The admin socket's pieces that need no server: where the CLI looks for the socket, the
 * sessions table, and the socket's answers to requests that are not ours.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { adminSocketPath } from "../../../src/admin/cli.ts";
import { formatSessions, type SessionInfo } from "../../../src/admin/sessions.ts";
import { adminRequest, AdminSocket } from "../../../src/admin/socket.ts";
import { Logger } from "../../../src/log.ts";
import type { NdmpServer } from "../../../src/server/listener.ts";
import { connect } from "node:net";

const dir = mkdtempSync(join(tmpdir(), "ndmpd-admin-unit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the admin socket", () => {
  it("is found from [admin] socket, else STATE_DIR/admin.sock, reading nothing else (no password file needed)", () => {
    const a = join(dir, "a.toml");
    writeFileSync(a, `[admin]\nsocket = "/run/x/admin.sock"\n[[user]]\nname = "u"\npassword_file = "/nonexistent"\n`);
    expect(adminSocketPath(a, {})).toBe("/run/x/admin.sock");
    const b = join(dir, "b.toml");
    writeFileSync(b, `[server]\nstate_dir = "/srv/state"\n`);
    expect(adminSocketPath(b, {})).toBe("/srv/state/admin.sock");
    expect(adminSocketPath(undefined, { NDMPD_CONFIG: b })).toBe("/srv/state/admin.sock");
  });

  it("formats sessions as a table", () => {
    const s: SessionInfo = {
      id: 7,
      peer: "10.0.0.5:40022",
      user: "ndmp",
      version: 4,
      openedAt: "2026-01-01T00:00:00.000Z",
      data: { state: "ACTIVE", operation: "BACKUP", bytes: 3 * 1024 * 1024, entries: 10, rate: 1024 * 1024, butype: "tar", path: "/srv", current: "a/b.txt" },
      mover: { state: "ACTIVE", mode: "READ", bytes: 3 * 1024 * 1024, rate: 0 },
      devices: ["tape vt0 (RDWR)"],
    };
    expect(formatSessions([])).toBe("no sessions\n");
    const t = formatSessions([s]).split("\n");
    expect(t[0]).toMatch(/^ID +PEER +USER +VER +DATA +MOVER +BYTES +RATE +DEVICES +PATH : CURRENT$/);
    expect(t[1]).toMatch(/^7 +10\.0\.0\.5:40022 +ndmp +v4 +ACTIVE BACKUP tar +ACTIVE READ +3\.0 MiB +1\.0 MiB\/s +tape vt0 \(RDWR\) +\/srv : a\/b\.txt$/);
  });

  it("answers garbage and unknown requests with an error, a kill of no session likewise, and removes a stale socket file", async () => {
    const path = join(dir, "s", "admin.sock");
    const fake = { sessions: new Set() } as unknown as NdmpServer;
    const log = new Logger("error", "human");
    const first = new AdminSocket(path, undefined, fake, log);
    await first.listen();
    // A second server on the same socket is refused while the first answers.
    await expect(new AdminSocket(path, undefined, fake, log).listen()).rejects.toThrow(/another ndmpd is running/);
    expect(await adminRequest(path, { op: "sessions" })).toEqual({ ok: true, sessions: [] });
    expect(await adminRequest(path, { op: "kill", id: 3 })).toEqual({ ok: false, error: "no session 3" });
    expect(await adminRequest(path, { op: "nope" } as never)).toEqual({ ok: false, error: "unknown request" });
    const raw = await new Promise<string>((resolve) => {
      const c = connect(path, () => c.write("not json\n"));
      let b = "";
      c.on("data", (d) => (b += d));
      c.on("end", () => resolve(b));
    });
    expect(JSON.parse(raw)).toEqual({ ok: false, error: "not a JSON request" });
    await first.close();
    await expect(adminRequest(path, { op: "sessions" })).rejects.toThrow(/no server is running there/);
    // A socket file left by a server that died (bound, never unlinked) is taken over.
    expect(spawnSync("python3", ["-c", `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(path)})`]).status).toBe(0);
    expect(statSync(path).isSocket()).toBe(true);
    const second = new AdminSocket(path, undefined, fake, log);
    await second.listen();
    expect(await adminRequest(path, { op: "sessions" })).toEqual({ ok: true, sessions: [] });
    await second.close();
  });
});
