/**
 * `ndmpd backup` larger than a cartridge, against the compiled binary: a virtual library of
 * 2 MiB cartridges and a 5.6 MB tree. The backup goes on on the next cartridges (three in all);
 * list and the catalog show each one with where its part starts; `ndmpd recover` with no more
 * options than for one cartridge restores the whole tree byte for byte, and a single path on
 * the second cartridge by direct access; GNU tar reads the parts' tape files concatenated. With
 * no usable next cartridge (the others full), or no library, the backup fails and says why.
 * Without the catalog, `catalog rebuild` finds the later parts by their labels. Another DMA
 * (ndmjob -x with the cartridges as its media list) restores the spanned image too.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { setCartridgeWriteProtect, VirtualTapeDrive } from "../../src/devices/tape/virtual.ts";
import { jobSucceeded, ndmjob } from "../helpers/ndmjob.ts";
import { createNetns, type Netns } from "../helpers/netns.ts";
import { BINARY, havePeers } from "../helpers/peers.ts";
import { PASSWORD, startServer, USER, type RunningServer } from "../helpers/server.ts";
import { run } from "../helpers/run.ts";
import { compareTrees, pattern } from "../helpers/tree.ts";
import { vtapeFiles } from "../helpers/vtape.ts";

describe.runIf(havePeers("binary", "tar"))("ndmpd backup over several cartridges of a library", () => {
  const W = mkdtempSync(join(tmpdir(), "ndmpd-cli-span-"));
  const SRC = join(W, "src");
  const CFG = join(W, "ndmpd.toml");
  const LIB = join(W, "lib0");
  // 64 KiB records: the virtual cartridge's early warning is capacity / 16 (128 KiB here), and a
  // record must fit between it and the physical end.
  const RS = "65536";
  const ndmpd = (...args: string[]) => run(BINARY, [...args, "--config", CFG], { timeoutMs: 120_000 });
  const jsonLines = (s: string) => s.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));

  beforeAll(() => {
    mkdirSync(join(SRC, "sub"), { recursive: true });
    for (let i = 0; i < 5; i++) writeFileSync(join(SRC, `f${i}.bin`), pattern(1_100_000, i));
    writeFileSync(join(SRC, "sub/late.bin"), pattern(300_000, 9));
    writeFileSync(
      CFG,
      `[server]\nstate_dir = "${W}/state"\n\n[[tape]]\nname = "vt0"\n\n[[changer]]\nname = "lib0"\npath = "${LIB}"\nslots = 4\ndrives = ["vt0"]\ncapacity = "2MiB"\n\n` +
        `[[tape]]\nname = "alone"\npath = "${W}/alone.tape"\ncapacity = "2MiB"\n\n` +
        `[[tape]]\nname = "vt1"\n\n[[changer]]\nname = "lib1"\npath = "${W}/lib1"\nslots = 5\ndrives = ["vt1"]\ncapacity = "2MiB"\nbarcode_prefix = "ALT"\n`,
    );
    chmodSync(CFG, 0o600);
  });
  afterAll(() => rmSync(W, { recursive: true, force: true }));

  let span: Array<{ part: number; barcode: string; slot: number; start: number; bytes: number }> = [];

  it("goes on on the next cartridges when one fills; the catalog and list show each one", async () => {
    const b = await ndmpd("backup", SRC, "--tape", "vt0", "--slot", "1", "--label", "big", "--record-size", RS);
    expect(b.code, b.stderr + b.stdout).toBe(0);
    expect(b.stdout).toMatch(/cartridge NDMP001L8 \(slot 1\) is full at byte \d+ of the image: part 2 goes on slot 2 \(NDMP002L8\), backup 1 on it/);
    expect(b.stdout).toMatch(/cartridge NDMP002L8 \(slot 2\) is full at byte \d+ of the image: part 3 goes on slot 3 \(NDMP003L8\), backup 1 on it/);
    expect(b.stdout).toMatch(/backup done: .*cartridges NDMP001L8, NDMP002L8, NDMP003L8/);

    const l = await ndmpd("list", "--tape", "vt0", "--slot", "1", "--json");
    expect(l.code, l.stderr).toBe(0);
    const listing = JSON.parse(l.stdout);
    expect(listing.source).toBe("catalog");
    span = listing.backups[0].span;
    expect(span.map((p) => [p.part, p.barcode, p.slot])).toEqual([[1, "NDMP001L8", 1], [2, "NDMP002L8", 2], [3, "NDMP003L8", 3]]);
    expect(span[0]!.start).toBe(0);
    // Each part starts where the one before ended; together they are the image.
    for (let i = 1; i < span.length; i++) expect(span[i]!.start).toBe(span[i - 1]!.start + span[i - 1]!.bytes);
    expect(span[2]!.start + span[2]!.bytes).toBe(listing.backups[0].bytes);
    expect((await ndmpd("list", "--tape", "vt0", "--slot", "1")).stdout).toMatch(/part 2: NDMP002L8 slot 2, from byte \d+/);
    // A later cartridge lists its part as part of the backup.
    const l3 = await ndmpd("list", "--tape", "vt0", "--slot", "3");
    expect(l3.stdout).toMatch(new RegExp(`^ 1 .* part 3 of backup 1 \\(big\\) of cartridge ${listing.mediaId} `, "m"));
  });

  it("recovers the whole tree from the three cartridges in order, with the options of a one-cartridge recovery", async () => {
    const out = join(W, "all");
    // The drive holds the last cartridge (list --slot 3 loaded it): recover finds the first.
    const r = await ndmpd("recover", "--tape", "vt0", "--to", out);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/loaded its first cartridge NDMP001L8/);
    expect(r.stdout).toContain(`next cartridge NDMP002L8: the image goes on at byte ${span[1]!.start}`);
    expect(r.stdout).toContain(`next cartridge NDMP003L8: the image goes on at byte ${span[2]!.start}`);
    expect(await compareTrees(SRC, out)).toEqual([]);
  });

  it("recovers one file of the second cartridge by direct access, starting on that cartridge", async () => {
    const le = JSON.parse((await ndmpd("list", "--tape", "vt0", "--slot", "1", "--file", "1", "--json")).stdout);
    const onSecond = le.entries.find((e: any) => e.ftype !== 1 && e.fhInfo >= span[1]!.start && e.fhInfo + e.size < span[2]!.start);
    expect(onSecond, JSON.stringify(le.entries)).toBeDefined();
    const out = join(W, "dar");
    const r = await ndmpd("recover", "--tape", "vt0", "--to", out, "--json", onSecond.path);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toContain("starting on part 2, cartridge NDMP002L8");
    const end = jsonLines(r.stdout).find((e) => e.event === "end");
    expect(end).toMatchObject({ ok: true, direct: true, restored: 1 });
    expect(end.bytesRead).toBeLessThan(1_300_000);
    expect(readFileSync(join(out, onSecond.path)).equals(readFileSync(join(SRC, onSecond.path)))).toBe(true);
  });

  it("GNU tar reads the parts' image files concatenated", async () => {
    // Backup 1 on each cartridge: label (tape file 0), image part (tape file 1).
    const image = Buffer.concat([1, 2, 3].flatMap((n) => vtapeFiles(join(LIB, `NDMP00${n}L8.tape`))[1]!));
    expect(image.length).toBeGreaterThanOrEqual(span[2]!.start + span[2]!.bytes);
    const tarFile = join(W, "image.tar");
    writeFileSync(tarFile, image);
    const out = join(W, "gnutar");
    mkdirSync(out);
    const t = spawnSync("tar", ["-xf", tarFile, "-C", out], { encoding: "utf8" });
    expect(t.status, t.stderr).toBe(0);
    expect(await compareTrees(SRC, out)).toEqual([]);
  });

  it("catalog rebuild finds the later parts by their labels in the library and records the span again", async () => {
    for (const f of readdirSync(join(W, "state")).filter((n) => n.startsWith("catalog."))) rmSync(join(W, "state", f));
    // A later part alone is not a backup of its own: it is rebuilt with its first cartridge.
    const r3 = await ndmpd("catalog", "rebuild", "--tape", "vt0", "--slot", "3");
    expect(r3.code, r3.stderr + r3.stdout).toBe(0);
    expect(r3.stdout).toMatch(/backup 1 is part 3 of backup 1 of cartridge .*: rebuilt with that cartridge/);
    const r1 = await ndmpd("catalog", "rebuild", "--tape", "vt0", "--slot", "1");
    expect(r1.code, r1.stderr + r1.stdout).toBe(0);
    expect(r1.stdout).toContain("part 2 of backup 1 is backup 1 of NDMP002L8");
    const listing = JSON.parse((await ndmpd("list", "--tape", "vt0", "--slot", "1", "--json")).stdout);
    expect(listing.backups[0].span.map((p: any) => [p.part, p.barcode, p.slot, p.start])).toEqual(span.map((p) => [p.part, p.barcode, p.slot, p.start]));
    const out = join(W, "after-rebuild");
    const r = await ndmpd("recover", "--tape", "vt0", "--to", out);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(await compareTrees(SRC, out)).toEqual([]);
  });

  it("fails clearly with no usable next cartridge (the others full), leaving the cartridges as they were", async () => {
    const b = await ndmpd("backup", SRC, "--tape", "vt0", "--slot", "4", "--record-size", RS);
    expect(b.code).toBe(1);
    // Slots after 4 wrap around to 1-3, which the first backup filled: 1 and 2 take no label, 3
    // takes part 2 and one record, and then there is nowhere to go.
    expect(b.stdout).toMatch(/^slot 1 \(NDMP001L8\) cannot take part 2: it is full \(no room for a label\)$/m);
    expect(b.stdout).toMatch(/part 2 goes on slot 3 \(NDMP003L8\), backup 2 on it/);
    expect(b.stdout).toMatch(
      /^error: the cartridge is full at byte \d+ of the image, and the backup cannot go on: no other cartridge in lib0 is usable \(slot 1 \(NDMP001L8\): it is full \(no room for a label\); slot 2 \(NDMP002L8\): it is full \(no room for a label\)\)$/m,
    );
    // The failed backup is cut off every cartridge it reached; the first backup is whole.
    const l4 = JSON.parse((await ndmpd("list", "--tape", "vt0", "--slot", "4", "--json")).stdout);
    expect(l4.backups).toEqual([]);
    const l3 = JSON.parse((await ndmpd("list", "--tape", "vt0", "--slot", "3", "--json")).stdout);
    expect(l3.backups.map((x: any) => [x.seq, x.partOf?.part])).toEqual([[1, 3]]);
    const l1 = JSON.parse((await ndmpd("list", "--tape", "vt0", "--slot", "1", "--json")).stdout);
    expect(l1.backups.map((x: any) => [x.seq, x.label, x.span.length])).toEqual([[1, "big", 3]]);
    const out = join(W, "after-failure");
    expect((await ndmpd("recover", "--tape", "vt0", "--to", out)).code).toBe(0);
    expect(await compareTrees(SRC, out)).toEqual([]);
  });

  it("skips a cartridge that holds another program's data and a write-protected one, and leaves them alone", async () => {
    // The library's cartridges exist once it has been used; then slot 2 gets a foreign record.
    expect((await ndmpd("list", "--tape", "vt1", "--slot", "1")).code).toBe(0);
    const foreign = join(W, "lib1", "ALT002L8.tape");
    const d = new VirtualTapeDrive({ name: "x", cartridge: foreign });
    await d.open("RDWR");
    await d.write(Buffer.alloc(10240, 0x41));
    await d.close();
    setCartridgeWriteProtect(join(W, "lib1", "ALT003L8.tape"), true);
    const b = await ndmpd("backup", SRC, "--tape", "vt1", "--slot", "1", "--record-size", RS);
    expect(b.code, b.stderr + b.stdout).toBe(0);
    expect(b.stdout).toMatch(/^slot 2 \(ALT002L8\) cannot take part 2: tape file 0 holds another program's data$/m);
    expect(b.stdout).toMatch(/^slot 3 \(ALT003L8\) cannot take part 2: .*WRITE_PROTECT/m);
    expect(b.stdout).toMatch(/cartridge ALT001L8 \(slot 1\) is full at byte \d+ of the image: part 2 goes on slot 4 \(ALT004L8\)/);
    const listing = JSON.parse((await ndmpd("list", "--tape", "vt1", "--slot", "1", "--json")).stdout);
    expect(listing.backups[0].span.map((p: any) => p.slot)).toEqual([1, 4, 5]);
    expect(vtapeFiles(join(W, "lib1", "ALT003L8.tape"))).toEqual([]);
    expect(vtapeFiles(foreign)).toEqual([[Buffer.alloc(10240, 0x41)]]);
    const out = join(W, "skipped-foreign");
    expect((await ndmpd("recover", "--tape", "vt1", "--to", out)).code).toBe(0);
    expect(await compareTrees(SRC, out)).toEqual([]);
  });

  it("fails clearly on a drive in no library", async () => {
    const b = await ndmpd("backup", SRC, "--tape", "alone", "--record-size", RS);
    expect(b.code).toBe(1);
    expect(b.stdout).toMatch(/the backup cannot go on: drive alone belongs to no \[\[changer\]\] with more cartridges/);
  });
});

describe.runIf(havePeers("binary", "ndmjob", "unshare"))("a spanned ndmpd backup restored by another DMA (ndmjob -x, a media list)", () => {
  let ns: Netns | undefined;
  let srv: RunningServer | undefined;
  const W = mkdtempSync(join(tmpdir(), "ndmpd-span-ndmjob-"));
  afterAll(async () => {
    await srv?.stop();
    await ns?.stop();
    rmSync(W, { recursive: true, force: true });
  });

  it("ndmjob loads each cartridge in turn (tape file 1 on each: label, then the part) and restores the tree", async () => {
    const SRC = join(W, "src");
    mkdirSync(SRC);
    for (let i = 0; i < 5; i++) writeFileSync(join(SRC, `f${i}.bin`), pattern(1_100_000, 10 + i));
    const lib = `[[tape]]\nname = "vt0"\n[[changer]]\nname = "lib0"\npath = "${W}/lib0"\nslots = 4\ndrives = ["vt0"]\ncapacity = "2MiB"\n`;
    const cfg = join(W, "c.toml");
    writeFileSync(cfg, `[server]\nstate_dir = "${W}/state"\n` + lib, { mode: 0o600 });
    // ndmjob's default record size, so that it needs no option for it.
    const b = await run(BINARY, ["backup", SRC, "-c", cfg, "--slot", "1", "--record-size", "10240"], { timeoutMs: 120_000 });
    expect(b.code, b.stderr + b.stdout).toBe(0);
    expect(b.stdout).toMatch(/cartridges NDMP001L8, NDMP002L8, NDMP003L8/);
    ns = await createNetns();
    srv = await startServer({ netns: ns, config: `[server]\nlisten = "127.0.0.1:10000"\nstate_dir = "$DIR/state"\nauth_failure_delay_ms = 0\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n` + lib });
    const A = `127.0.0.1:10000/4,${USER},${PASSWORD}`;
    // The backup left its last cartridge in the drive; ndmjob wants an empty one.
    const u = await ndmjob(ns, ["-o", "unload", "-R", A, "-r", "lib0", "-v"], 60_000);
    expect(u.stdout).toContain('"Commanding robot to unload drive @500 to slot @1002"');
    expect(u.stdout).not.toContain("had problems");
    const out = join(W, "out");
    const media = ["+1@1000", "+1@1001", "+1@1002"].flatMap((m) => ["-m", m]);
    const x = await ndmjob(ns, ["-x", "-v", "-D", A, "-R", A, "-r", "lib0", "-f", "vt0", ...media, "-B", "tar", "-C", out], 120_000);
    expect(jobSucceeded(x.stdout), x.stdout).toBe(true);
    expect(x.stdout).toContain('"Commanding robot to load slot @1002 into drive @500"');
    expect(await compareTrees(SRC, out)).toEqual([]);
  }, 200_000);
});
