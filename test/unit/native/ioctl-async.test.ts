/**
 * Device ioctls off the event loop (src/native/ioctl-async.ts): in a binary compiled like ndmpd
 * (the build script's extra entry points, read from package.json), the calls run on the device's
 * own thread (ioctl-thread.ts), results land in the caller's memory, errnos come back as
 * NativeError, and a closed device refuses further calls. The inline form serves test doubles.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { inlineIoctl } from "../../../src/native/ioctl-async.ts";
import { NativeError } from "../../../src/native/errno.ts";
import { makeTempDir } from "../devices/tape/helpers.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../../..");
const bun = path.join(root, "node_modules/.bin/bun");

function run(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: root, encoding: "utf8", timeout: 120_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

describe("ioctl on the device's own thread", () => {
  const { dir, cleanup } = makeTempDir("ndmpd-ioctl-");
  afterAll(() => cleanup());

  it("in a binary built like ndmpd: threaded, results in our memory, errnos as NativeError, closed means closed", async () => {
    const script = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")).scripts.build as string;
    const extra = script.split(/\s+/).filter((a) => a.endsWith(".ts") && a !== "src/main.ts" && a !== "src/launch.ts");
    expect(extra).toContain("src/native/ioctl-thread.ts");
    const probe = path.join(dir, "probe");
    const build = await run(bun, ["build", "--compile", path.join(here, "ioctl-probe.ts"), ...extra.map((e) => path.join(root, e)), "--outfile", probe]);
    expect(build.code, build.stderr).toBe(0);
    const r = await run(probe, []);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split("\n").pop()!)).toEqual({
      threaded: true,
      plain: 1234,
      shared: 1234,
      error: "ENOTTY",
      many: true,
      afterClose: "the device is closed",
    });
  }, 180_000);

  it("inline (Node, test doubles): the same interface on this thread", async () => {
    const io = inlineIoctl({
      ioctl: (_fd, request, arg) => {
        if (request === 1) throw new NativeError("ioctl", 25);
        arg[0] = 42;
        return 0;
      },
    });
    const b = Buffer.alloc(1);
    expect(await io.ioctl(3, 2, b)).toBe(0);
    expect(b[0]).toBe(42);
    await expect(io.ioctl(3, 1, b)).rejects.toMatchObject({ code: "ENOTTY" });
    expect(io.threaded).toBe(false);
  });
});
