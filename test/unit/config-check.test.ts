/**
 * `ndmpd config check`: every problem of a file at once (each with its line and key), the
 * effective configuration with every secret masked, and `config example`.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { checkConfigFile, configCheckCommand, renderEffective } from "../../src/config-check.ts";
import { parseConfig, parseToml } from "../../src/config.ts";

const dir = mkdtempSync(join(tmpdir(), "ndmpd-config-check-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string, mode = 0o600): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  chmodSync(p, mode);
  return p;
}

describe("config check", () => {
  it("lists every problem of the file, each once, with its line and key", () => {
    const p = file(
      "bad.toml",
      `[server]\nlisten = "nope"\nmax_sessions = 0\nbogus = 1\n[auth]\nmethods = ["x"]\n[[tape]]\nname = "t"\npath = "rel"\n[metrics]\nlisten = "x"\n`,
    );
    const r = checkConfigFile(p, {});
    expect(r.config).toBeUndefined();
    expect(r.problems).toEqual([
      `${p}:4: server.bogus: unknown key (known here: listen, versions, state_dir, data_port_range, data_peers, max_sessions, max_message_size, log_level, log_format, auth_failure_delay_ms)`,
      `${p}:2: server.listen: "nope" is not ADDR:PORT (IPv6 as [ADDR]:PORT)`,
      `${p}:3: server.max_sessions: must be an integer from 1 to 100000`,
      `${p}:6: auth.methods: must be a non-empty list of "md5", "text", "none"`,
      `${p}:11: metrics.listen: "x" is not ADDR:PORT (IPv6 as [ADDR]:PORT)`,
      `${p}:9: tape[0].path: must be an absolute path`,
    ]);
  });

  it("a syntax error and an unreadable file are one problem each", () => {
    expect(checkConfigFile(file("syntax.toml", "[server\n"), {}).problems).toHaveLength(1);
    expect(checkConfigFile(join(dir, "missing.toml"), {}).problems[0]).toMatch(/missing\.toml: cannot read/);
  });

  it("the file's own checks still apply: a password readable by everyone", () => {
    const p = file("open.toml", `[[user]]\nname = "a"\npassword = "pw"\n`, 0o644);
    expect(checkConfigFile(p, {}).problems[0]).toMatch(/holds a password but is readable by everyone/);
  });

  it("prints the effective configuration, defaults filled in, secrets masked; it parses back to the same", () => {
    const p = file("good.toml", `[server]\nstate_dir = "${dir}/st"\n[[user]]\nname = "a"\npassword = "s3cret-pw"\n[server_auth]\nid = "f1"\npassword = "other-secret"\n[[tape]]\nname = "t0"\npath = "${dir}/t0.tape"\n`);
    let out = "";
    let err = "";
    const code = configCheckCommand(p, false, (s) => (out += s), (s) => (err += s), {});
    expect(code, err).toBe(0);
    expect(out).toContain(`# ${p}: OK`);
    expect(out).not.toContain("s3cret-pw");
    expect(out).not.toContain("other-secret");
    expect(out).toContain('password = "********"');
    expect(out).toContain("max_sessions = 64");
    expect(out).toContain(`socket = "${dir}/st/admin.sock"`);
    const cfg = checkConfigFile(p, {}).config!;
    const again = parseConfig(renderEffective(cfg), "effective.toml", {});
    expect({ ...again, users: [...again.users.keys()], serverAuth: again.serverAuth?.id }).toEqual({ ...cfg, users: [...cfg.users.keys()], serverAuth: cfg.serverAuth?.id });
  });

  it("exit 2 and a count when there are problems; --json prints the effective configuration as JSON", () => {
    let err = "";
    expect(configCheckCommand(file("b2.toml", "[server]\nmax_sessions = -1\nlog_level = 3\n"), false, () => {}, (s) => (err += s), {})).toBe(2);
    // Two bad keys, and (no [[user]], no NDMPD_PASSWORD) nobody could log in.
    expect(err).toMatch(/b2\.toml: no \[\[user\]\], so no DMA can log in .*or set NDMPD_PASSWORD/);
    expect(err).toMatch(/3 problems in .*b2\.toml\n$/);
    let out = "";
    expect(configCheckCommand(file("g2.toml", `[server]\nstate_dir = "${dir}/s2"\n`), true, (s) => (out += s), () => {}, { NDMPD_PASSWORD: "x" })).toBe(0);
    const j = JSON.parse(out);
    expect(j.config.server.state_dir).toBe(`${dir}/s2`);
    expect(parseToml(renderEffective(parseConfig("", "e", { NDMPD_PASSWORD: "x" })), "x")).toBeTruthy();
  });
});
