import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, defaultConfig, loadConfig, locate, loginProblem, parseConfig, parseListen, parseSize } from "../../src/config.ts";

const dir = mkdtempSync(join(tmpdir(), "ndmpd-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string, mode = 0o600): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  chmodSync(p, mode);
  return p;
}

describe("configuration", () => {
  it("embedded defaults are loopback-only with user ndmp", () => {
    const c = defaultConfig({ NDMPD_PASSWORD: "s3" });
    expect(c.listen).toEqual([{ host: "127.0.0.1", port: 10000 }]);
    expect(c.users.get("ndmp")?.toString()).toBe("s3");
    expect(c.generatedPassword).toBeUndefined();
    const r = defaultConfig({});
    expect(r.generatedPassword).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(r.users.get("ndmp")?.toString()).toBe(r.generatedPassword);
  });

  it("parses a full file", () => {
    const pwfile = write("pw", "filesecret\n", 0o600);
    const c = parseConfig(
      `
[server]
listen = ["0.0.0.0:10000", "[::1]:10001"]
state_dir = "/srv/state"
data_port_range = "20000-20099"
max_sessions = 8
max_message_size = "4MiB"
log_level = "debug"
log_format = "json"

[identity]
vendor = "ACME"
product = "Filer"
revision = "9.9"

[auth]
methods = ["md5"]

[[user]]
name = "ndmp"
password = "inline"

[[user]]
name = "backup"
password_file = "${pwfile}"

[[user]]
name = "env"
password_env = "MY_PW"
`,
      "t.toml",
      { MY_PW: "fromenv" },
    );
    expect(c.listen).toEqual([{ host: "0.0.0.0", port: 10000 }, { host: "::1", port: 10001 }]);
    expect(c.dataPorts).toEqual({ from: 20000, to: 20099 });
    expect(c.maxSessions).toBe(8);
    expect(c.maxMessageSize).toBe(4 * 1024 * 1024);
    expect(c.identity).toEqual({ vendor: "ACME", product: "Filer", revision: "9.9" });
    expect(c.authMethods).toEqual(["md5"]);
    expect([...c.users].map(([k, v]) => [k, v.toString()])).toEqual([
      ["ndmp", "inline"],
      ["backup", "filesecret"],
      ["env", "fromenv"],
    ]);
    expect(c.logFormat).toBe("json");
  });

  it("names the key and the line of a bad value", () => {
    const src = `# comment\n[server]\nlisten = "127.0.0.1:10000"\nmax_sessions = "lots"\n`;
    expect(() => parseConfig(src, "f.toml")).toThrow("f.toml:4: server.max_sessions: must be an integer");
    expect(() => parseConfig(`[server]\nlistn = "x"\n`, "f.toml")).toThrow(/f.toml:2: server.listn: unknown key/);
    expect(() => parseConfig(`[[user]]\nname = "a"\npassword = "x"\n[[user]]\nname = "b"\n`, "f.toml")).toThrow(
      /f.toml:4: user\[1\]: needs exactly one of password/,
    );
    expect(() => parseConfig(`[server]\nlisten = "nowhere"\n`, "f.toml")).toThrow(/f.toml:2: server.listen: "nowhere" is not ADDR:PORT/);
    expect(() => parseConfig(`[server\n`, "f.toml")).toThrow(/^f.toml:1: /);
  });

  it("[limits]: safe defaults, each key parsed and bounded", () => {
    const d = parseConfig(`[[user]]\nname = "a"\npassword = "x"\n`, "f.toml").limits;
    expect(d).toEqual({ authTimeoutS: 30, preAuthMessageSize: 65536, maxUnauthenticated: 32, maxUnauthenticatedPerSource: 8, authFailureDelayMaxMs: 10_000, idleTimeoutS: 0, maxNlist: 1_000_000 });
    const l = parseConfig(
      `[limits]\nauth_timeout_s = 5\npreauth_max_message_size = "16KiB"\nmax_unauthenticated = 3\nmax_unauthenticated_per_source = 1\nauth_failure_delay_max_ms = 0\nidle_timeout_s = 600\nmax_nlist = 10\n`,
      "f.toml",
      { NDMPD_PASSWORD: "x" },
    ).limits;
    expect(l).toEqual({ authTimeoutS: 5, preAuthMessageSize: 16384, maxUnauthenticated: 3, maxUnauthenticatedPerSource: 1, authFailureDelayMaxMs: 0, idleTimeoutS: 600, maxNlist: 10 });
    expect(() => parseConfig(`[limits]\nauth_timeout_s = 0\n`, "f.toml")).toThrow(/f.toml:2: limits.auth_timeout_s: must be an integer from 1/);
    expect(() => parseConfig(`[limits]\npreauth_max_message_size = "1GiB"\n`, "f.toml")).toThrow(/limits.preauth_max_message_size/);
    expect(() => parseConfig(`[limits]\nmax_unauthenticated = 0\n`, "f.toml")).toThrow(/limits.max_unauthenticated/);
  });

  it("refuses a world-readable file that holds a password, and a world-readable password_file", () => {
    const p = write("open.toml", `[[user]]\nname = "ndmp"\npassword = "x"\n`, 0o644);
    expect(() => loadConfig(p)).toThrow(/readable by everyone/);
    chmodSync(p, 0o640);
    expect(loadConfig(p).users.get("ndmp")?.toString()).toBe("x");
    const pw = write("open-pw", "x", 0o644);
    const q = write("q.toml", `[[user]]\nname = "ndmp"\npassword_file = "${pw}"\n`, 0o644);
    expect(() => loadConfig(q)).toThrow(ConfigError);
  });

  it("versions: both 4 and 3 by default, offered highest first; a subset; nothing else", () => {
    expect(defaultConfig({ NDMPD_PASSWORD: "s3" }).versions).toEqual([4, 3]);
    expect(parseConfig(`[server]\nversions = [3, 4, 3]\n`, "v.toml", { NDMPD_PASSWORD: "x" }).versions).toEqual([4, 3]);
    expect(parseConfig(`[server]\nversions = [3]\n`, "v.toml", { NDMPD_PASSWORD: "x" }).versions).toEqual([3]);
    expect(() => parseConfig(`[server]\nversions = [2, 4]\n`, "v.toml", { NDMPD_PASSWORD: "x" })).toThrow(/v.toml:2: server.versions: must be a non-empty list of 4, 3/);
    expect(() => parseConfig(`[server]\nversions = []\n`, "v.toml", { NDMPD_PASSWORD: "x" })).toThrow(/server.versions/);
  });

  it("helpers: listen addresses, sizes, locate", () => {
    expect(parseListen("[::]:10000")).toEqual({ host: "::", port: 10000 });
    expect(() => parseListen("1.2.3.4:70000")).toThrow();
    expect(parseListen("127.0.0.1:0").port).toBe(0);
    expect(parseSize("1.5KiB")).toBe(1536);
    expect(parseSize("x")).toBeUndefined();
    expect(locate(`[a]\nx = 1\n[[b]]\ny = 2\n[[b]]\ny = 3\n`, ["b", 1, "y"])).toBe(6);
  });
});

describe("embedded defaults and the environment", () => {
  it("treats an empty NDMPD_PASSWORD as none and generates a password", () => {
    const c = defaultConfig({ NDMPD_PASSWORD: "" });
    expect(c.generatedPassword).toBeDefined();
    expect(c.users.get("ndmp")!.length).toBeGreaterThan(0);
  });
});

describe("a file without [[user]]", () => {
  it("has no users (so loginProblem names the file), or user ndmp with NDMPD_PASSWORD; methods [\"none\"] need none", () => {
    const none = parseConfig("[server]\n", "/etc/x.toml", {});
    expect(none.users.size).toBe(0);
    expect(loginProblem(none, "/etc/x.toml")).toMatch(/^\/etc\/x\.toml: no \[\[user\]\], so no DMA can log in \(auth\.methods = md5, text need one\)/);
    const env = parseConfig("[server]\n", "/etc/x.toml", { NDMPD_PASSWORD: "pw" });
    expect([...env.users].map(([k, v]) => [k, v.toString()])).toEqual([["ndmp", "pw"]]);
    expect(loginProblem(env, "x")).toBeUndefined();
    expect(loginProblem(parseConfig('[auth]\nmethods = ["none"]\n', "x", {}), "x")).toBeUndefined();
    expect(loginProblem(parseConfig('[auth]\nmethods = ["md5"]\n', "x", {}), "x")).toMatch(/auth\.methods = md5 need one/);
    expect(loginProblem(parseConfig('[[user]]\nname = "a"\npassword = "b"\n', "x", {}), "x")).toBeUndefined();
  });
});
