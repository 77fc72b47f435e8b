/**
 * Wireshark's NDMP dissector as an independent judge of our wire format: a capture of real
 * sessions (ndmjob and `ndmpd query`, MD5, text, a refused login, tar and dump backups with
 * file history at v4 and v3: the FH posts are written by protocol/fh-record.ts, not by the
 * generic codec) must decode with no malformed frame. The dissector only knows port 10000, so everything runs in a private
 * network namespace where that port is ours (see shared/interop/tshark.md).
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNetns, type Netns } from "../helpers/netns.ts";
import { jobSucceeded } from "../helpers/ndmjob.ts";
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
      config: `[server]\nlisten = "127.0.0.1:10000"\nstate_dir = "$DIR/s"\nauth_failure_delay_ms = 0\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n[[tape]]\nname = "vt0"\npath = "$DIR/vt0.tape"\ncapacity = "256MiB"\n`,
    });
    expect(srv.port).toBe(10000);
    const inNs = (c: string, args: string[]) => run(cmd!, [...pre, c, ...args], { timeoutMs: 30_000 });
    const q1 = await inNs(NDMJOB, ["-q", "-D", `127.0.0.1:10000/4m,${USER},${PASSWORD}`]);
    expect(q1.stdout).toContain("Backup type info of tar format");
    await inNs(NDMJOB, ["-q", "-D", `127.0.0.1:10000/4t,${USER},wrong`]);
    const q3 = await inNs(BINARY, ["query", "127.0.0.1", "--user", USER, "--password", PASSWORD, "--auth", "text"]);
    expect(q3.code).toBe(0);
    // File history: FH_ADD_FILE (tar), FH_ADD_DIR and FH_ADD_NODE (dump), at v4 and at v3, with
    // names of every length modulo 4 and one that is not UTF-8.
    const src = join(dir, "src");
    mkdirSync(join(src, "sub"), { recursive: true });
    for (const n of ["a", "bb", "ccc", "dddd", "eeeee"]) writeFileSync(join(src, "sub", n), n);
    writeFileSync(Buffer.concat([Buffer.from(src + "/"), Buffer.from([0x6e, 0xff, 0xfe])]), "x");
    writeFileSync(Buffer.concat([Buffer.from(join(src, "sub") + "/"), Buffer.from([0xe9, 0x80])]), "y");
    for (const [v, butype] of [["4", "tar"], ["4", "dump"], ["3", "tar"], ["3", "dump"]] as const) {
      const b = await inNs(NDMJOB, ["-c", "-v", "-D", `127.0.0.1:10000/${v},${USER},${PASSWORD}`, "-f", "vt0", "-B", butype, "-C", src, "-I", join(dir, `${v}-${butype}.idx`)]);
      expect(jobSucceeded(b.stdout), b.stdout).toBe(true);
    }
    await new Promise((r) => setTimeout(r, 500));
    tshark.kill("SIGTERM");
    await tsharkDone;

    const fields = await run("tshark", ["-r", pcap, "-Y", "ndmp", "-T", "fields", "-e", "frame.number", "-e", "_ws.malformed", "-e", "ndmp.error", "-e", "_ws.col.Info"]);
    const frames = fields.stdout.trim().split("\n").filter(Boolean).map((l) => l.split("\t"));
    const infos = frames.map((f) => f[3] ?? "");
    expect(infos.filter((i) => i.startsWith("NOTIFY_CONNECTED")).length).toBe(3 + 4); // three queries, four backups
    for (const msg of ["NOTIFY_CONNECTED", "CONNECT_OPEN", "CONFIG_GET_AUTH_ATTR", "CONNECT_CLIENT_AUTH", "CONFIG_GET_HOST_INFO",
      "CONFIG_GET_SERVER_INFO", "CONFIG_GET_CONNECTION_TYPE", "CONFIG_GET_BUTYPE_INFO", "CONFIG_GET_FS_INFO",
      "CONFIG_GET_TAPE_INFO", "CONFIG_GET_SCSI_INFO", "CONNECT_CLOSE"]) {
      expect(infos.some((i) => i.startsWith(msg)), msg).toBe(true);
    }
    expect(infos.some((i) => i.includes("NOT_AUTHORIZED_ERR"))).toBe(true);
    for (const msg of ["FH_ADD_FILE", "FH_ADD_DIR", "FH_ADD_NODE"]) expect(infos.filter((i) => i.startsWith(msg)).length, msg).toBeGreaterThanOrEqual(2);
    const malformed = frames.filter((f) => f[1]);
    expect(malformed).toEqual([]);
  });
});
