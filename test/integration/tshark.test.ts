/**
 * Wireshark's NDMP dissector as an independent judge of our wire format: a capture of real
 * sessions (ndmjob and `ndmpd query`, MD5, text, a refused login) must decode with no
 * malformed frame. The dissector only knows port 10000, so everything runs in a private
 * network namespace where that port is ours (see shared/interop/tshark.md).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNetns, type Netns } from "../helpers/netns.ts";
import { BINARY, havePeers, NDMJOB } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";

const ready = havePeers("binary", "ndmjob", "tshark", "unshare");

describe.runIf(ready)("wire format under Wireshark's dissector", () => {
  let ns: Netns;
  let srv: RunningServer;
  const dir = mkdtempSync(join(tmpdir(), "ndmpd-tshark-"));
  const pcap = join(dir, "ndmp.pcapng");

  beforeAll(async () => {
    ns = await createNetns();
  });
  afterAll(async () => {
    await srv?.stop();
    await ns?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("decodes every message of real sessions with no malformed frame", async () => {
    const [cmd, ...pre] = ns.prefix();
    const tshark = spawn(cmd!, [...pre, "tshark", "-i", "lo", "-w", pcap, "-f", "tcp port 10000"], { stdio: ["ignore", "ignore", "pipe"] });
    const tsharkDone = new Promise<void>((r) => tshark.once("exit", () => r()));
    await new Promise<void>((resolve, reject) => {
      let err = "";
      tshark.stderr!.on("data", (c) => {
        err += c;
        if (err.includes("Capturing on")) resolve();
      });
      tshark.once("exit", () => reject(new Error(`tshark: ${err}`)));
    });
    srv = await startServer({
      netns: ns,
      config: `[server]\nlisten = "127.0.0.1:10000"\nstate_dir = "$DIR/s"\nauth_failure_delay_ms = 0\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n`,
    });
    expect(srv.port).toBe(10000);
    const inNs = (c: string, args: string[]) => run(cmd!, [...pre, c, ...args], { timeoutMs: 30_000 });
    const q1 = await inNs(NDMJOB, ["-q", "-D", `127.0.0.1:10000/4m,${USER},${PASSWORD}`]);
    expect(q1.stdout).toContain("Backup type info of tar format");
    await inNs(NDMJOB, ["-q", "-D", `127.0.0.1:10000/4t,${USER},wrong`]);
    const q3 = await inNs(BINARY, ["query", "127.0.0.1", "--user", USER, "--password", PASSWORD, "--auth", "text"]);
    expect(q3.code).toBe(0);
    await new Promise((r) => setTimeout(r, 500));
    tshark.kill("SIGTERM");
    await tsharkDone;

    const fields = await run("tshark", ["-r", pcap, "-Y", "ndmp", "-T", "fields", "-e", "frame.number", "-e", "_ws.malformed", "-e", "ndmp.error", "-e", "_ws.col.Info"]);
    const frames = fields.stdout.trim().split("\n").filter(Boolean).map((l) => l.split("\t"));
    const infos = frames.map((f) => f[3] ?? "");
    expect(infos.filter((i) => i.startsWith("NOTIFY_CONNECTED")).length).toBe(3);
    for (const msg of ["NOTIFY_CONNECTED", "CONNECT_OPEN", "CONFIG_GET_AUTH_ATTR", "CONNECT_CLIENT_AUTH", "CONFIG_GET_HOST_INFO",
      "CONFIG_GET_SERVER_INFO", "CONFIG_GET_CONNECTION_TYPE", "CONFIG_GET_BUTYPE_INFO", "CONFIG_GET_FS_INFO",
      "CONFIG_GET_TAPE_INFO", "CONFIG_GET_SCSI_INFO", "CONNECT_CLOSE"]) {
      expect(infos.some((i) => i.startsWith(msg)), msg).toBe(true);
    }
    expect(infos.some((i) => i.includes("NOT_AUTHORIZED_ERR"))).toBe(true);
    const malformed = frames.filter((f) => f[1]);
    expect(malformed).toEqual([]);
  });
});
