/**
 * The documentation data (src/doc) against the code: every command the CLI dispatches and every
 * key the configuration parser knows appear in the man page, `man -l` renders it, the example
 * file is a valid configuration, and --help is rendered from the same entries.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../src/config.ts";
import { COMMANDS } from "../../src/doc/commands.ts";
import { BUTYPES } from "../../src/engine/butypes.ts";
import { CONFIG_TABLES, renderExample } from "../../src/doc/config-keys.ts";
import { NDMP_ENV } from "../../src/doc/environment.ts";
import { commandHelp, mainHelp, manPage } from "../../src/doc/render.ts";

/** The keys the parser accepts in a table, read from its "unknown key (known here: ...)" message. */
function knownKeys(header: string): string[] {
  try {
    parseConfig(`${header}\nzz_not_a_key = 1\n`, "t.toml", { NDMPD_PASSWORD: "x" });
  } catch (e) {
    const m = /known here: ([^)]*)\)/.exec((e as ConfigError).message);
    if (m) return m[1]!.split(", ");
    throw e;
  }
  throw new Error(`${header}: an unknown key was accepted`);
}

const man = manPage();

describe("one source for --help and ndmpd(8)", () => {
  it("every top-level table and every key the parser knows is documented in the man page", () => {
    const tables = knownKeys("");
    expect(tables.sort()).toEqual(CONFIG_TABLES.map((t) => t.name).sort());
    for (const t of CONFIG_TABLES) {
      const keys = knownKeys(t.array ? `[[${t.name}]]` : `[${t.name}]`);
      expect(t.keys.map((k) => k.key).sort(), t.name).toEqual([...keys].sort());
      for (const k of keys) expect(man, `${t.name}.${k}`).toContain(`.B ${t.name}.${k}\n`);
    }
  });

  it("every command of the CLI has an entry, shown in `ndmpd help`, its --help and the man page", () => {
    // The dispatcher's cases in src/main.ts are the commands that exist.
    const src = spawnSync("sed", ["-n", "/export async function main/,/^}/p", "src/main.ts"], { encoding: "utf8" }).stdout;
    const cases = [...src.matchAll(/case "([a-z][a-z-]*)":/g)].map((m) => m[1]!);
    expect(cases.length).toBeGreaterThan(10);
    const documented = COMMANDS.map((c) => c.name);
    for (const c of cases) expect(documented, c).toContain(c);
    for (const c of COMMANDS) {
      expect(mainHelp()).toContain(`  ${c.name} `);
      expect(commandHelp(c.name)).toMatch(new RegExp(`^Usage: ndmpd ${c.name}`));
      expect(man).toContain(`.SS ${c.name.replace(/-/g, "\\-")}\n`);
    }
  });

  it("documents the data service's NDMP environment, exit codes and examples", () => {
    for (const e of NDMP_ENV) expect(man).toContain(`.B ${e.flags}\n`);
    expect(man).toContain(".SH EXIT STATUS");
    expect(man).toContain(".SH EXAMPLES");
    expect(man).toContain(".SH ENVIRONMENT");
  });

  it("man -l renders the page, with every command and key in the text", () => {
    const dir = mkdtempSync(join(tmpdir(), "ndmpd-man-"));
    try {
      const f = join(dir, "ndmpd.8");
      writeFileSync(f, man);
      const r = spawnSync("man", ["-l", f], { encoding: "utf8", env: { ...process.env, MANWIDTH: "100", MAN_KEEP_FORMATTING: "", PAGER: "cat" } });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toBe("");
      const text = r.stdout.replace(/.\x08/g, ""); // overstrike bold
      expect(text).toMatch(/^NDMPD\(8\)/);
      for (const c of COMMANDS) expect(text).toContain(`ndmpd ${c.synopsis[0]!.split(" ")[0]}`);
      for (const t of CONFIG_TABLES) for (const k of t.keys) expect(text).toContain(`${t.name}.${k.key}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("`ndmpd config example` is a valid configuration with every key of the documentation", () => {
    const text = renderExample("9.9.9");
    // The password file exists once the package is installed; here an inline one stands in.
    const cfg = parseConfig(text.replace('password_file = "/etc/ndmpd/ndmp.secret"', 'password = "pw"'), "example.toml", {});
    expect(cfg.listen).toEqual([{ host: "127.0.0.1", port: 10000 }]);
    expect(cfg.tapes.map((t) => t.name)).toEqual(["vt0"]);
    expect(cfg.changers.map((c) => [c.name, c.drives])).toEqual([["lib0", ["vt0"]]]);
    expect(cfg.admin.socket).toBe("/run/ndmpd/admin.sock");
    expect(cfg.metrics).toBeUndefined();
    for (const t of CONFIG_TABLES) for (const k of t.keys) expect(text).toMatch(new RegExp(`^(# )?${k.key} = `, "m"));
  });
});

describe("the default environment of CONFIG_GET_BUTYPE_INFO", () => {
  it("lists only variables the man page documents (each one honoured: see its text)", () => {
    const documented = new Set(NDMP_ENV.flatMap((o) => o.flags.split(/[ ,|]+/)));
    const advertised = [...new Set(BUTYPES.flatMap((b) => b.defaultEnv.map(([k]) => k)))];
    expect(advertised.filter((k) => !documented.has(k))).toEqual([]);
    // Advertised once and never honoured; gone.
    expect(advertised).not.toContain("EXTRACT");
  });
});
