/**
 * The recovery environment against the compiled binary (issue 14): OVERWRITE (and FluidFS's
 * RESTORE_OVERWRITE) y | n | newer, RECOVER_FULL_PATHS, a LOG_FILE per nlist entry with the
 * status of what happened to it, unknown variables said once, DATA_GET_ENV after a recovery,
 * and an incremental's deletions applied under OVERWRITE=n. Our client is the DMA, in the local
 * configuration (LOCAL data connection) on a virtual drive.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NdmpClientError, type NdmpClient } from "../../src/client/client.ts";
import { AddrType, ALL1, DataHaltReason, ErrorCode, LogType, Message, MoverMode, RecoveryStatus, TapeMtioOp, TapeOpenMode } from "../../src/protocol/codes.ts";
import { dma, tapeServerConfig } from "../helpers/dma.ts";
import { havePeers } from "../helpers/peers.ts";
import { startServer, type RunningServer } from "../helpers/server.ts";

type Pairs = Record<string, string>;
const pv = (env: Pairs) => Object.entries(env).map(([name, value]) => ({ name, value }));
const text = (p: { body: { entry: unknown } }) => Buffer.from(p.body.entry as Uint8Array).toString();

describe.runIf(havePeers("binary"))("the recovery environment", () => {
  let srv: RunningServer;
  let c: NdmpClient;
  const W = mkdtempSync(join(tmpdir(), "ndmpd-recenv-"));
  const SRC = join(W, "src");
  /** Tape files holding the backups: level 0, then level 1. */
  let images = 0;

  /** One LOCAL transfer on vt0: the mover in `mode`, then `start`; resolves at the data halt. */
  async function transfer(mode: number, start: () => Promise<unknown>) {
    await c.request(Message.MOVER_SET_RECORD_SIZE, { len: 10240 });
    await c.request(Message.MOVER_SET_WINDOW, { offset: 0n, length: ALL1 });
    await c.request(Message.MOVER_LISTEN, { mode, addr_type: AddrType.LOCAL });
    await c.request(Message.DATA_CONNECT, { addr: { addr_type: AddrType.LOCAL } });
    const since = c.posts.length;
    try {
      await start();
    } catch (e) {
      await c.request(Message.DATA_ABORT, {}, { allowBodyError: true });
      await c.request(Message.DATA_STOP, {}, { allowBodyError: true });
      await c.request(Message.MOVER_ABORT, {}, { allowBodyError: true });
      await c.request(Message.MOVER_STOP, {}, { allowBodyError: true });
      return { error: (e as NdmpClientError).error, posts: c.posts.slice(since) };
    }
    const halt = await c.waitForPost(Message.NOTIFY_DATA_HALTED, 60_000, since);
    // The mover halts once the data service closed the connection (or pauses at the filemark).
    for (let i = 0; i < 500; i++) {
      const ms = (await c.request(Message.MOVER_GET_STATE)).body.state;
      if (ms === 4) break;
      if (ms === 3) await c.request(Message.MOVER_CLOSE, {}, { allowBodyError: true });
      await new Promise((r) => setTimeout(r, 10));
    }
    const env = ((await c.request(Message.DATA_GET_ENV)).body.env as Array<{ name: Uint8Array; value: Uint8Array }>).map(
      (p) => [Buffer.from(p.name).toString(), Buffer.from(p.value).toString()] as [string, string],
    );
    await c.request(Message.DATA_STOP);
    await c.request(Message.MOVER_STOP);
    return { error: ErrorCode.NO_ERR, halt: halt.body.reason as number, env: new Map(env), posts: c.posts.slice(since) };
  }

  async function backup(env: Pairs): Promise<void> {
    await c.request(Message.TAPE_MTIO, { tape_op: TapeMtioOp.REW, count: 1 });
    if (images > 0) await c.request(Message.TAPE_MTIO, { tape_op: TapeMtioOp.FSF, count: images });
    const r = await transfer(MoverMode.READ, () => c.request(Message.DATA_START_BACKUP, { butype_name: "tar", env: pv({ FILESYSTEM: SRC, ...env }) }));
    expect(r.halt).toBe(DataHaltReason.SUCCESSFUL);
    await c.request(Message.TAPE_MTIO, { tape_op: TapeMtioOp.EOF, count: 1 });
    images++;
  }

  /** Recovers tape file `image` with `env` and nlist entries [original, destination]. */
  async function recover(image: number, env: Pairs, nlist: Array<[string, string]> = []) {
    await c.request(Message.TAPE_MTIO, { tape_op: TapeMtioOp.REW, count: 1 });
    if (image > 0) await c.request(Message.TAPE_MTIO, { tape_op: TapeMtioOp.FSF, count: image });
    const list = nlist.map(([o, d]) => ({ original_path: o, destination_path: d, name: "", other_name: "", node: ALL1, fh_info: ALL1 }));
    const r = await transfer(MoverMode.WRITE, () => c.request(Message.DATA_START_RECOVER, { env: pv(env), nlist: list, butype_name: "tar" }));
    const logs = r.posts.filter((p) => p.code === Message.LOG_MESSAGE).map((p) => ({ type: p.body.log_type as number, text: text(p) }));
    const files = new Map(r.posts.filter((p) => p.code === Message.LOG_FILE).map((p) => [Buffer.from(p.body.name).toString(), p.body.recovery_status as number]));
    return { ...r, logs, files };
  }

  beforeAll(async () => {
    mkdirSync(join(SRC, "sub", "deeper"), { recursive: true });
    writeFileSync(join(SRC, "a.txt"), "archived a\n");
    writeFileSync(join(SRC, "b.txt"), "archived b\n");
    writeFileSync(join(SRC, "gone.txt"), "deleted before level 1\n");
    writeFileSync(join(SRC, "sub", "deeper", "c.txt"), "archived c\n");
    for (const f of ["a.txt", "b.txt", "gone.txt", "sub/deeper/c.txt"]) utimesSync(join(SRC, f), 2_000_000_000, 2_000_000_000);
    srv = await startServer({ config: tapeServerConfig([{ name: "vt0" }]) });
    c = await dma(srv.port);
    await c.request(Message.TAPE_OPEN, { device: "vt0", mode: TapeOpenMode.RDWR });
    await backup({ LEVEL: "0" });
    // Level 1: gone.txt deleted, new.txt added.
    unlinkSync(join(SRC, "gone.txt"));
    writeFileSync(join(SRC, "new.txt"), "added at level 1\n");
    await backup({ LEVEL: "1" });
  }, 60_000);

  afterAll(async () => {
    await c?.request(Message.TAPE_CLOSE, {}, { allowBodyError: true }).catch(() => {});
    await c?.close();
    await srv?.stop();
    rmSync(W, { recursive: true, force: true });
  });

  /** A destination with a.txt and b.txt already there, local edits, with mtimes around the archive's. */
  function prepared(name: string): string {
    const out = join(W, name);
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, "a.txt"), "local a\n");
    utimesSync(join(out, "a.txt"), 1_000_000_000, 1_000_000_000); // older than the archive's copy
    writeFileSync(join(out, "b.txt"), "local b\n");
    utimesSync(join(out, "b.txt"), 2_100_000_000, 2_100_000_000); // newer
    return out;
  }
  const read = (out: string, f: string) => readFileSync(join(out, f), "utf8");

  it("OVERWRITE=y (the default) replaces; n and RESTORE_OVERWRITE=n keep what is there and say so once; newer keeps only the newer", async () => {
    const dflt = prepared("dflt");
    expect((await recover(0, { PREFIX: dflt })).halt).toBe(DataHaltReason.SUCCESSFUL);
    expect([read(dflt, "a.txt"), read(dflt, "b.txt")]).toEqual(["archived a\n", "archived b\n"]);

    for (const env of [{ OVERWRITE: "n" }, { RESTORE_OVERWRITE: "N" }] as Pairs[]) {
      const out = prepared(`keep-${Object.keys(env)[0]}`);
      const r = await recover(0, { PREFIX: out, ...env });
      expect(r.halt).toBe(DataHaltReason.SUCCESSFUL);
      expect([read(out, "a.txt"), read(out, "b.txt"), read(out, "sub/deeper/c.txt")]).toEqual(["local a\n", "local b\n", "archived c\n"]);
      const kept = r.logs.filter((l) => /kept, not overwritten/.test(l.text));
      expect(kept.map((l) => l.text)).toEqual([`2 existing object(s) kept, not overwritten (OVERWRITE=n): ${out}/a.txt, ${out}/b.txt`]);
    }

    const newer = prepared("newer");
    const r = await recover(0, { PREFIX: newer, OVERWRITE: "newer" });
    expect([read(newer, "a.txt"), read(newer, "b.txt")]).toEqual(["archived a\n", "local b\n"]);
    expect(r.logs.some((l) => l.text === `1 existing object(s) kept, not overwritten (OVERWRITE=newer): ${newer}/b.txt`)).toBe(true);

    const bad = await recover(0, { PREFIX: join(W, "bad"), OVERWRITE: "sometimes" });
    expect(bad.error).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
    expect(bad.posts.some((p) => p.code === Message.LOG_MESSAGE && p.body.log_type === LogType.ERROR && /OVERWRITE=sometimes: must be y, n or newer/.test(text(p)))).toBe(true);
    expect(existsSync(join(W, "bad"))).toBe(false);
  });

  it("OVERWRITE=n: an incremental's deletions still apply (what the level 1 no longer lists is removed)", async () => {
    const out = join(W, "chain");
    expect((await recover(0, { PREFIX: out })).halt).toBe(DataHaltReason.SUCCESSFUL);
    expect(existsSync(join(out, "gone.txt"))).toBe(true);
    writeFileSync(join(out, "a.txt"), "edited after the level 0 restore\n");
    const r = await recover(1, { PREFIX: out, OVERWRITE: "n" });
    expect(r.halt).toBe(DataHaltReason.SUCCESSFUL);
    expect(existsSync(join(out, "gone.txt"))).toBe(false);
    expect(read(out, "new.txt")).toBe("added at level 1\n");
    expect(read(out, "a.txt")).toBe("edited after the level 0 restore\n");
  });

  it("RECOVER_FULL_PATHS=y puts each entry at its full original path under destination_path; n at destination_path", async () => {
    const full = join(W, "full");
    const r = await recover(0, { PREFIX: SRC, RECOVER_FULL_PATHS: "y" }, [["sub/deeper/c.txt", full], ["a.txt", full]]);
    expect(r.halt).toBe(DataHaltReason.SUCCESSFUL);
    expect(read(full, "sub/deeper/c.txt")).toBe("archived c\n");
    expect(read(full, "a.txt")).toBe("archived a\n");
    expect([...r.files.values()]).toEqual([RecoveryStatus.SUCCESSFUL, RecoveryStatus.SUCCESSFUL]);
    const named = join(W, "named-c.txt");
    await recover(0, { PREFIX: SRC }, [["sub/deeper/c.txt", named]]);
    expect(readFileSync(named, "utf8")).toBe("archived c\n");
  });

  it("LOG_FILE per nlist entry: SUCCESSFUL, FAILED_NOT_FOUND, FAILED_PERMISSION (a symlink on the way); DATA_GET_ENV after the recovery", async () => {
    const out = join(W, "report");
    mkdirSync(out);
    symlinkSync("/tmp", join(out, "sub")); // restoring sub/... here would write through it
    const r = await recover(0, { PREFIX: SRC, RECOVER_FULL_PATHS: "y", VENDOR_SWITCH: "1" }, [
      ["a.txt", out],
      ["no/such/file", out],
      ["sub/deeper/c.txt", out],
    ]);
    expect(r.halt).toBe(DataHaltReason.SUCCESSFUL);
    expect(Object.fromEntries(r.files)).toEqual({
      "a.txt": RecoveryStatus.SUCCESSFUL,
      "no/such/file": RecoveryStatus.FAILED_NOT_FOUND,
      "sub/deeper/c.txt": RecoveryStatus.FAILED_PERMISSION,
    });
    expect(existsSync("/tmp/deeper/c.txt")).toBe(false);
    // Unknown variables: one message; DATA_GET_ENV answers with the recovery's environment.
    expect(r.logs.filter((l) => l.text.startsWith("environment not used")).map((l) => l.text)).toEqual(["environment not used by this server, ignored: VENDOR_SWITCH"]);
    expect(r.env!.get("RECOVER_FULL_PATHS")).toBe("y");
    expect(r.env!.get("PREFIX")).toBe(SRC);
  });
});
