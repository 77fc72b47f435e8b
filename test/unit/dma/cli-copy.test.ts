/** The operands of `ndmpd remote copy` and `remote duplicate`. */
import { describe, expect, it } from "vitest";
import { parseDrive, parseEnd, sameServer } from "../../../src/dma/cli-copy.ts";

describe("remote copy and duplicate operands", () => {
  it("HOST[:PORT]:/PATH splits at the first ':/' (IPv6 in brackets too)", () => {
    expect(parseEnd("filer1:/srv/a", "x")).toEqual({ where: "filer1", path: "/srv/a" });
    expect(parseEnd("127.0.0.1:10002:/srv/a:b", "x")).toEqual({ where: "127.0.0.1:10002", path: "/srv/a:b" });
    expect(parseEnd("[::1]:10000:/x", "x")).toEqual({ where: "[::1]:10000", path: "/x" });
    expect(() => parseEnd("filer1:srv", "the source")).toThrow(/the source must be HOST/);
    expect(() => parseEnd(":/srv", "x")).toThrow(/HOST/);
  });

  it("HOST[:PORT]/DRIVE: the drive is everything after the first '/' (ndmjob's tapes are paths)", () => {
    expect(parseDrive("tapehost/nst0", "x")).toEqual({ where: "tapehost", device: "nst0" });
    expect(parseDrive("127.0.0.1:10001//tmp/w/t.tape", "x")).toEqual({ where: "127.0.0.1:10001", device: "/tmp/w/t.tape" });
    expect(() => parseDrive("tapehost", "--to")).toThrow(/--to must be/);
    expect(() => parseDrive("tapehost/", "--to")).toThrow(/--to must be/);
  });

  it("one server is one server whether or not the default port is spelled out", () => {
    expect(sameServer("filer1", "filer1:10000")).toBe(true);
    expect(sameServer("127.0.0.1:10000", "127.0.0.1:10002")).toBe(false);
  });
});
