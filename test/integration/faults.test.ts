/**
 * Fault injection on the compiled binary, as root on real (small) filesystems:
 *  - ENOSPC on the recovery destination (a 1 MiB tmpfs): the file that does not fit is reported
 *    and the job goes on; what fits is restored intact, nothing outside the destination touched.
 *  - ENOSPC on the disk under a virtual tape while the mover writes (the cartridge on a 2 MiB
 *    tmpfs): the mover halts MEDIA_ERROR with the reason in the log, and the cartridge reads back
 *    every complete record, each the stream at its place.
 *  - the DMA dropping its control connection at every step of a backup and of a recovery: the
 *    job ends, the data connection closes, the next session works, and the server's descriptors
 *    come back to where they were.
 */
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NdmpClientError } from "../../src/client/client.ts";
import { AddrType, ALL1, DataHaltReason as Halt, ErrorCode, Message, MoverHaltReason, MoverMode, TapeOpenMode } from "../../src/protocol/codes.ts";
import { tcpAddr } from "../../src/transport/tcp.ts";
import { connectTo, dma, listenOnce, Receiver, seededBytes, sendAll, until } from "../helpers/dma.ts";
import { BINARY, havePeers, IN_CI, ROOT } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";

const ready = havePeers("binary");
const MiB = 1024 * 1024;

describe.runIf(ready)("fault injection", () => {
  const W = mkdtempSync(join(tmpdir(), "ndmpd-faults-"));
  const SRC = join(W, "src");
  const mounts: string[] = [];
  const tmpfs = (dir: string, size: string) => {
    mkdirSync(dir, { recursive: true });
    const r = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`mount tmpfs ${dir}: ${r.stderr}`);
    mounts.unshift(dir);
  };
  const config = (tapePath: string) => {
    const cfg = join(W, `ndmpd-${mounts.length}-${Date.now()}.toml`);
    writeFileSync(cfg, `[server]\nstate_dir = "${W}/state"\n\n[[tape]]\nname = "vt0"\npath = "${tapePath}"\ncapacity = "1GiB"\n`);
    chmodSync(cfg, 0o600);
    return cfg;
  };

  beforeAll(() => {
    // In stream order: a small file, a 3 MiB one, then more small ones.
    mkdirSync(SRC);
    writeFileSync(join(SRC, "a-first.txt"), "first\n");
    writeFileSync(join(SRC, "m-big.bin"), seededBytes(3 * MiB, 1));
    for (let i = 0; i < 5; i++) writeFileSync(join(SRC, `z-small-${i}.txt`), `small ${i}\n`);
  });
  afterAll(() => {
    for (const m of mounts) spawnSync("umount", [m]);
    rmSync(W, { recursive: true, force: true });
  });

  it("ENOSPC on the recovery destination: the big file is reported, the rest restored, nothing outside touched", async () => {
    const cfg = config(join(W, "ok.tape"));
    const b = await run(BINARY, ["backup", SRC, "--tape", "vt0", "--config", cfg], { timeoutMs: 120_000 });
    expect(b.code, b.stderr + b.stdout).toBe(0);
    const tiny = join(W, "tiny");
    tmpfs(tiny, "1m");
    const out = join(tiny, "out");
    const r = await run(BINARY, ["recover", "--tape", "vt0", "--to", out, "--json", "--config", cfg], { timeoutMs: 120_000 });
    const said = r.stdout + r.stderr;
    expect(said).toMatch(/m-big\.bin[^\n]*(ENOSPC|no space)/i);
    // A restore that lost a file is not a clean one: one ERROR says how many, and the job fails.
    expect(said).toMatch(/1 object\(s\) could not be restored \(the first: [^)]*m-big\.bin\)/);
    expect(r.code, said).toBe(1);
    expect(said).toContain('"ok":false');
    expect(readFileSync(join(out, "a-first.txt"), "utf8")).toBe("first\n");
    for (let i = 0; i < 5; i++) expect(readFileSync(join(out, `z-small-${i}.txt`), "utf8"), `z-small-${i}`).toBe(`small ${i}\n`);
    expect(readdirSync(tiny)).toEqual(["out"]); // nothing beside the destination
    // The failed file left nothing behind, so the small files after it fitted.
    expect(existsSync(join(out, "m-big.bin"))).toBe(false);
  });

  it("ENOSPC among many small files (made on the creator threads): each one lost is reported once, the count is honest, no file is left short", async () => {
    const many = join(W, "many-small");
    mkdirSync(many);
    for (let i = 0; i < 400; i++) writeFileSync(join(many, `s${String(i).padStart(3, "0")}.bin`), seededBytes(4096, 100 + i));
    const cfg = config(join(W, "many.tape"));
    const b = await run(BINARY, ["backup", many, "--tape", "vt0", "--config", cfg], { timeoutMs: 120_000 });
    expect(b.code, b.stderr + b.stdout).toBe(0);
    const tiny = join(W, "tiny-many");
    tmpfs(tiny, "1m"); // 400 x 4 KiB do not fit
    const out = join(tiny, "out");
    const r = await run(BINARY, ["recover", "--tape", "vt0", "--to", out, "--json", "--config", cfg], { timeoutMs: 120_000 });
    const said = r.stdout + r.stderr;
    expect(r.code, said).toBe(1);
    const present = readdirSync(out);
    const lost = 400 - present.length;
    expect(lost).toBeGreaterThan(100);
    expect(present.length).toBeGreaterThan(10);
    for (const name of present) {
      const i = Number(name.slice(1, 4));
      expect(readFileSync(join(out, name)).equals(seededBytes(4096, 100 + i)), name).toBe(true);
    }
    // One warning per lost file, naming it and the errno; the summary counts them; so does "restored".
    const warned = new Set([...said.matchAll(/(s\d{3}\.bin)[^\n]*ENOSPC/g)].map((m) => m[1]));
    expect(warned.size).toBe(lost);
    for (const name of present) expect(warned.has(name), name).toBe(false);
    expect(said).toMatch(new RegExp(`${lost} object\\(s\\) could not be restored`));
    const end = JSON.parse(said.split("\n").find((l) => l.includes('"event":"end"'))!);
    expect(end.restored).toBe(present.length + 1); // the files left, and the directory
  });

  it.runIf((process.getuid?.() === 0 && existsSync("/dev/fuse")) || IN_CI)("EIO on the recovery destination (a disk whose writes fail): every file is reported with EIO, the job ends, nothing else is damaged", async () => {
    // No device-mapper in this kernel, and a loop device passes a full backing disk's ENOSPC
    // through as ENOSPC. So the dying disk is ext2 on a loop device over a FUSE file of our own
    // (test/helpers/fuse-hold.ts) whose writes fail with EIO once it is told.
    const cfg = config(join(W, "eio-src.tape"));
    const b = await run(BINARY, ["backup", SRC, "--tape", "vt0", "--config", cfg], { timeoutMs: 120_000 });
    expect(b.code, b.stderr + b.stdout).toBe(0);
    const img = join(W, "eio.img");
    spawnSync("truncate", ["-s", "32M", img]);
    expect(spawnSync("mkfs.ext2", ["-q", "-F", img]).status).toBe(0);
    const fuseDir = join(W, "eio-fuse");
    const mnt = join(W, "eio-mnt");
    mkdirSync(fuseDir);
    mkdirSync(mnt);
    const dev = openSync("/dev/fuse", "r+");
    let said = "";
    const daemon = spawn(join(ROOT, "node_modules", ".bin", "bun"), [join(ROOT, "test", "helpers", "fuse-hold.ts"), img], { stdio: ["ignore", "pipe", "inherit", dev] });
    daemon.stdout!.on("data", (c: Buffer) => (said += c.toString()));
    let loop = "";
    try {
      const f = spawnSync("mount", ["-t", "fuse", "-o", "fd=3,rootmode=40000,user_id=0,group_id=0,allow_other", "ndmpd-test", fuseDir], { stdio: ["ignore", "pipe", "pipe", dev], encoding: "utf8" });
      closeSync(dev);
      expect(f.status, f.stderr).toBe(0);
      mounts.unshift(fuseDir);
      const lo = spawnSync("losetup", ["-f", "--show", join(fuseDir, "disk")], { encoding: "utf8" });
      expect(lo.status, lo.stderr).toBe(0);
      loop = lo.stdout.trim();
      const m = spawnSync("mount", ["-o", "sync,errors=continue", loop, mnt], { encoding: "utf8" });
      expect(m.status, m.stderr).toBe(0);
      mounts.unshift(mnt);
      const out = join(mnt, "out");
      mkdirSync(out);
      writeFileSync(join(mnt, "beside.txt"), "untouched\n");
      statSync(join(fuseDir, "fail"), { throwIfNoEntry: false }); // from now on every write fails
      await until(() => said.includes("failing"), 10_000, "the disk to start failing");
      const r = await run(BINARY, ["recover", "--tape", "vt0", "--to", out, "--json", "--config", cfg], { timeoutMs: 120_000 });
      const text = r.stdout + r.stderr;
      // Each file is reported by name with the disk's EIO, and the job goes on to the end of the
      // archive (it continues past a file it cannot write, as with ENOSPC).
      for (const f of ["a-first.txt", "m-big.bin", ...Array.from({ length: 5 }, (_, i) => `z-small-${i}.txt`)]) {
        expect(text, f).toMatch(new RegExp(`/${f.replace(".", "\\.")}: EIO`));
      }
      expect(text).toContain('"event":"end"');
      expect(text).toMatch(/7 object\(s\) could not be restored/);
      expect(r.code, text).toBe(1);
      expect(readFileSync(join(mnt, "beside.txt"), "utf8")).toBe("untouched\n");
      expect(readdirSync(mnt).sort()).toEqual(["beside.txt", "lost+found", "out"]);
    } finally {
      if (mounts[0] === mnt) spawnSync("umount", [mounts.shift()!]);
      if (loop) spawnSync("losetup", ["-d", loop]);
      if (mounts[0] === fuseDir) spawnSync("umount", [mounts.shift()!]);
      daemon.kill();
    }
  });

  it("ENOSPC under a virtual tape: the mover halts MEDIA_ERROR with the reason logged; the cartridge reads back every complete record", async () => {
    const small = join(W, "small-disk");
    tmpfs(small, "2m");
    const srv = await startServer({ config: `[server]\nlisten = "127.0.0.1:0"\nstate_dir = "${W}/state2"\nauth_failure_delay_ms = 0\n\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n\n[[tape]]\nname = "vt0"\npath = "${small}/vt0.tape"\ncapacity = "1GiB"\n` });
    const RS = 64 * 1024;
    const stream = seededBytes(4 * MiB, 7); // twice what the disk holds
    try {
      const c = await dma(srv.port);
      await c.request(Message.TAPE_OPEN, { device: "vt0", mode: TapeOpenMode.RDWR });
      await c.request(Message.MOVER_SET_RECORD_SIZE, { len: RS });
      await c.request(Message.MOVER_SET_WINDOW, { offset: 0n, length: ALL1 });
      const since = c.posts.length;
      const l = await c.request(Message.MOVER_LISTEN, { mode: MoverMode.READ, addr_type: AddrType.TCP });
      const sock = await connectTo(l.body.connect_addr);
      sock.on("error", () => {});
      await sendAll(sock, stream).catch(() => {}); // the mover stops reading when it halts
      const h = await c.waitForPost(Message.NOTIFY_MOVER_HALTED, 30_000, since);
      expect(h.body.reason).toBe(MoverHaltReason.MEDIA_ERROR);
      expect(srv.logs.some((x) => x.msg === "tape write failed" && /writing the cartridge failed.*ENOSPC/.test(String(x.err)))).toBe(true);
      await c.request(Message.MOVER_STOP);
      await c.request(Message.TAPE_CLOSE);
      // Read it back: every record there is complete and is the stream at its place.
      await c.request(Message.TAPE_OPEN, { device: "vt0", mode: TapeOpenMode.READ });
      const records: Buffer[] = [];
      let end: number | undefined;
      while (end === undefined) {
        try {
          records.push(Buffer.from((await c.request(Message.TAPE_READ, { count: RS })).body.data_in));
        } catch (e) {
          end = (e as NdmpClientError).error;
        }
      }
      expect([ErrorCode.EOF_ERR, ErrorCode.EOM_ERR]).toContain(end);
      expect(records.length).toBeGreaterThan(8); // most of the 2 MiB held records
      expect(records.length * RS).toBeLessThan(2 * MiB);
      records.forEach((r, i) => expect(r.equals(stream.subarray(i * RS, (i + 1) * RS)), `record ${i}`).toBe(true));
      await c.request(Message.TAPE_CLOSE);
      await c.close();
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  });

  describe("the DMA drops its control connection at every step of a backup or a recovery", () => {
    let srv: RunningServer;
    beforeAll(async () => {
      srv = await startServer();
    });
    afterAll(async () => {
      expect(await srv.stop()).toBe(0);
    });

    /** Runs a backup of SRC up to `step`, then drops the control connection. */
    async function dropAt(step: "authenticated" | "listening" | "connected" | "started" | "streaming" | "halted"): Promise<void> {
      const c = await dma(srv.port);
      const control = (c as unknown as { socket: Socket }).socket;
      let data: Receiver | undefined;
      try {
        if (step === "authenticated") return;
        if (step === "listening") {
          await c.request(Message.DATA_LISTEN, { addr_type: AddrType.TCP });
          return;
        }
        const l = await listenOnce();
        await c.request(Message.DATA_CONNECT, { addr: { addr_type: AddrType.TCP, tcp_addr: [tcpAddr("127.0.0.1", l.port)] } });
        data = new Receiver(await l.accepted);
        if (step === "connected") return;
        const since = c.posts.length;
        if (step === "streaming") data.sock.pause(); // the backup blocks mid-stream
        await c.request(Message.DATA_START_BACKUP, { butype_name: "tar", env: [{ name: "FILESYSTEM", value: SRC }] });
        if (step === "started") return;
        if (step === "streaming") {
          await until(() => srv.logs.some((l) => l.msg === "request" && l.message === "DATA_START_BACKUP"), 10_000, "the backup to start");
          await new Promise((r) => setTimeout(r, 300));
          return;
        }
        expect((await c.waitForPost(Message.NOTIFY_DATA_HALTED, 60_000, since)).body.reason).toBe(Halt.SUCCESSFUL);
      } finally {
        control.destroy();
        data?.sock.resume(); // a paused socket would not see the server close it
        if (data) await until(() => data!.closed, 15_000, `the data connection to close after a drop at ${step}`);
      }
    }

    /** A recovery of `stream` into a fresh directory up to `step`, then the control connection drops. */
    async function dropRecoveryAt(stream: Buffer, dest: string, step: "connected" | "started" | "streaming" | "halted"): Promise<void> {
      const c = await dma(srv.port);
      const control = (c as unknown as { socket: Socket }).socket;
      const l = await listenOnce();
      await c.request(Message.DATA_CONNECT, { addr: { addr_type: AddrType.TCP, tcp_addr: [tcpAddr("127.0.0.1", l.port)] } });
      const sender = await l.accepted;
      sender.on("error", () => {});
      const gone = new Promise<void>((r) => sender.once("close", () => r()));
      try {
        if (step === "connected") return;
        const since = c.posts.length;
        await c.request(Message.DATA_START_RECOVER, { butype_name: "tar", env: [{ name: "FILESYSTEM", value: dest }, { name: "PREFIX", value: dest }], nlist: [] });
        if (step === "started") return;
        if (step === "streaming") {
          sender.write(stream.subarray(0, Math.floor(stream.length / 2))); // half, then nothing
          await new Promise((r) => setTimeout(r, 300));
          return;
        }
        await sendAll(sender, stream);
        expect((await c.waitForPost(Message.NOTIFY_DATA_HALTED, 60_000, since)).body.reason).toBe(Halt.SUCCESSFUL);
      } finally {
        control.destroy();
        sender.resume();
        await Promise.race([gone, new Promise((_, rej) => setTimeout(() => rej(new Error(`the data connection stayed open after a drop at ${step}`)), 15_000))]);
      }
    }

    it("recovery, each step: the job ends, the data connection closes, a full recovery follows, descriptors return", async () => {
      // The stream to recover: a backup of SRC taken here.
      const c = await dma(srv.port);
      const l = await listenOnce();
      await c.request(Message.DATA_CONNECT, { addr: { addr_type: AddrType.TCP, tcp_addr: [tcpAddr("127.0.0.1", l.port)] } });
      const recv = new Receiver(await l.accepted);
      const since = c.posts.length;
      await c.request(Message.DATA_START_BACKUP, { butype_name: "tar", env: [{ name: "FILESYSTEM", value: SRC }] });
      expect((await c.waitForPost(Message.NOTIFY_DATA_HALTED, 60_000, since)).body.reason).toBe(Halt.SUCCESSFUL);
      await until(() => recv.closed, 10_000, "the backup stream to end");
      const stream = Buffer.from(recv.bytes());
      await c.request(Message.DATA_STOP);
      await c.close();
      await dropRecoveryAt(stream, join(W, "r-warm"), "halted");
      await new Promise((r) => setTimeout(r, 500));
      const fds = srv.fdCount();
      for (const step of ["connected", "started", "streaming", "halted"] as const) {
        const closed = srv.logs.filter((x) => x.msg === "session closed").length;
        await dropRecoveryAt(stream, join(W, `r-${step}`), step);
        await until(() => srv.logs.filter((x) => x.msg === "session closed").length > closed, 15_000, `the session to end after a drop at ${step}`);
      }
      const full = join(W, "r-full");
      await dropRecoveryAt(stream, full, "halted");
      expect(readFileSync(join(full, "a-first.txt"), "utf8")).toBe("first\n");
      expect(readFileSync(join(full, "m-big.bin")).equals(seededBytes(3 * MiB, 1))).toBe(true);
      await until(() => srv.fdCount() <= fds + 1, 10_000, `descriptors back to ${fds} (now ${srv.fdCount()})`);
    });

    it("each step: the job ends, the data connection closes, the next session backs up, descriptors return", async () => {
      // A first whole backup warms the pool of scan workers that later backups reuse (their
      // descriptors stay): the baseline is taken after it.
      await dropAt("halted");
      await until(() => srv.logs.filter((l) => l.msg === "session closed").length > 0, 15_000, "the warm-up session to end");
      await new Promise((r) => setTimeout(r, 500));
      const fds = srv.fdCount();
      for (const step of ["authenticated", "listening", "connected", "started", "streaming", "halted"] as const) {
        const closed = srv.logs.filter((l) => l.msg === "session closed").length;
        await dropAt(step);
        await until(() => srv.logs.filter((l) => l.msg === "session closed").length > closed, 15_000, `the session to end after a drop at ${step}`);
      }
      // A full backup in a fresh session still works.
      const c = await dma(srv.port);
      const l = await listenOnce();
      await c.request(Message.DATA_CONNECT, { addr: { addr_type: AddrType.TCP, tcp_addr: [tcpAddr("127.0.0.1", l.port)] } });
      const data = new Receiver(await l.accepted);
      const since = c.posts.length;
      await c.request(Message.DATA_START_BACKUP, { butype_name: "tar", env: [{ name: "FILESYSTEM", value: SRC }] });
      expect((await c.waitForPost(Message.NOTIFY_DATA_HALTED, 60_000, since)).body.reason).toBe(Halt.SUCCESSFUL);
      await until(() => data.closed, 10_000, "the data connection to close");
      expect(data.length).toBeGreaterThan(3 * MiB);
      await c.request(Message.DATA_STOP);
      await c.close();
      await until(() => srv.fdCount() <= fds + 1, 10_000, `descriptors back to ${fds} (now ${srv.fdCount()})`);
      expect(existsSync(SRC)).toBe(true);
    });
  });
  describe("the DMA drops its control connection at every step with a tape: local and three-way", () => {
    let srv: RunningServer;
    const RS = 64 * 1024;
    beforeAll(async () => {
      srv = await startServer({
        config: `[server]\nlisten = "127.0.0.1:0"\nstate_dir = "$DIR/state"\nauth_failure_delay_ms = 0\n\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n\n[[tape]]\nname = "vt0"\npath = "$DIR/vt0.tape"\ncapacity = "1GiB"\n`,
      });
    });
    afterAll(async () => {
      expect(await srv.stop()).toBe(0);
    });
    const closedSessions = () => srv.logs.filter((x) => x.msg === "session closed").length;
    const controlOf = (c: unknown) => (c as { socket: Socket }).socket;

    /**
     * The drive is free again: a fresh session opens it (and closes it). The release may follow
     * the "session closed" line by a moment (the clean-up stops the job first), so a busy drive
     * is retried, up to a liveness limit; a drive that stays held fails.
     */
    async function driveReleased(after: string): Promise<void> {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const c = await dma(srv.port);
        try {
          await c.request(Message.TAPE_OPEN, { device: "vt0", mode: TapeOpenMode.RDWR });
          await c.request(Message.TAPE_CLOSE);
          return;
        } catch (e) {
          if ((e as NdmpClientError).error !== ErrorCode.DEVICE_BUSY_ERR || Date.now() > deadline) {
            throw new Error(`vt0 still held after a drop ${after}: ${(e as Error).message}`);
          }
        } finally {
          await c.close();
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }

    /** The tape agent's session: the drive open, the mover set up (a 1 MiB window: it pauses there). */
    async function tapeSession(mode: number) {
      const t = await dma(srv.port);
      await t.request(Message.TAPE_OPEN, { device: "vt0", mode: TapeOpenMode.RDWR });
      await t.request(Message.MOVER_SET_RECORD_SIZE, { len: RS });
      await t.request(Message.MOVER_SET_WINDOW, { offset: 0n, length: BigInt(MiB) });
      const l = await t.request(Message.MOVER_LISTEN, { mode, addr_type: mode === MoverMode.READ && local ? AddrType.LOCAL : AddrType.TCP });
      return { t, addr: l.body.connect_addr };
    }
    let local = true;

    type Step = "tape-open" | "mover-listening" | "connected" | "started" | "paused" | "halted";
    /**
     * A backup of SRC to vt0 up to `step`, then `who` drops its control connection: LOCAL (one
     * session is both agents), or three-way (the tape session and a data session apart; `who`
     * says which one vanishes). The other session, if any, then goes away cleanly.
     */
    async function dropAt(step: Step, who: "local" | "tape" | "data"): Promise<void> {
      local = who === "local";
      const closed = closedSessions();
      const sessions: Array<{ close(): Promise<void> }> = [];
      let dropped: Socket | undefined;
      try {
        if (step === "tape-open") {
          const t = await dma(srv.port);
          sessions.push(t);
          await t.request(Message.TAPE_OPEN, { device: "vt0", mode: TapeOpenMode.RDWR });
          dropped = controlOf(t);
          return;
        }
        const { t, addr } = await tapeSession(MoverMode.READ);
        sessions.push(t);
        const d = local ? t : await dma(srv.port);
        if (!local) sessions.push(d);
        dropped = controlOf(who === "data" ? d : t);
        if (step === "mover-listening") return;
        await d.request(Message.DATA_CONNECT, { addr });
        if (step === "connected") return;
        const since = t.posts.length;
        const dSince = d.posts.length;
        await d.request(Message.DATA_START_BACKUP, { butype_name: "tar", env: [{ name: "FILESYSTEM", value: SRC }] });
        if (step === "started") return;
        // The 3 MiB file overflows the 1 MiB window: the mover pauses (EOW) mid-stream.
        await t.waitForPost(Message.NOTIFY_MOVER_PAUSED, 30_000, since);
        if (step === "paused") return;
        await t.request(Message.MOVER_SET_WINDOW, { offset: BigInt(MiB), length: ALL1 });
        await t.request(Message.MOVER_CONTINUE);
        expect((await d.waitForPost(Message.NOTIFY_DATA_HALTED, 60_000, dSince)).body.reason).toBe(Halt.SUCCESSFUL);
      } finally {
        dropped?.destroy();
        // The other session (three-way) leaves properly, as a DMA that saw its peer vanish would.
        for (const s of sessions) if (controlOf(s) !== dropped) await s.close().catch(() => {});
        await until(() => closedSessions() >= closed + sessions.length, 15_000, `the sessions to end after a drop (${who}) at ${step}`);
      }
    }

    it("LOCAL (one session is data and tape agent), each step: the drive is released, the next session opens it, descriptors return", async () => {
      await dropAt("halted", "local"); // warm-up: the scan worker pool keeps its descriptors
      await driveReleased("warm-up");
      await new Promise((r) => setTimeout(r, 500));
      const fds = srv.fdCount();
      for (const step of ["tape-open", "mover-listening", "connected", "started", "paused", "halted"] as const) {
        await dropAt(step, "local");
        await driveReleased(`at ${step}`);
      }
      await until(() => srv.fdCount() <= fds + 1, 10_000, `descriptors back to ${fds} (now ${srv.fdCount()})`);
    });

    it("three-way (a tape session and a data session), either one dropping at each step: the drive is released, descriptors return", async () => {
      await dropAt("halted", "data");
      await driveReleased("warm-up");
      await new Promise((r) => setTimeout(r, 500));
      const fds = srv.fdCount();
      for (const who of ["tape", "data"] as const) {
        for (const step of ["mover-listening", "connected", "started", "paused", "halted"] as const) {
          await dropAt(step, who);
          await driveReleased(`(${who}) at ${step}`);
        }
      }
      await until(() => srv.fdCount() <= fds + 1, 10_000, `descriptors back to ${fds} (now ${srv.fdCount()})`);
    });
  });
});
