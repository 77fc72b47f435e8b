/**
 * Reader features not produced by our writer (global headers, GNU long names, base-256, v7),
 * and hostile input: every bad stream must end in a TarFormatError with an offset, quickly,
 * with bounded memory.
 */
import { describe, expect, it } from "vitest";
import { F, writeChecksum, writeOctal } from "../../../../formats/tar/header.ts";
import { encodeRecord } from "../../../../formats/tar/pax.ts";
import { TarFormatError, TarReader, readAll } from "../../../../formats/tar/reader.ts";
import { encodeHeader, endOfArchive, padding } from "../../../../formats/tar/writer.ts";
import { buildArchive, collect, file, pattern, readInChunks } from "./helpers.ts";

/** A header block of the given type and size, otherwise like our writer's for `name`. */
function rawHeader(name: string, typeflag: string, size: number, edit?: (b: Buffer) => void): Buffer {
  const b = encodeHeader(file(name, Buffer.alloc(0)).entry);
  b[F.typeflag[0]] = typeflag.charCodeAt(0);
  writeOctal(b, F.size, size);
  edit?.(b);
  writeChecksum(b);
  return b;
}

function member(header: Buffer, body: Buffer): Buffer {
  return Buffer.concat([header, body, padding(body.length)]);
}

function paxMember(type: "x" | "g", records: Buffer[]): Buffer {
  const body = Buffer.concat(records);
  return member(rawHeader("PaxHeaders/x", type, body.length), body);
}

const rec = (k: string, v: string | Buffer): Buffer => encodeRecord(k, typeof v === "string" ? Buffer.from(v) : v);
const small = (): Buffer => buildArchive([file("a", Buffer.from("abc"))]).archive;

function expectFormatError(f: () => unknown, match?: RegExp): TarFormatError {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(TarFormatError);
  const e = err as TarFormatError;
  expect(Number.isInteger(e.offset) && e.offset >= 0).toBe(true);
  if (match) expect(e.message).toMatch(match);
  return e;
}

describe("reader: headers our writer does not produce", () => {
  it("applies global pax headers to every later entry; x records override them", () => {
    const archive = Buffer.concat([
      paxMember("g", [rec("uid", "42"), rec("mtime", "12.5"), rec("uname", "global")]),
      member(rawHeader("one", "0", 0), Buffer.alloc(0)),
      paxMember("x", [rec("uid", "7"), rec("uname", "")]), // empty value: back to the header field
      member(rawHeader("two", "0", 0), Buffer.alloc(0)),
      endOfArchive(),
    ]);
    const { items } = collect(readAll(archive));
    expect(items.map((i) => [i.entry.uid, i.entry.mtime, i.entry.uname?.toString()])).toEqual([
      [42, { sec: 12, nsec: 500_000_000 }, "global"],
      [7, { sec: 12, nsec: 500_000_000 }, undefined], // our rawHeader leaves uname empty
    ]);
    // The g header is not part of entry "one": its offset is its own ustar header.
    expect(items[0]!.offset).toBe(1024);
    expect(items[1]!.offset).toBe(1536);
  });

  it("reads GNU L/K long names and links", () => {
    const longName = Buffer.concat([Buffer.from("x".repeat(300)), Buffer.from([0xff])]);
    const longLink = Buffer.from("y".repeat(200));
    const archive = Buffer.concat([
      member(rawHeader("././@LongLink", "L", longName.length + 1), Buffer.concat([longName, Buffer.alloc(1)])),
      member(rawHeader("././@LongLink", "K", longLink.length + 1), Buffer.concat([longLink, Buffer.alloc(1)])),
      member(rawHeader("truncated", "2", 0), Buffer.alloc(0)),
      endOfArchive(),
    ]);
    const { items } = collect(readAll(archive));
    expect(items.length).toBe(1);
    expect(items[0]!.offset).toBe(0);
    expect(items[0]!.entry.type).toBe("symlink");
    expect(items[0]!.entry.path.equals(longName)).toBe(true);
    expect(items[0]!.entry.linkTarget!.equals(longLink)).toBe(true);
  });

  it("decodes base-256 numbers, including negative times", () => {
    const header = rawHeader("b256", "0", 0, (b) => {
      b.fill(0, F.uid[0], F.uid[0] + 8);
      b[F.uid[0]] = 0x80;
      b.writeUIntBE(3_000_000, F.uid[0] + 2, 6);
      b.fill(0xff, F.mtime[0], F.mtime[0] + 12);
      b.writeIntBE(-1_000_000_001, F.mtime[0] + 6, 6);
      b.fill(0, F.size[0], F.size[0] + 12);
      b[F.size[0]] = 0x80;
      b.writeUIntBE(9 * 1024 ** 3, F.size[0] + 6, 6);
    });
    const reader = new TarReader();
    const [ev] = reader.feed(header);
    expect(ev).toMatchObject({ kind: "entry", entry: { uid: 3_000_000, mtime: { sec: -1_000_000_001, nsec: 0 }, size: 9 * 1024 ** 3 } });
  });

  it("reads v7 headers (no magic) and old-style directories with a trailing slash", () => {
    const v7 = (name: string, flag: string): Buffer =>
      rawHeader(name, flag, 0, (b) => b.fill(0, F.magic[0], F.prefix[0] + F.prefix[1]));
    const { items } = collect(readAll(Buffer.concat([v7("olddir/", "\0"), v7("f", "0"), endOfArchive()])));
    expect(items.map((i) => [i.entry.path.toString(), i.entry.type])).toEqual([
      ["olddir", "directory"],
      ["f", "file"],
    ]);
  });

  it("passes data through as views of the fed buffer, without copying", () => {
    const data = pattern(100_000, 9);
    const archive = buildArchive([file("big", data)]).archive;
    const reader = new TarReader();
    const events = reader.feed(archive);
    const chunks = events.filter((e) => e.kind === "data");
    expect(chunks.length).toBe(1);
    expect(chunks[0]!.kind === "data" && chunks[0]!.chunk.buffer === archive.buffer).toBe(true);
  });

  it("ignores bytes after the end-of-archive marker (record padding)", () => {
    const archive = Buffer.concat([small(), Buffer.alloc(9000), Buffer.from("junk")]);
    expect(collect(readAll(archive)).ended).toBe(true);
  });
});

describe("reader: hostile input", () => {
  it("rejects random bytes with a TarFormatError, quickly", () => {
    for (let seed = 1; seed <= 50; seed++) {
      const junk = pattern(512 * (1 + (seed % 5)), seed);
      expectFormatError(() => readAll(junk));
    }
  });

  it("rejects random bytes even when they carry a valid checksum", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const block = pattern(512, seed * 7919);
      writeChecksum(block);
      const archive = Buffer.concat([block, pattern(4096, seed)]);
      // Whatever the header claims, the stream ends before an end marker: must not hang or throw anything else.
      expectFormatError(() => readInChunks(archive, [333]));
    }
  });

  it("reports a truncated archive at every cut point", () => {
    const items = [
      file("a", pattern(700, 1)),
      file("n".repeat(200), Buffer.from("x"), { xattrs: [[Buffer.from("user.k"), Buffer.from("v")]] }),
      { entry: { ...file("s", Buffer.alloc(0)).entry, size: 1_000_000, sparse: [{ offset: 5000, length: 10 }] }, data: pattern(10, 2) },
    ];
    const archive = buildArchive(items).archive;
    for (let cut = 0; cut < archive.length - 1024; cut += 97) {
      const e = expectFormatError(() => readInChunks(archive.subarray(0, cut), [64]));
      expect(e.offset).toBe(cut);
    }
  });

  it("rejects a bad checksum, naming the header's offset", () => {
    const archive = buildArchive([file("a", Buffer.from("abc")), file("b", Buffer.from("def"))]).archive;
    archive[1024 + 3] ^= 0x01; // inside the second header's name
    const e = expectFormatError(() => readAll(archive), /checksum/);
    expect(e.offset).toBe(1024);
    // Events decoded before the damage are not lost.
    expect(collect(e.events).items.map((i) => i.entry.path.toString())).toEqual(["a"]);
  });

  it("stays failed after an error", () => {
    const reader = new TarReader();
    expectFormatError(() => reader.feed(pattern(512, 3)));
    expectFormatError(() => reader.feed(small()));
    expectFormatError(() => reader.finish());
  });

  it("rejects a pax record claiming a 2^40-byte length", () => {
    const body = Buffer.from(`${2 ** 40} path=x\n`);
    const archive = Buffer.concat([member(rawHeader("PaxHeaders/x", "x", body.length), body), small()]);
    const e = expectFormatError(() => readAll(archive), /pax record length/);
    expect(e.offset).toBe(512);
  });

  it("rejects a pax header larger than the limit before buffering it", () => {
    const header = rawHeader("PaxHeaders/x", "x", 0, (b) => {
      b.fill(0, F.size[0], F.size[0] + 12);
      b[F.size[0]] = 0x80;
      b.writeUIntBE(2 ** 40, F.size[0] + 6, 6);
    });
    const reader = new TarReader();
    expectFormatError(() => reader.feed(header), /exceeds/);
    const big = rawHeader("PaxHeaders/x", "x", 17 * 1024 * 1024);
    expectFormatError(() => new TarReader().feed(big), /exceeds/);
    const longName = rawHeader("././@LongLink", "L", 10 * 1024 * 1024);
    expectFormatError(() => new TarReader().feed(longName), /exceeds/);
  });

  it("rejects absurd sizes", () => {
    const header = rawHeader("huge", "0", 0, (b) => {
      b.fill(0, F.size[0], F.size[0] + 12);
      b[F.size[0]] = 0x80;
      b.writeUIntBE(2 ** 47, F.size[0] + 4, 6); // 2^63
    });
    expectFormatError(() => new TarReader().feed(header), /size/);
    expectFormatError(() => readAll(Buffer.concat([paxMember("x", [rec("size", "99999999999999999999")]), small()])), /size/);
    expectFormatError(() => readAll(Buffer.concat([paxMember("x", [rec("path", "p".repeat(70_000))]), small()])), /limit/);
  });

  it("rejects malformed pax records", () => {
    const bad = ["12 path=abc", "x path=abc\n", "9 pathabc\n", "14 path=abc\n", "0 =\n", "3 \n"];
    for (const body of bad) {
      const b = Buffer.from(body);
      expectFormatError(() => readAll(Buffer.concat([member(rawHeader("PaxHeaders/x", "x", b.length), b), small()])));
    }
    for (const [k, v] of [["mtime", "yesterday"], ["uid", "-1"], ["GNU.sparse.map", "1,2,3"]] as const) {
      expectFormatError(() => readAll(Buffer.concat([paxMember("x", [rec(k, v)]), small()])), /pax|sparse/);
    }
  });

  it("rejects inconsistent sparse maps", () => {
    const sparse = (records: Buffer[], data: Buffer): Buffer =>
      Buffer.concat([paxMember("x", records), member(rawHeader("s", "0", data.length), data), endOfArchive()]);
    const v1 = [rec("GNU.sparse.major", "1"), rec("GNU.sparse.minor", "0"), rec("GNU.sparse.realsize", "1000")];
    const map = (text: string, extra: number): Buffer => {
      const m = Buffer.alloc(512);
      m.write(text);
      return Buffer.concat([m, Buffer.alloc(extra, 0x61)]);
    };
    expectFormatError(() => readAll(sparse(v1, map("1\n10\n20\n", 19))), /describes 20 data bytes but 19/);
    expectFormatError(() => readAll(sparse(v1, map("1\n990\n20\n", 20))), /past the end/);
    expectFormatError(() => readAll(sparse(v1, map("2\n100\n10\n50\n10\n", 20))), /unsorted/);
    expectFormatError(() => readAll(sparse(v1, map("99999999\n", 0))), /too large/);
    expectFormatError(() => readAll(sparse(v1, map("1\n1x\n", 0))), /malformed sparse map/);
    expectFormatError(() => readAll(sparse(v1, Buffer.from("1\n10\n"))), /past the member data/);
    // The good case, to show the helpers build a valid entry.
    const ok = collect(readAll(sparse(v1, map("1\n10\n20\n", 20)))).items[0]!;
    expect(ok.entry.sparse).toEqual([{ offset: 10, length: 20 }]);
    expect(ok.extents).toEqual([[10, 20]]);
  });

  it("rejects a zero block followed by more headers, and x headers with no file", () => {
    const a = small();
    expectFormatError(() => readAll(Buffer.concat([a.subarray(0, 1024), Buffer.alloc(512), a])), /zero block/);
    expectFormatError(() => readAll(Buffer.concat([paxMember("x", [rec("path", "p")]), endOfArchive()])), /extended header/);
  });

  it("rejects an archive with no end marker", () => {
    expectFormatError(() => readAll(small().subarray(0, 1024)), /end-of-archive/);
  });

  it("never loops: 1-byte feeding of damaged archives terminates", () => {
    const archive = buildArchive([file("a", pattern(2000, 4)), file("b", Buffer.alloc(0))]).archive;
    for (let i = 0; i < 2048; i += 61) {
      const damaged = Buffer.from(archive);
      damaged[i] ^= 0x5a;
      try {
        collect(readInChunks(damaged, [1]));
      } catch (e) {
        expect(e).toBeInstanceOf(TarFormatError);
      }
    }
  });
});
