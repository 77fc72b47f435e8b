import { describe, expect, it } from "vitest";
import type { Post } from "../../../src/client/client.ts";
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { backupPath, HistoryCollector } from "../../../src/dma/jobs.ts";
import { decodeLabel, encodeLabel, imageFile, labelFile, MAX_LABEL, type TapeLabel } from "../../../src/dma/label.ts";
import { eta, formatBytes, formatDuration, Progress, progressLine } from "../../../src/dma/progress.ts";
import { showPath } from "../../../src/dma/cli.ts";
import { ALL1, Message } from "../../../src/protocol/codes.ts";

const label: TapeLabel = {
  mediaId: "0b1c2d3e-0000-4000-8000-000000000001",
  seq: 2,
  label: "nightly é",
  date: "2026-01-02T03:04:05.678Z",
  format: "tar",
  host: "files1",
  root: "/srv/export",
  level: 0,
  recordSize: 262144,
  env: [["FILESYSTEM", "/srv/export"], ["EXCLUDE", "*.o"], ["EXCLUDE", "cache"]],
  writer: "ndmpd 0.1.0",
};

describe("tape label", () => {
  it("round-trips, starts with its magic line, and is found in a zero-padded record", () => {
    const rec = encodeLabel(label);
    expect(rec.subarray(0, 14).toString()).toBe("NDMPD-LABEL 1\n");
    expect(decodeLabel(rec)).toEqual(label);
    expect(decodeLabel(Buffer.concat([rec, Buffer.alloc(4096)]))).toEqual(label);
    // A duplicate's label says what it copies; an original has no copyOf at all.
    const copy = { ...label, mediaId: "0b1c2d3e-0000-4000-8000-000000000002", seq: 1, copyOf: `${label.mediaId}#2` };
    expect(decodeLabel(encodeLabel(copy))).toEqual(copy);
    expect("copyOf" in decodeLabel(rec)!).toBe(false);
  });

  it("is not found in another program's record; a damaged or newer one is an error", () => {
    expect(decodeLabel(Buffer.from("##ndmjob -m TAPE01\n###"))).toBeUndefined();
    expect(decodeLabel(Buffer.alloc(512))).toBeUndefined();
    expect(() => decodeLabel(Buffer.from('NDMPD-LABEL 1\n{"mediaId":'))).toThrow(/damaged/);
    expect(() => decodeLabel(Buffer.from('NDMPD-LABEL 1\n{"mediaId":"x"}\n'))).toThrow(/seq missing/);
    expect(() => decodeLabel(Buffer.from("NDMPD-LABEL 2\n{}\n"))).toThrow(/version 2/);
  });

  it("refuses to grow past one read; places backup k at tape files 2(k-1) and 2(k-1)+1", () => {
    expect(() => encodeLabel({ ...label, env: [["EXCLUDE", "x".repeat(MAX_LABEL)]] })).toThrow(/at most/);
    expect([labelFile(1), imageFile(1), labelFile(3), imageFile(3)]).toEqual([0, 1, 4, 5]);
  });
});

describe("progress display", () => {
  it("formats sizes, durations, rates and the ETA", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1023)).toBe("1023 B");
    expect(formatBytes(1536)).toBe("1.50 KiB");
    expect(formatBytes(50 * 1024 * 1024)).toBe("50.0 MiB");
    expect(formatBytes(3 * 1024 ** 4)).toBe("3.00 TiB");
    expect(formatDuration(0)).toBe("0:00");
    expect(formatDuration(83)).toBe("1:23");
    expect(formatDuration(3600 + 62)).toBe("1:01:02");
    expect(eta({ bytes: 100, files: 0, elapsedMs: 1000, total: 1000 })).toBe(9);
    expect(eta({ bytes: 100, files: 0, elapsedMs: 1000 })).toBeUndefined();
    expect(progressLine("backup", { bytes: 512 * 1024 * 1024, files: 1234, elapsedMs: 4000, total: 1024 ** 3 })).toBe(
      "backup: 512 MiB of ~1.00 GiB (50%), 1234 files, 128 MiB/s, ETA 0:04",
    );
    expect(progressLine("recover", { bytes: 2048, files: 3, elapsedMs: 2000 })).toBe("recover: 2.00 KiB, 3 files, 1.00 KiB/s, elapsed 0:02");
  });

  const capture = () => {
    const chunks: string[] = [];
    return { chunks, sink: { write: (s: string) => chunks.push(s) } };
  };

  it("tty: redraws one line in place and clears it before notes and the summary", () => {
    const { chunks, sink } = capture();
    const p = new Progress(sink, "tty", "backup", 0);
    p.update(1024, 1);
    p.update(2048, 2);
    p.note("warning: x");
    p.end(true, { backup: 1 });
    expect(chunks[0]).toMatch(/^\rbackup: 1.00 KiB, 1 files, .*\x1b\[K$/);
    expect(chunks[1]).toMatch(/^\rbackup: 2.00 KiB, 2 files/);
    expect(chunks[2]).toBe("\r\x1b[K");
    expect(chunks[3]).toBe("warning: x\n");
    // The summary starts on a cleared line even with no progress line drawn since the note.
    expect(chunks.at(-2)).toBe("\r\x1b[K");
    expect(chunks.at(-1)).toMatch(/^backup done: 2.00 KiB, 2 files in 0:00 \(.*\/s\); backup 1\n$/);
  });

  it("plain: whole lines at the interval only; json: one object per line", () => {
    const { chunks, sink } = capture();
    const p = new Progress(sink, "plain", "backup", 60_000);
    p.start({ path: "/x" });
    p.update(1, 1); // shown (first)
    p.update(2, 2); // too soon
    p.end(false, {});
    expect(chunks).toHaveLength(3);
    expect(chunks.join("")).not.toMatch(/[\r\x1b]/);
    expect(chunks[2]).toMatch(/^backup FAILED: 2 B, 2 files/);

    const j = capture();
    const q = new Progress(j.sink, "json", "recover", 0);
    q.start({ tape: "vt0" });
    q.update(10, 1, 100);
    q.note("error: y");
    q.end(true, { directReads: 2 });
    const objs = j.chunks.join("").trim().split("\n").map((l) => JSON.parse(l));
    expect(objs.map((o) => o.event)).toEqual(["start", "progress", "log", "end"]);
    expect(objs[0]).toEqual({ event: "start", job: "recover", tape: "vt0" });
    expect(objs[1]).toMatchObject({ bytes: 10, files: 1, total: 100 });
    expect(objs[3]).toMatchObject({ ok: true, bytes: 10, files: 1, directReads: 2 });
  });
});

const stat = (ftype: number, size = 0) => ({ ftype, fattr: 0o644, owner: 1, group: 2, size: BigInt(size), mtime: 5 });
const post = (code: number, body: unknown): Post => ({ code, body, header: {} as Post["header"] });
const name = (s: string) => ({ fs_type: 0, unix_name: Buffer.from(s) });

describe("file history collection", () => {
  it("takes path-style entries as they come (FH_ADD_FILE)", () => {
    const h = new HistoryCollector();
    h.add(post(Message.FH_ADD_FILE, { files: [{ names: [name("/")], stats: [stat(0)], node: 2n, fh_info: 0n }, { names: [name("/a")], stats: [stat(4, 9)], node: ALL1, fh_info: ALL1 }] }));
    expect(h.count).toBe(2);
    expect(h.rows().map((r) => [r.path.toString(), r.node, r.fhInfo, r.size])).toEqual([
      ["/", 2, 0, 0],
      ["/a", null, null, 9],
    ]);
  });

  it("spilling: the same rows in the same order from a temporary file, which is gone after the catalog read them", () => {
    for (const count of [3, 30_000]) {
      // Now and then an entry without attributes, or with an NT name before its UNIX one.
      const files = Array.from({ length: count }, (_, i) => ({
        names: i % 13 === 1 ? [{ fs_type: 1, nt_path: Buffer.from("x"), dos_path: Buffer.from("x") }, name(`/d${i % 7}/nt${i}`)] : [name(`/d${i % 7}/f${i}-${"x".repeat(i % 50)}`)],
        stats: i % 11 === 2 ? [] : [stat(i % 3 === 0 ? 0 : 4, i * 3)],
        node: i % 5 === 0 ? ALL1 : BigInt(i),
        fh_info: i % 17 === 3 ? ALL1 : BigInt(i * 512),
      }));
      const plain = new HistoryCollector();
      const spilled = new HistoryCollector({ spill: true });
      for (let i = 0; i < files.length; i += 1000) {
        const p = post(Message.FH_ADD_FILE, { files: files.slice(i, i + 1000) });
        plain.add(p);
        spilled.add(p);
      }
      const before = readdirSync(tmpdir()).filter((n) => n.startsWith("ndmpd-history-")).length;
      if (count > 10_000) expect(before, "a spill file while the rows wait").toBeGreaterThan(0);
      expect(spilled.rowCount()).toBe(count);
      const rows = [...spilled.each()];
      expect(rows).toEqual(plain.rows());
      expect(readdirSync(tmpdir()).filter((n) => n.startsWith("ndmpd-history-")).length).toBeLessThanOrEqual(before);
    }
  });

  it("resolves dir/node history into full paths, hard links included (FH_ADD_DIR + FH_ADD_NODE)", () => {
    const h = new HistoryCollector();
    const dir = (n: string, node: bigint, parent: bigint) => ({ names: [name(n)], node, parent });
    h.add(post(Message.FH_ADD_DIR, { dirs: [dir(".", 2n, 2n), dir("..", 2n, 2n), dir("sub", 10n, 2n), dir("f", 11n, 2n), dir(".", 10n, 10n), dir("..", 2n, 10n), dir("g", 11n, 10n)] }));
    h.add(post(Message.FH_ADD_NODE, { nodes: [2n, 10n, 11n].map((n) => ({ stats: [stat(n === 11n ? 4 : 0)], node: n, fh_info: n * 100n })) }));
    const rows = h.rows().map((r) => [r.path.toString(), r.fhInfo]).sort();
    expect(rows).toEqual([
      ["/", 200],
      ["/f", 1100],
      ["/sub", 1000],
      ["/sub/g", 1100],
    ]);
  });
});

describe("paths", () => {
  it("normalizes paths inside a backup; refuses ..", () => {
    expect(backupPath("a/b/")).toBe("/a/b");
    expect(backupPath("/a//b")).toBe("/a/b");
    expect(backupPath("./a")).toBe("/a");
    expect(backupPath("/")).toBe("/");
    expect(() => backupPath("a/../../etc")).toThrow(/'\.\.'/);
  });

  it("shows non-UTF-8 names with escapes", () => {
    expect(showPath(Buffer.from("/é"))).toBe("/é");
    expect(showPath(Buffer.from([0x2f, 0xff, 0x41, 0x5c]))).toBe("/\\xffA\\x5c");
  });
});
