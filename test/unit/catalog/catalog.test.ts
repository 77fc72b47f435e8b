import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { JsonlCatalog, openCatalog } from "../../../src/catalog/catalog.ts";
import { havePeers, ROOT } from "../../helpers/peers.ts";
import { EXPECTED, scenario } from "./scenario.ts";

const here = fileURLToPath(new URL(".", import.meta.url));
const dirs: string[] = [];
const temp = () => {
  const d = mkdtempSync(join(tmpdir(), "ndmpd-catalog-"));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** JSON round trip: what the probe prints and what the scenario returns compare alike. */
const plain = (v: unknown) => JSON.parse(JSON.stringify(v));

describe("catalog, JSON-lines backend (Node)", () => {
  it("stores media, jobs and file history; replaces, drops, survives reopening", async () => {
    const dir = temp();
    const seen = await scenario(() => openCatalog(dir, { backend: "jsonl" }));
    expect(seen.backend).toBe("jsonl");
    expect(plain({ ...seen, backend: undefined })).toEqual(plain(EXPECTED));
  });

  it("ignores a torn last line, and compacts to what is live", async () => {
    const dir = temp();
    await scenario(() => openCatalog(dir, { backend: "jsonl" }));
    const path = join(dir, "catalog.jsonl");
    writeFileSync(path, readFileSync(path, "utf8") + '{"t":"job","j":{"jobId":99,');
    const c = new JsonlCatalog(path);
    expect(c.jobs("m-1").map((j) => j.seq)).toEqual([1]);
    const before = readFileSync(path).length;
    c.compact();
    expect(readFileSync(path).length).toBeLessThan(before);
    expect(new JsonlCatalog(path).jobs("m-1").map((j) => [j.seq, j.label])).toEqual([[1, "one"]]);
  });
});

const bunReady = havePeers("bun");

describe.runIf(bunReady)("catalog, bun:sqlite backend (a compiled binary, as ndmpd ships)", () => {
  it("gives the same answers as the JSON-lines backend", async () => {
    const dir = temp();
    const exe = join(dir, "probe");
    const build = await run(join(ROOT, "node_modules/.bin/bun"), ["build", "--compile", join(here, "probe.ts"), "--outfile", exe]);
    expect(build.code, build.stderr).toBe(0);
    expect(existsSync(exe)).toBe(true);
    const r = await run(exe, []);
    expect(r.code, r.stderr).toBe(0);
    const { durability, ...seen } = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    expect(seen.backend).toBe("bun:sqlite");
    expect(durability).toEqual({ journal: "wal", opened: 1, afterJob: 1 });
    expect({ ...seen, backend: undefined }).toEqual(plain({ ...EXPECTED, backend: undefined }));
  }, 90_000);
});

function run(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: ROOT, encoding: "utf8", timeout: 80_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, stdout, stderr });
    });
  });
}
