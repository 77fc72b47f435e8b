/**
 * A device call that blocks never stalls another session, on the compiled binary. Without tape
 * hardware, the blocking drive is a file on a FUSE filesystem of our own (test/helpers/fuse-hold.ts,
 * the kernel protocol on /dev/fuse): the kernel forwards each ioctl on it to that process,
 * which holds it until told. So the first ioctl of TAPE_OPEN on an `st` drive there
 * (MTIOCTOP SETBLK) sleeps in the kernel for as long as the test wants, as a rewind would.
 * While it sleeps, another session must be answered; the held call is released only after that,
 * so an ioctl on the event loop would deadlock this test (its requests time out), not slow it.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode, Message, TapeOpenMode } from "../../src/protocol/codes.ts";
import { dma } from "../helpers/dma.ts";
import { havePeers, IN_CI, ROOT } from "../helpers/peers.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";

const BUN = join(ROOT, "node_modules", ".bin", "bun");
const canFuse = process.getuid?.() === 0 && existsSync("/dev/fuse") && existsSync(BUN);
if (!canFuse && !IN_CI) console.warn("skipping the ioctl stall test: it needs root and /dev/fuse");

/** Rejects when `p` takes longer than `ms`: a liveness limit (the call never comes), not a timing. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, rej) => setTimeout(() => rej(new Error(`${what}: no answer in ${ms} ms`)), ms))]);
}

describe.runIf(havePeers("binary") && (canFuse || IN_CI))("device calls off the event loop", () => {
  const W = mkdtempSync(join(tmpdir(), "ndmpd-ioctl-stall-"));
  const MNT = join(W, "fuse");
  let fuse: ChildProcess;
  let fuseOut = "";
  let mounted = false;
  let srv: RunningServer;

  beforeAll(async () => {
    mkdirSync(MNT);
    const dev = openSync("/dev/fuse", "r+");
    try {
      fuse = spawn(BUN, [join(ROOT, "test", "helpers", "fuse-hold.ts")], { stdio: ["ignore", "pipe", "inherit", dev] });
      fuse.stdout!.on("data", (c: Buffer) => (fuseOut += c.toString()));
      const m = spawnSync("mount", ["-t", "fuse", "-o", "fd=3,rootmode=40000,user_id=0,group_id=0,allow_other", "ndmpd-test", MNT], { stdio: ["ignore", "pipe", "pipe", dev], encoding: "utf8" });
      if (m.status !== 0) throw new Error(`mount fuse: ${m.stderr}`);
      mounted = true;
    } finally {
      closeSync(dev);
    }
    expect(statSync(join(MNT, "tape")).isFile()).toBe(true);
    srv = await startServer({
      config: `[server]\nlisten = "127.0.0.1:0"\nstate_dir = "$DIR/state"\nauth_failure_delay_ms = 0\n\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n\n[[tape]]\nname = "st0"\ntype = "st"\npath = "${MNT}/tape"\n\n[[tape]]\nname = "vt0"\npath = "$DIR/vt0.tape"\ncapacity = "64MiB"\n`,
    });
  });
  afterAll(async () => {
    if (mounted) spawnSync("stat", [join(MNT, "release")]); // nothing may stay held
    if (srv) expect(await srv.stop()).toBe(0);
    if (mounted) spawnSync("umount", [MNT]);
    fuse?.kill();
    rmSync(W, { recursive: true, force: true });
  });

  it("while one session's TAPE_OPEN sleeps in an ioctl of its drive, another session logs in, opens another drive and is answered", async () => {
    const a = await dma(srv.port);
    let aDone = false;
    const opening = a.request(Message.TAPE_OPEN, { device: "st0", mode: TapeOpenMode.RDWR }).then(
      () => ErrorCode.NO_ERR,
      (e: { error?: number }) => e.error ?? -1,
    ).finally(() => (aDone = true));
    // The ioctl is in the kernel, held by the filesystem.
    await within(new Promise<void>((r) => { const t = setInterval(() => { if (fuseOut.includes("ioctl ")) { clearInterval(t); r(); } }, 20); }), 15_000, "the drive's ioctl");
    expect(fuseOut).toMatch(/ioctl 40086d01/); // MTIOCTOP (SETBLK), the first call of an open

    // Another session, meanwhile: connect, log in, query, open and use another drive.
    const b = await within(dma(srv.port), 10_000, "a second session's login");
    expect((await within(b.request(Message.CONFIG_GET_SERVER_INFO), 10_000, "CONFIG_GET_SERVER_INFO")).body.vendor_name.toString()).toBeTruthy();
    await within(b.request(Message.TAPE_OPEN, { device: "vt0", mode: TapeOpenMode.RDWR }), 10_000, "TAPE_OPEN vt0");
    await within(b.request(Message.TAPE_WRITE, { data_out: Buffer.alloc(10240, 7) }), 10_000, "TAPE_WRITE vt0");
    await within(b.request(Message.TAPE_CLOSE), 10_000, "TAPE_CLOSE vt0");
    expect(aDone, "the first session's TAPE_OPEN is still in its ioctl").toBe(false);

    // Let the ioctl return (ENOTTY, as a file that is no tape gives): the open fails cleanly.
    statSync(join(MNT, "release"), { throwIfNoEntry: false });
    expect(await within(opening, 15_000, "the held TAPE_OPEN")).not.toBe(ErrorCode.NO_ERR);
    expect(fuseOut).toContain("released");
    // Both sessions go on.
    expect((await a.request(Message.CONFIG_GET_SERVER_INFO)).body.vendor_name.toString()).toBeTruthy();
    await b.close();
    await a.close();
  });
});
