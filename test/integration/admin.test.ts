/**
 * The admin socket against the compiled binary: `ndmpd sessions` during a backup shows it
 * (peer, user, version, data and mover state, job, bytes, path, devices held), `ndmpd
 * kill-session` ends it the NDMP way (NOTIFY_DATA_HALTED ABORTED, NOTIFY_CONNECTION_STATUS
 * SHUTDOWN) and frees the drive for the next job (ndmjob backs up to it), and the socket
 * refuses a user who is neither root nor in [admin] group.
 *
 * The backup is held still by the test: its data connection goes to a socket of this process
 * that stops reading, so the job stays ACTIVE for as long as the test looks at it.
 */
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NdmpClient } from "../../src/client/client.ts";
import { AddrType, ConnectionStatusReason, DataHaltReason, Message, TapeOpenMode } from "../../src/protocol/codes.ts";
import { tcpAddr } from "../../src/transport/tcp.ts";
import { dma, seededBytes, tapeServerConfig } from "../helpers/dma.ts";
import { jobSucceeded, ndmjob } from "../helpers/ndmjob.ts";
import { BINARY, havePeers } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";

const ready = havePeers("binary", "ndmjob");

/** A data connection that takes a little and then stops reading: the backup stays ACTIVE. */
async function stallingDataConnection(c: NdmpClient): Promise<Socket> {
  const server = createServer();
  const accepted = new Promise<Socket>((r) => server.once("connection", r));
  const port = await new Promise<number>((r) => server.listen(0, "127.0.0.1", () => r((server.address() as { port: number }).port)));
  await c.request(Message.DATA_CONNECT, { addr: { addr_type: AddrType.TCP, tcp_addr: [tcpAddr("127.0.0.1", port)] } });
  const sock = await accepted;
  server.close();
  sock.once("data", () => sock.pause());
  sock.on("error", () => {});
  return sock;
}

describe.runIf(ready)("ndmpd sessions / kill-session", () => {
  const W = mkdtempSync(join(tmpdir(), "ndmpd-admin-"));
  const SRC = join(W, "src");
  const SOCK = join(W, "run", "admin.sock");
  // The binary as another user runs it: the clone may live where only root can enter (/root).
  const NOBODY_BINARY = join(W, "ndmpd");
  let srv: RunningServer;
  const ndmpd = (...args: string[]) => run(BINARY, [...args, "--socket", SOCK], { timeoutMs: 30_000 });

  beforeAll(async () => {
    chmodSync(W, 0o755); // nobody must reach the socket's directory: the socket's mode decides
    copyFileSync(BINARY, NOBODY_BINARY);
    chmodSync(NOBODY_BINARY, 0o755);
    mkdirSync(join(SRC, "dir"), { recursive: true });
    // More than every socket buffer between the server and the stalled reader.
    for (let i = 0; i < 4; i++) writeFileSync(join(SRC, "dir", `big${i}.bin`), seededBytes(8 * 1024 * 1024, i));
    srv = await startServer({ config: tapeServerConfig([{ name: "vt0", capacity: "1GiB" }]) + `\n[admin]\nsocket = "${SOCK}"\n` });
  }, 60_000);

  afterAll(async () => {
    await srv?.stop();
    rmSync(W, { recursive: true, force: true });
  });

  it("the socket is root's only (mode 0600), and a user who is not root cannot reach it", async () => {
    const st = statSync(SOCK);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(0);
    const r = await run("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", NOBODY_BINARY, "sessions", "--socket", SOCK]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("permission denied (only root, or the [admin] group, may use the admin socket)");
    const root = await ndmpd("sessions");
    expect(root.code, root.stderr).toBe(0);
    expect(root.stdout).toBe("no sessions\n");
  });

  it("sessions shows a running backup; kill-session ends it cleanly and the drive serves the next job", async () => {
    const c = await dma(srv.port);
    await c.request(Message.TAPE_OPEN, { device: "vt0", mode: TapeOpenMode.RDWR });
    const data = await stallingDataConnection(c);
    await c.request(Message.DATA_START_BACKUP, { butype_name: "tar", env: [{ name: "FILESYSTEM", value: SRC }] });

    let list: any[] = [];
    for (let i = 0; i < 100; i++) {
      const r = await ndmpd("sessions", "--json");
      expect(r.code, r.stderr).toBe(0);
      list = JSON.parse(r.stdout);
      if (list[0]?.data.bytes > 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(list).toHaveLength(1);
    const s = list[0];
    expect(s).toMatchObject({ user: USER, version: 4, devices: ["tape vt0 (RDWR)"] });
    expect(s.peer).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(s.data).toMatchObject({ state: "ACTIVE", operation: "BACKUP", butype: "tar", path: SRC });
    expect(s.data.bytes).toBeGreaterThan(0);
    expect(s.data.current).toMatch(/^dir(\/big\d\.bin)?$/);
    expect(s.mover.state).toBe("IDLE");
    const table = await ndmpd("sessions");
    expect(table.stdout).toMatch(new RegExp(`^ID +PEER +USER +VER +DATA +MOVER +BYTES +RATE +DEVICES +PATH : CURRENT\\n${s.id} +127\\.0\\.0\\.1:\\d+ +ndmp +v4 +ACTIVE BACKUP tar +IDLE +`));

    const since = c.posts.length;
    const k = await ndmpd("kill-session", String(s.id));
    expect(k.code, k.stderr).toBe(0);
    expect(k.stdout).toBe(`session ${s.id} ended\n`);
    const halted = await c.waitForPost(Message.NOTIFY_DATA_HALTED, 10_000, since);
    expect(halted.body.reason).toBe(DataHaltReason.ABORTED);
    const status = await c.waitForPost(Message.NOTIFY_CONNECTION_STATUS, 10_000, since);
    expect(status.body.reason).toBe(ConnectionStatusReason.SHUTDOWN);
    await c.close().catch(() => {});
    data.destroy();
    expect(JSON.parse((await ndmpd("sessions", "--json")).stdout)).toEqual([]);
    expect((await ndmpd("kill-session", String(s.id))).stderr).toContain(`no session ${s.id}`);

    // The drive is free: a DMA's next backup to it runs to the end.
    // (ndmjob as a DMA with one agent binds nothing: LOCAL data connection.)
    const A = `127.0.0.1:${srv.port}/4,${USER},${PASSWORD}`;
    const b = await ndmjob(undefined, ["-c", "-v", "-D", A, "-T", A, "-f", "vt0", "-B", "tar", "-C", SRC], 120_000);
    expect(jobSucceeded(b.stdout), b.stdout).toBe(true);
  });

  it("with [admin] group the socket is 0660 for that group, and its members reach it", async () => {
    const sock2 = join(W, "run2", "admin.sock");
    const other = await startServer({ config: tapeServerConfig([{ name: "vt1" }]) + `\n[admin]\nsocket = "${sock2}"\ngroup = "nogroup"\n` });
    try {
      const st = statSync(sock2);
      expect(st.mode & 0o777).toBe(0o660);
      expect(st.gid).toBe(65534);
      const member = await run("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", NOBODY_BINARY, "sessions", "--socket", sock2]);
      expect(member.code, member.stderr).toBe(0);
      expect(member.stdout).toBe("no sessions\n");
      const outsider = await run("setpriv", ["--reuid=65534", "--regid=65533", "--clear-groups", NOBODY_BINARY, "sessions", "--socket", sock2]);
      expect(outsider.code).toBe(1);
      expect(outsider.stderr).toContain("permission denied");
    } finally {
      await other.stop();
    }
  });
});

