/**
 * tar incrementals as a chain, against the compiled binary and real peers: a tree with every
 * change kind (test/helpers/chain.ts) backed up at levels 0, 1 and 2
 *   - three-way by ndmjob (-E LEVEL=N; our server the data agent, ndmjob's daemon the tape),
 *   - the same three-way in token mode (BASE_DATE = the previous DUMP_DATE),
 *   - locally by ndmjob (our server data and tape agent, drive vt0), each level restored at once,
 *   - locally by `ndmpd backup --level N` (its own virtual drive and state directory);
 * and restored level by level into one destination by `ndmjob -x` through our server, by GNU
 * tar --listed-incremental=/dev/null, and by `ndmpd recover` of the chain: each equal to the
 * tree as it was at that level. Level 2 is a small part of level 0 and its file history lists
 * only what it holds (and the directories). Refusals: missing lower level, bad LEVEL, bad token.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TarReader } from "../../formats/tar/reader.ts";
import { parseDumpdir } from "../../formats/tar/dumpdir.ts";
import { applyChainStep, compareTrees, makeChainTree, nameKey, snapshotTree, type ChainSpec, type ChainStep } from "../helpers/chain.ts";
import { D, startLab, stopLab, T, type Lab } from "../helpers/lab.ts";
import { jobSucceeded, ndmjob, parseIndex, simtapeFile } from "../helpers/ndmjob.ts";
import { BINARY, havePeers } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";
import { startServer, type RunningServer } from "../helpers/server.ts";
import { dma, Receiver } from "../helpers/dma.ts";
import { NdmpClient, NdmpClientError } from "../../src/client/client.ts";
import { AddrType, DataHaltReason as Halt, ErrorCode, LogType, Message } from "../../src/protocol/codes.ts";
import { tcpAddr } from "../../src/transport/tcp.ts";
import { createServer, type Socket } from "node:net";

const ready = havePeers("binary", "ndmjob", "tar", "unshare");
const LEVELS = [0, 1, 2] as const;
const XATTR_DIR = "xattr-dir";

interface Image {
  stream: Buffer;
  index: ReturnType<typeof parseIndex>;
  idxPath: string;
  ms: number;
  stdout: string;
}

describe.runIf(ready)("tar incremental chains", () => {
  const W = mkdtempSync(join(tmpdir(), "ndmpd-tar-incr-"));
  const SRC = join(W, "src");
  const CFG = join(W, "cli.toml");
  let lab: Lab;
  let spec: ChainSpec;
  const steps: ChainStep[] = [];
  /** The tree as it was at each level. */
  const at = (level: number) => join(W, `at${level}`);
  const levelImages: Image[] = [];
  const tokenImages: Image[] = [];
  const cliMs: number[] = [];
  /** The local configuration (our server is data and tape agent, drive vt0): each level restored right after its backup. */
  const localDiffs: string[][] = [];
  const localLevels: string[] = [];
  const cliBytes: number[] = [];
  const cli = (...args: string[]) => run(BINARY, [...args, "--config", CFG], { timeoutMs: 120_000 });

  async function threeWay(name: string, env: string[]): Promise<Image> {
    const tape = join(W, `${name}.simtape`);
    writeFileSync(tape, "");
    const idxPath = join(W, `${name}.idx`);
    const t0 = Date.now();
    const r = await ndmjob(lab.ns, ["-c", "-v", "-D", D, "-T", T, "-f", tape, "-B", "tar", ...env.flatMap((e) => ["-E", e]), "-C", SRC, "-I", idxPath]);
    const ms = Date.now() - t0;
    expect(jobSucceeded(r.stdout), r.stdout).toBe(true);
    return { stream: simtapeFile(readFileSync(tape), 0), index: parseIndex(readFileSync(idxPath, "latin1")), idxPath, ms, stdout: r.stdout };
  }

  beforeAll(async () => {
    spec = await makeChainTree(SRC);
    lab = await startLab({ capacity: "8GiB" });
    writeFileSync(CFG, `[server]\nstate_dir = "${W}/cli-state"\n\n[[tape]]\nname = "vtc"\npath = "${W}/vtc.tape"\ncapacity = "4GiB"\n`);
    chmodSync(CFG, 0o600);
    // One more change kind: an xattr added to a directory at level 1 and removed at level 2.
    mkdirSync(join(SRC, XATTR_DIR));
    writeFileSync(join(SRC, XATTR_DIR, "f"), "in a directory whose xattr comes and goes\n");
    for (const level of LEVELS) {
      if (level > 0) steps.push(applyChainStep(spec, level as 1 | 2));
      if (spec.has.xattrs && level === 1) await run("setfattr", ["-n", "user.dir", "-v", "level1", join(SRC, XATTR_DIR)]);
      if (spec.has.xattrs && level === 2) await run("setfattr", ["-x", "user.dir", join(SRC, XATTR_DIR)]);
      snapshotTree(SRC, at(level));
      levelImages.push(await threeWay(`level${level}`, [`LEVEL=${level}`]));
      const base = level === 0 ? "0" : tokenImages[level - 1]!.index.env.get("DUMP_DATE")!;
      // At level 2 the DMA also sends a LEVEL, which BASE_DATE overrides.
      tokenImages.push(await threeWay(`token${level}`, [`BASE_DATE=${base}`, ...(level === 2 ? ["LEVEL=7"] : [])]));
      // Local: ndmjob -c onto our own drive, then -x of that image into one destination (the next
      // backup overwrites the cartridge, so each level is restored before it).
      const lidx = join(W, `local${level}.idx`);
      const lb = await ndmjob(lab.ns, ["-c", "-v", "-D", D, "-f", "vt0", "-B", "tar", "-E", `LEVEL=${level}`, "-C", SRC, "-I", lidx]);
      expect(jobSucceeded(lb.stdout), lb.stdout).toBe(true);
      localLevels.push(parseIndex(readFileSync(lidx, "latin1")).env.get("LEVEL")!);
      const lx = await ndmjob(lab.ns, ["-x", "-v", "-D", D, "-f", "vt0", "-B", "tar", "-C", join(W, "x-local"), "-J", lidx]);
      expect(jobSucceeded(lx.stdout), lx.stdout).toBe(true);
      localDiffs.push(await compareTrees(at(level), join(W, "x-local")));
      const t0 = Date.now();
      const b = await cli("backup", SRC, "--tape", "vtc", "--level", String(level), "--label", `L${level}`, "--json");
      cliMs.push(Date.now() - t0);
      expect(b.code, b.stderr + b.stdout).toBe(0);
      cliBytes.push(JSON.parse(b.stdout.trim().split("\n").at(-1)!).bytes);
    }
  }, 600_000);

  afterAll(async () => {
    if (lab) await stopLab(lab);
    rmSync(W, { recursive: true, force: true });
  });

  const entriesOf = (stream: Buffer) => {
    const out = new Map<string, { type: string; dumpdir?: Buffer }>();
    for (const ev of new TarReader().feed(stream)) if (ev.kind === "entry") out.set(nameKey(ev.entry.path), { type: ev.entry.type, dumpdir: ev.entry.dumpdir });
    return out;
  };

  it("every backup returns DUMP_DATE (a token: level + 1 above, start seconds below) and LEVEL", () => {
    for (const imgs of [levelImages, tokenImages]) {
      imgs.forEach((img, level) => {
        expect(img.index.env.get("LEVEL")).toBe(String(level));
        const tok = BigInt(img.index.env.get("DUMP_DATE")!);
        expect(Number(tok >> 32n)).toBe(level + 1);
        expect(Math.abs(Number(tok & 0xffffffffn) - Date.now() / 1000)).toBeLessThan(3600);
      });
    }
  });

  it("level 1 and 2 hold exactly what changed or moved, plus every directory with its GNU.dumpdir; the FH lists the same", () => {
    for (const level of [1, 2]) {
      const step = steps[level - 1]!;
      const entries = entriesOf(levelImages[level]!.stream);
      const files = [...entries].filter(([, e]) => e.type !== "directory").map(([k]) => k).sort();
      expect(files).toEqual([...new Set(step.mustHold.map(nameKey))].sort());
      for (const [k, e] of entries) if (e.type === "directory") expect(e.dumpdir, k).toBeDefined();
      // FH: exactly the image's entries.
      const fh = [...levelImages[level]!.index.files.keys()].map((p) => (p === "/" ? "." : p.slice(1))).sort();
      expect(fh).toEqual([...entries.keys()].sort());
    }
    // The level 0 is plain: no listings.
    expect([...entriesOf(levelImages[0]!.stream).values()].some((e) => e.dumpdir)).toBe(false);
    const ratio = levelImages[2]!.stream.length / levelImages[0]!.stream.length;
    expect(ratio).toBeLessThan(0.1);
  });

  it("a directory's listing names everything in it: D for directories, Y for what the image holds, N for the rest", () => {
    const entries = entriesOf(levelImages[2]!.stream);
    const names = parseDumpdir(entries.get("keep")!.dumpdir!).names;
    expect(Object.fromEntries(names)).toEqual({ a: "N", b: "N", sub: "D", link2: "Y" });
    const root = parseDumpdir(entries.get(".")!.dumpdir!).names;
    expect(root.get("big")).toBe("D");
    expect(root.has("del")).toBe(true);
    expect(parseDumpdir(entries.get("del")!.dumpdir!).names.size).toBe(0);
  });

  it("token mode gives the same images as LEVEL mode; BASE_DATE wins over LEVEL, and the DMA is told", () => {
    expect(tokenImages[2]!.stdout).toMatch(/DLMn "BASE_DATE is set: it decides the level, LEVEL=7 is not used"/);
    expect(tokenImages[2]!.index.env.get("LEVEL")).toBe("2");
    for (const level of LEVELS) {
      const a = entriesOf(levelImages[level]!.stream);
      const b = entriesOf(tokenImages[level]!.stream);
      expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
      for (const [k, e] of a) if (e.dumpdir) expect(b.get(k)!.dumpdir!.equals(e.dumpdir), k).toBe(true);
    }
  });

  it("ndmjob -x level by level through our server (each image's index env, -J) reproduces the tree at each level", async () => {
    const dest = join(W, "x-ndmjob");
    for (const level of LEVELS) {
      const img = levelImages[level]!;
      const r = await ndmjob(lab.ns, ["-x", "-v", "-D", D, "-T", T, "-f", join(W, `level${level}.simtape`), "-B", "tar", "-C", dest, "-J", img.idxPath]);
      expect(jobSucceeded(r.stdout), r.stdout).toBe(true);
      expect(await compareTrees(at(level), dest), `after level ${level}`).toEqual([]);
    }
  });

  it("local configuration (ndmjob -c/-x on our own drive): each level restored onto the last gives the tree at that level", () => {
    expect(localLevels).toEqual(["0", "1", "2"]);
    expect(localDiffs).toEqual([[], [], []]);
  });

  it("GNU tar --listed-incremental=/dev/null extracts the chain level by level: equal at each level", async () => {
    const dest = join(W, "x-gnutar");
    mkdirSync(dest);
    for (const level of LEVELS) {
      const image = join(W, `level${level}.tar`);
      writeFileSync(image, levelImages[level]!.stream);
      const x = await run("tar", ["-x", "--listed-incremental=/dev/null", "-p", "--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner", "-f", image, "-C", dest]);
      const known = /implausibly old time stamp|is [\d.]+ s in the future|Ignoring unknown extended header keyword 'hdrcharset'/;
      expect(x.stderr.split("\n").filter((l) => l && !known.test(l)), `level ${level}`).toEqual([]);
      // GNU tar sets the xattrs an archive has and leaves others in place: a directory's xattr
      // removed since the base survives its extraction (our restores remove it; see above).
      const gnuKeeps = level === 2 ? (rel: Buffer) => rel.toString() === XATTR_DIR : undefined;
      expect(await compareTrees(at(level), dest, { ignore: gnuKeeps }), `after level ${level}`).toEqual([]);
    }
  });

  it("ndmpd recover of the chain (given its last backup) restores level 0, 1 and 2 in order: equal to the final tree", async () => {
    const l = await cli("list", "--tape", "vtc");
    expect(l.code, l.stderr).toBe(0);
    expect(l.stdout).toMatch(/^ 3 .* tar +2 +2 /m);
    expect(l.stdout).toMatch(/^ 2 .* tar +1 +1 /m);
    expect(l.stdout).toMatch(/^ 1 .* tar +0 +- /m);
    const dest = join(W, "x-cli");
    const r = await cli("recover", "--tape", "vtc", "--to", dest, "--file", "3");
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(await compareTrees(at(2), dest)).toEqual([]);
    const dd = await cli("dumpdates", SRC);
    expect(dd.code, dd.stderr).toBe(0);
    expect(dd.stdout.split("\n").filter((x) => x.includes(SRC)).map((x) => x.split(/\s+/).slice(0, 2).join(" "))).toEqual(["tar 0", "tar 1", "tar 2"]);
  });

  it("ndmpd recover of paths over the chain, --only one image, --date: each as the tree was", async () => {
    // /edit changed at levels 1 and 2; /new2 exists only from level 2 on; /del lost a tree at each level.
    const paths = join(W, "x-cli-paths");
    const r = await cli("recover", "--tape", "vtc", "--to", paths, "--file", "3", "/edit", "/del", "/new2");
    expect(r.code, r.stderr + r.stdout).toBe(0);
    for (const p of ["edit", "del", "new2"]) expect(await compareTrees(join(at(2), p), join(paths, p)), p).toEqual([]);
    const missing = await cli("recover", "--tape", "vtc", "--to", join(W, "x-cli-missing"), "--file", "3", "/no/such/path");
    expect(missing.code).toBe(1);
    expect(missing.stdout + missing.stderr).toMatch(/no\/such\/path.*NOT_FOUND/);

    const only = join(W, "x-cli-only");
    const o = await cli("recover", "--tape", "vtc", "--to", only, "--file", "2", "--only");
    expect(o.code, o.stderr + o.stdout).toBe(0);
    expect(existsSync(join(only, "big"))).toBe(true); // the directory, with nothing of level 0 in it
    expect(existsSync(join(only, "big/blob"))).toBe(false);
    expect(readFileSync(join(only, "new1/sub/f"), "utf8")).toBe("new in step 1\n");

    const list = JSON.parse((await cli("list", "--tape", "vtc", "--json")).stdout);
    const second = list.backups.find((b: { seq: number }) => b.seq === 2);
    expect(second).toMatchObject({ level: 1, base: 1 });
    const byDate = join(W, "x-cli-date");
    const d = await cli("recover", "--tape", "vtc", "--to", byDate, "--date", new Date(Date.parse(second.date) + 1).toISOString());
    expect(d.code, d.stderr + d.stdout).toBe(0);
    expect(await compareTrees(at(1), byDate)).toEqual([]);
  });

  it("selective recovery (nlist) of an incremental restores what it holds; names it does not hold get FAILED_NOT_FOUND and the rest carries on", async () => {
    const dest = join(W, "x-sel");
    const picks = ["/edit/e2", "/new2", "/big/blob"]; // changed at level 2, new at level 2, only in level 0
    const r = await ndmjob(lab.ns, ["-x", "-v", "-D", D, "-T", T, "-f", join(W, "level2.simtape"), "-B", "tar", "-C", dest, ...picks]);
    expect(r.stdout).toContain("LOG_FILE messages: 2 OK, 1 ERROR, total 3 of 3");
    expect(r.stdout).toContain('DLF "Not found: /big/blob"');
    expect(readFileSync(join(dest, "edit/e2"), "utf8")).toBe("ORIGINAL content two\n");
    expect(await compareTrees(join(at(2), "new2"), join(dest, "new2"))).toEqual([]);
    expect(existsSync(join(dest, "big"))).toBe(false);
  });

  it("ndmpd backup --level 1 of a path with no level 0 fails and says which level is missing", async () => {
    const fresh = join(W, "fresh");
    mkdirSync(fresh);
    const r = await cli("backup", fresh, "--tape", "vtc", "--level", "1");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/LEVEL=1: no tar backup of level 0 of .*fresh .* is recorded here/);
    expect((await cli("backup", fresh, "--tape", "vtc", "--level", "32")).code).toBe(2);
  });

  it("report: image sizes and times per level", () => {
    const rows = LEVELS.map(
      (l) =>
        `level ${l}: ${levelImages[l]!.stream.length} bytes, ndmjob three-way ${levelImages[l]!.ms} ms; token mode ${tokenImages[l]!.stream.length} bytes; ` +
        `ndmpd backup ${cliBytes[l]} bytes, ${cliMs[l]} ms`,
    );
    console.log(`tar chain images:\n  ${rows.join("\n  ")}`);
    expect(existsSync(SRC)).toBe(true);
  });
});

describe.runIf(havePeers("binary"))("incremental refusals (our client as DMA)", () => {
  let srv: RunningServer;
  let c: NdmpClient;
  const W = mkdtempSync(join(tmpdir(), "ndmpd-tar-incr-err-"));
  const SRC = join(W, "src");
  const STATE = () => join(srv.dir, "state");

  beforeAll(async () => {
    mkdirSync(SRC);
    writeFileSync(join(SRC, "a"), "a\n");
    writeFileSync(join(SRC, "big"), Buffer.alloc(32 * 1024 * 1024, 7));
    srv = await startServer();
    c = await dma(srv.port);
  }, 60_000);

  afterAll(async () => {
    await c?.close();
    await srv?.stop();
    rmSync(W, { recursive: true, force: true });
  });

  /** A one-connection listener here; DATA_CONNECT points the server at it. */
  const dataConnect = async (session: NdmpClient = c): Promise<Socket> => {
    const server = createServer();
    const accepted = new Promise<Socket>((r) => server.once("connection", (s) => (server.close(), r(s))));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as { port: number }).port;
    await session.request(Message.DATA_CONNECT, { addr: { addr_type: AddrType.TCP, tcp_addr: [tcpAddr("127.0.0.1", port)] } });
    return accepted;
  };
  const start = async (env: Record<string, string>, session: NdmpClient = c): Promise<{ error: number; log: string[] }> => {
    const since = session.posts.length;
    let error: number = ErrorCode.NO_ERR;
    try {
      await session.request(Message.DATA_START_BACKUP, { butype_name: "tar", env: Object.entries({ FILESYSTEM: SRC, ...env }).map(([name, value]) => ({ name, value })) });
    } catch (e) {
      if (!(e instanceof NdmpClientError)) throw e;
      error = e.error;
    }
    const log = session.posts.slice(since).filter((p) => p.code === Message.LOG_MESSAGE && p.body.log_type === LogType.ERROR).map((p) => Buffer.from(p.body.entry).toString());
    return { error, log };
  };
  const recorded = () => (existsSync(join(STATE(), "dumpdates")) ? readFileSync(join(STATE(), "dumpdates"), "latin1").split("\n").filter((l) => l && !l.startsWith("#")) : []);
  const runToEnd = async (env: Record<string, string>, session: NdmpClient = c) => {
    const recv = new Receiver(await dataConnect(session));
    const since = session.posts.length;
    expect((await start(env, session)).error).toBe(ErrorCode.NO_ERR);
    const h = await session.waitForPost(Message.NOTIFY_DATA_HALTED, 60_000, since);
    const logs = session.posts.slice(since).filter((p) => p.code === Message.LOG_MESSAGE).map((p) => Buffer.from(p.body.entry).toString());
    if (h.body.reason !== Halt.SUCCESSFUL) throw new Error(`halted ${h.body.reason}: ${logs.join("; ")}`);
    const envOut = ((await session.request(Message.DATA_GET_ENV)).body.env as Array<{ name: string; value: string }>).map((p) => [String(p.name), String(p.value)]);
    await session.request(Message.DATA_STOP);
    recv.sock.destroy();
    return { reason: h.body.reason as number, env: new Map(envOut as Array<[string, string]>) };
  };

  it("missing lower level, bad LEVEL, bad token: ILLEGAL_ARGS and a LOG_MESSAGE saying why; nothing recorded", async () => {
    const sock = await dataConnect();
    sock.resume();
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ LEVEL: "1" }, /LEVEL=1: no tar backup of level 0 of .*src .* is recorded here/],
      [{ LEVEL: "3" }, /LEVEL=3: no tar backup of level 0-2 of /],
      [{ LEVEL: "32" }, /LEVEL=32: must be a number from 0 to 31/],
      [{ LEVEL: "one" }, /LEVEL=one: must be a number from 0 to 31/],
      [{ BASE_DATE: "yesterday" }, /BASE_DATE=yesterday: not a token/],
      [{ BASE_DATE: ((40n << 32n) | 5n).toString() }, /not a token/],
    ];
    for (const [env, why] of cases) {
      const r = await start(env);
      expect(r.error, JSON.stringify(env)).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
      expect(r.log.join("\n"), JSON.stringify(env)).toMatch(why);
    }
    sock.destroy();
    await c.request(Message.DATA_ABORT).catch(() => {});
    await c.request(Message.DATA_STOP).catch(() => {});
    expect(recorded()).toEqual([]);
  });

  it("only a backup that succeeded is recorded: an aborted level 0 and one with UPDATE=n leave no base", async () => {
    // Aborted: the DMA never reads the data connection, the backup stalls, DATA_ABORT.
    const sock = await dataConnect();
    const since = c.posts.length;
    expect((await start({ LEVEL: "0" })).error).toBe(ErrorCode.NO_ERR);
    await new Promise((r) => setTimeout(r, 300));
    await c.request(Message.DATA_ABORT);
    expect((await c.waitForPost(Message.NOTIFY_DATA_HALTED, 30_000, since)).body.reason).toBe(Halt.ABORTED);
    await c.request(Message.DATA_STOP);
    sock.destroy();
    expect(recorded()).toEqual([]);

    const noUpdate = await runToEnd({ LEVEL: "0", UPDATE: "n" });
    expect(noUpdate.reason).toBe(Halt.SUCCESSFUL);
    expect(noUpdate.env.get("LEVEL")).toBe("0");
    expect(recorded()).toEqual([]);
    const sock2 = await dataConnect();
    sock2.resume();
    expect((await start({ LEVEL: "1" })).error).toBe(ErrorCode.ILLEGAL_ARGS_ERR);
    sock2.destroy();
    await c.request(Message.DATA_ABORT).catch(() => {});
    await c.request(Message.DATA_STOP).catch(() => {});

    const full = await runToEnd({ LEVEL: "0" });
    expect(full.reason).toBe(Halt.SUCCESSFUL);
    expect(recorded()).toHaveLength(1);
    expect(recorded()[0]).toContain(` ${full.env.get("DUMP_DATE")} `);
    const incr = await runToEnd({ LEVEL: "1" });
    expect(incr.reason).toBe(Halt.SUCCESSFUL);
    expect(incr.env.get("LEVEL")).toBe("1");
    expect(recorded()).toHaveLength(2);
  });

  it("two backups of one path at once (two sessions): both succeed, dumpdates stays whole with one line per level", async () => {
    const other = await dma(srv.port);
    try {
      const [a, b] = await Promise.all([runToEnd({ LEVEL: "2" }), runToEnd({ LEVEL: "2" }, other)]);
      expect([a.reason, b.reason]).toEqual([Halt.SUCCESSFUL, Halt.SUCCESSFUL]);
      const lines = recorded();
      expect(lines.map((l) => l.split(/\s+/).slice(1, 3).join(" ")).sort()).toEqual(["tar 0", "tar 1", "tar 2"]);
      expect([a.env.get("DUMP_DATE"), b.env.get("DUMP_DATE")]).toContain(lines.find((l) => / tar {2}2 /.test(l))!.split(/\s+/)[5]);
      expect(readdirSync(STATE()).filter((f) => f.includes(".tmp") || f.endsWith(".lock"))).toEqual([]);
    } finally {
      await other.close();
    }
  });
});
