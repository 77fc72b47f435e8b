/**
 * The embedded library (no configuration file): where it lives, its size, and that a file
 * written by the admin replaces it.
 */
import { statfsSync } from "node:fs";
import { tmpdir } from "node:os";
import { describe, expect, it } from "vitest";
import { defaultConfig, embeddedDevices, loadConfigOrDefault, parseConfig } from "../../src/config.ts";

describe("the embedded library", () => {
  it("is one drive vt0 in a 4-slot virtual library lib0 under the state directory, autoloaded", () => {
    const c = defaultConfig({ NDMPD_PASSWORD: "x", NDMPD_STATE_DIR: "/tmp/somewhere/state" });
    expect(c.stateDir).toBe("/tmp/somewhere/state");
    expect(c.tapes).toMatchObject([{ name: "vt0", type: "virtual", changer: "lib0" }]);
    expect(c.tapes[0]!.path).toBeUndefined();
    expect(c.changers).toMatchObject([{ name: "lib0", type: "virtual", path: "/tmp/somewhere/state/lib0", slots: 4, drives: ["vt0"], autoload: true }]);
    expect(c.admin.socket).toBe("/tmp/somewhere/state/admin.sock");
  });

  it("gives each cartridge at most 90% of the free space where it will be, between 64 MiB and 1 TiB", () => {
    const s = statfsSync(tmpdir());
    const free = Number(s.bavail) * Number(s.bsize);
    const cap = embeddedDevices(`${tmpdir()}/not-yet/state`).changers[0]!.capacity!;
    expect(cap).toBeGreaterThanOrEqual(64 * 2 ** 20);
    expect(cap).toBeLessThanOrEqual(Math.max(64 * 2 ** 20, Math.min(2 ** 40, free * 0.9)));
    expect(cap % 2 ** 20).toBe(0);
  });

  it("is not there when a configuration file is: the file names its own devices", () => {
    const c = parseConfig(`[[user]]\nname = "u"\npassword = "p"\n`, "f.toml", {});
    expect(c.tapes).toEqual([]);
    expect(c.changers).toEqual([]);
  });

  it("the CLI reads a named file, or $NDMPD_CONFIG, before falling back to it", () => {
    expect(() => loadConfigOrDefault("/nonexistent/ndmpd.toml", {})).toThrow(/cannot read/);
    expect(() => loadConfigOrDefault(undefined, { NDMPD_CONFIG: "/nonexistent/x.toml" })).toThrow(/cannot read/);
  });
});
