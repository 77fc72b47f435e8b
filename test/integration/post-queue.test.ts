/**
 * One bounded queue for every post, on the compiled binary: a recovery with a 250,000-entry nlist
 * posts one LOG_FILE per entry (about 32 MiB of posts). A DMA that stops reading its control
 * connection pauses the job with the queue at its bound (ndmpd_control_queue_bytes), gets every
 * post once it reads again; one that goes away while its posts wait ends the job.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NdmpClient } from "../../src/client/client.ts";
import { AddrType, ALL1, DataHaltReason as Halt, Message, RecoveryStatus } from "../../src/protocol/codes.ts";
import { tcpAddr } from "../../src/transport/tcp.ts";
import { dma, listenOnce, sendAll, until } from "../helpers/dma.ts";
import { havePeers } from "../helpers/peers.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";

const ready = havePeers("binary", "tar");
const MiB = 1024 * 1024;
/** Session.CONTROL_HIGH_WATER, plus what one entry or chunk of input may post past it. */
const BOUND = 4 * MiB + 1 * MiB;
const ENTRIES = 250_000;
/** Long names make each LOG_FILE ~130 bytes: 250,000 of them are ~32 MiB, far past the socket buffers. */
const PAD = "p".repeat(80);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function scrapeQueue(port: number): Promise<number> {
  // A new connection per scrape: a keep-alive socket the server times out while its event loop
  // is busy (a 600,000-entry nlist under load) would fail the fetch, not the server.
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { connection: "close" } })).text();
  return Number(/^ndmpd_control_queue_bytes (\S+)$/m.exec(text)![1]);
}

describe.runIf(ready)("ndmpd binary: one bounded queue for every post", () => {
  const W = mkdtempSync(join(tmpdir(), "ndmpd-postq-"));
  let srv: RunningServer;
  let metricsPort: number;
  let archive: Buffer;
  beforeAll(async () => {
    srv = await startServer({
      config: `[server]\nlisten = "127.0.0.1:0"\nstate_dir = "$DIR/state"\nauth_failure_delay_ms = 0\nmax_message_size = "128MiB"\n\n[metrics]\nlisten = "127.0.0.1:0"\n\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n`,
    });
    metricsPort = srv.logs.find((l) => l.msg === "metrics listening")!.port;
    mkdirSync(join(W, "src"));
    writeFileSync(join(W, "src", "a"), "a\n");
    const t = spawnSync("tar", ["--format=posix", "-cf", "-", "-C", join(W, "src"), "."]);
    expect(t.status).toBe(0);
    archive = t.stdout;
  });
  afterAll(async () => {
    expect(await srv.stop()).toBe(0);
    rmSync(W, { recursive: true, force: true });
  });

  /** DATA_START_RECOVER of ENTRIES paths not in the archive; the archive goes out on the data connection. */
  async function startRecovery(c: NdmpClient): Promise<{ data: Socket; since: number }> {
    const l = await listenOnce();
    await c.request(Message.DATA_CONNECT, { addr: { addr_type: AddrType.TCP, tcp_addr: [tcpAddr("127.0.0.1", l.port)] } });
    const data = await l.accepted;
    data.on("error", () => {});
    const since = c.posts.length;
    const dest = join(W, "dest");
    const nlist = Array.from({ length: ENTRIES }, (_, i) => ({ original_path: `/missing/${PAD}/${i}`, destination_path: dest, name: "", other_name: "", node: ALL1, fh_info: ALL1 }));
    await c.request(Message.DATA_START_RECOVER, { butype_name: "tar", env: [{ name: "FILESYSTEM", value: dest }], nlist });
    await sendAll(data, archive);
    return { data, since };
  }

  /** Polls the queue gauge until it holds still for 1.5 s; returns the largest value seen. */
  async function stalledQueue(): Promise<number> {
    let peak = 0;
    let last = -1;
    let still = 0;
    const deadline = Date.now() + 60_000;
    while (still < 6) {
      if (Date.now() > deadline) throw new Error("the post queue did not settle");
      await sleep(250);
      const q = await scrapeQueue(metricsPort);
      peak = Math.max(peak, q);
      still = q === last && q > 0 ? still + 1 : 0;
      last = q;
    }
    return peak;
  }

  it("a DMA that stops reading pauses the job with the queue at its bound; every LOG_FILE arrives once it reads", async () => {
    const c = await dma(srv.port);
    try {
      const control = (c as unknown as { socket: Socket }).socket;
      const { since } = await startRecovery(c);
      control.pause();
      const peak = await stalledQueue();
      expect(peak, `${peak} bytes queued`).toBeLessThanOrEqual(BOUND);
      const before = c.posts.slice(since).filter((p) => p.code === Message.LOG_FILE).length;
      expect(before).toBeLessThan(ENTRIES);
      control.resume();
      const h = await c.waitForPost(Message.NOTIFY_DATA_HALTED, 120_000, since);
      expect(h.body.reason).toBe(Halt.SUCCESSFUL);
      const files = c.posts.slice(since).filter((p) => p.code === Message.LOG_FILE);
      expect(files.length).toBe(ENTRIES);
      expect(files.every((p) => p.body.recovery_status === RecoveryStatus.FAILED_NOT_FOUND)).toBe(true);
      expect(Buffer.from(files[ENTRIES - 1]!.body.name).toString()).toBe(`/missing/${PAD}/${ENTRIES - 1}`);
      await c.request(Message.DATA_STOP);
    } finally {
      await c.close();
    }
  }, 240_000);

  it("a DMA that vanishes while its posts wait ends the job; the next session works", async () => {
    const fds = srv.fdCount();
    const c = await dma(srv.port);
    const control = (c as unknown as { socket: Socket }).socket;
    const { data } = await startRecovery(c);
    control.pause();
    await stalledQueue();
    const closedBefore = srv.logs.filter((l) => l.msg === "session closed").length;
    control.destroy();
    await until(() => srv.logs.filter((l) => l.msg === "session closed").length > closedBefore, 30_000, "the session to end");
    await until(() => data.destroyed || data.readableEnded, 10_000, "the data connection to close");
    await until(async () => (await scrapeQueue(metricsPort)) === 0, 10_000, "the queue to empty");
    const next = await dma(srv.port);
    expect((await next.request(Message.DATA_GET_STATE)).body.state).toBe(0); // IDLE
    await next.close();
    await until(() => srv.fdCount() <= fds + 2, 10_000, "descriptors to be released");
  }, 240_000);
});
