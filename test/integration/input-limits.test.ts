/**
 * Bounded input on the compiled binary: env count and sizes, nlist size and path lengths, and
 * DATA_CONNECT address lists are refused with ILLEGAL_ARGS_ERR before a job starts (the session
 * goes on); a 1,000,000-entry nlist restores, matched by lookups rather than entries x targets.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NdmpClient } from "../../src/client/client.ts";
import { AddrType, ALL1, DataHaltReason as Halt, DataState, ErrorCode, Message, RecoveryStatus } from "../../src/protocol/codes.ts";
import { tcpAddr } from "../../src/transport/tcp.ts";
import { dma, errorOf, listenOnce, sendAll } from "../helpers/dma.ts";
import { havePeers } from "../helpers/peers.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";

const ready = havePeers("binary", "tar");

async function connectData(c: NdmpClient): Promise<Socket> {
  const l = await listenOnce();
  await c.request(Message.DATA_CONNECT, { addr: { addr_type: AddrType.TCP, tcp_addr: [tcpAddr("127.0.0.1", l.port)] } });
  const s = await l.accepted;
  s.on("error", () => {});
  return s;
}

const entry = (original: string, dest: string, name = "") => ({ original_path: original, destination_path: dest, name, other_name: "", node: ALL1, fh_info: ALL1 });

/** The server's resident memory now (VmRSS) or at its peak so far (VmHWM), in KiB, from /proc. */
function memKiB(pid: number, field: "VmRSS" | "VmHWM"): number {
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]);
}

describe.runIf(ready)("ndmpd binary: bounded input", () => {
  const W = mkdtempSync(join(tmpdir(), "ndmpd-input-"));
  let srv: RunningServer;
  beforeAll(async () => {
    srv = await startServer({
      config: `[server]\nlisten = "127.0.0.1:0"\nstate_dir = "$DIR/state"\nauth_failure_delay_ms = 0\nmax_message_size = "128MiB"\n\n[limits]\nmax_nlist = 1000000\n\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n`,
    });
  });
  afterAll(async () => {
    expect(await srv.stop()).toBe(0);
    rmSync(W, { recursive: true, force: true });
  });

  it("refuses oversized env, nlist and address lists with ILLEGAL_ARGS_ERR, and the session goes on", async () => {
    const c = await dma(srv.port);
    try {
      const tooMany = Array.from({ length: 17 }, (_, i) => tcpAddr("127.0.0.1", 1000 + i));
      expect(await errorOf(c.request(Message.DATA_CONNECT, { addr: { addr_type: AddrType.TCP, tcp_addr: tooMany } }))).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
      await connectData(c);
      const fs = { name: "FILESYSTEM", value: W };
      const backup = (env: Array<{ name: string; value: string | Buffer }>) => errorOf(c.request(Message.DATA_START_BACKUP, { butype_name: "tar", env }));
      const recover = (nlist: ReturnType<typeof entry>[]) => errorOf(c.request(Message.DATA_START_RECOVER, { butype_name: "tar", env: [fs], nlist }));
      expect(await backup([fs, ...Array.from({ length: 1024 }, (_, i) => ({ name: `V${i}`, value: "x" }))])).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
      expect(await backup([fs, { name: "N".repeat(257), value: "x" }])).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
      expect(await backup([fs, { name: "EXCLUDE", value: Buffer.alloc(1024 * 1024 + 1, 0x61) }])).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
      expect(await backup([fs, ...Array.from({ length: 5 }, (_, i) => ({ name: `BIG${i}`, value: Buffer.alloc(1024 * 1024, 0x61) }))])).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
      expect(await recover([entry(`/${"a".repeat(4096)}`, W)])).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
      expect(await recover([entry("/a", `${W}/x\0y`)])).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
      expect(await recover(Array.from({ length: 1_000_001 }, (_, i) => entry(`/${i}`, W)))).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
      const st = (await c.request(Message.DATA_GET_STATE)).body;
      expect(st.state).toBe(DataState.CONNECTED); // nothing started, nothing halted
      for (const why of ["1025 environment variables", "a name of 257 bytes", "EXCLUDE: a value of 1048577 bytes", "an environment of 5242", "original_path of 4097 bytes", "destination_path with a NUL byte", "an nlist of 1000001 entries", "17 addresses"]) {
        expect(srv.logs.some((l) => l.msg === "request refused" && String(l.why).includes(why.replace("a name of", "an environment variable name of"))), why).toBe(true);
      }
    } finally {
      await c.close();
    }
  });

  it("restores through a 1,000,000-entry nlist: 2,000 paths found among 998,000 missing, one LOG_FILE each", async () => {
    const src = join(W, "src");
    for (let d = 0; d < 20; d++) {
      mkdirSync(join(src, `d${d}`), { recursive: true });
      for (let f = 0; f < 100; f++) writeFileSync(join(src, `d${d}`, `f${f}`), `${d}/${f}\n`);
    }
    const t = spawnSync("tar", ["--format=posix", "-cf", "-", "-C", src, ...Array.from({ length: 20 }, (_, d) => `d${d}`)], { maxBuffer: 64 * 1024 * 1024 });
    expect(t.status).toBe(0);
    const dest = join(W, "dest");
    const N = 1_000_000;
    const nlist = Array.from({ length: N }, (_, i) => {
      // Every 500th entry names a file of the archive; the rest are not in it.
      if (i % 500 === 0) {
        const k = i / 500;
        const rel = `d${k % 20}/f${Math.floor(k / 20)}`;
        return entry(`/${rel}`, join(dest, rel));
      }
      return entry(`/missing/${i}`, join(dest, "missing", String(i)));
    });
    const c = await dma(srv.port);
    try {
      const rss0 = memKiB(srv.pid, "VmRSS");
      const data = await connectData(c);
      const since = c.posts.length;
      await c.request(Message.DATA_START_RECOVER, { butype_name: "tar", env: [{ name: "FILESYSTEM", value: dest }], nlist });
      const started = memKiB(srv.pid, "VmHWM");
      await sendAll(data, t.stdout);
      const h = await c.waitForPost(Message.NOTIFY_DATA_HALTED, 240_000, since);
      const rss1 = memKiB(srv.pid, "VmRSS");
      const peak = memKiB(srv.pid, "VmHWM");
      console.log(`1,000,000-entry nlist: server RSS ${rss0} -> ${rss1} KiB, peak ${started} KiB once started, ${peak} KiB in all`);
      expect(h.body.reason).toBe(Halt.SUCCESSFUL);
      // Bounded memory: at most 0.55 KiB of peak RSS per nlist entry (0.25-0.36 KiB measured; the
      // request record is ~0.1 KiB an entry and must be held). The nlist stays in its wire bytes
      // with one offset table (xdr/nlist.ts) and the engines keep targets by index (targets.ts):
      // with an object per entry the peak grew by 1.65 KiB per entry, and by 4.2 KiB before the
      // shared decoding of empty names and common u64s and the audit lines' path cap.
      expect(peak - rss0, "peak RSS growth in KiB").toBeLessThan(0.55 * N);
      const files = c.posts.slice(since).filter((p) => p.code === Message.LOG_FILE);
      expect(files.length).toBe(N);
      const ok = files.filter((p) => p.body.recovery_status === RecoveryStatus.SUCCESSFUL).length;
      expect(ok).toBe(2000);
      expect(files.filter((p) => p.body.recovery_status === RecoveryStatus.FAILED_NOT_FOUND).length).toBe(N - 2000);
      let restored = 0;
      for (let d = 0; d < 20; d++) {
        for (const f of readdirSync(join(dest, `d${d}`))) {
          expect(readFileSync(join(dest, `d${d}`, f), "utf8")).toBe(`${d}/${f.slice(1)}\n`);
          restored++;
        }
      }
      expect(restored).toBe(2000);
      await c.request(Message.DATA_STOP);
    } finally {
      await c.close();
    }
  }, 300_000); // ~75 s on a loaded machine; matching entries x targets (as before) takes hours
});
