/**
 * The Debian package, installed on this machine: it writes /etc/ndmpd, /var/lib/ndmpd and
 * /usr/sbin/ndmpd, which every other test must never see. So this file runs alone, after all the
 * others (its own vitest project with a later groupOrder: vitest.config.ts), and leaves the
 * machine as it found it.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { havePeers, IN_CI, ROOT } from "../helpers/peers.ts";
import { run } from "../helpers/run.ts";

const tools = ["dpkg-deb", "dpkg", "systemd-analyze", "man"];
const haveTools = tools.every((t) => existsSync(`/usr/bin/${t}`)) && process.getuid?.() === 0;
if (!haveTools && !IN_CI) console.warn(`skipping the .deb tests: they need root and ${tools.join(", ")}`);

describe.runIf(havePeers("binary") && (haveTools || IN_CI))("the Debian package", () => {
  const W = mkdtempSync(join(tmpdir(), "ndmpd-deb-"));
  const VERSION = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version as string;
  const DEB = join(ROOT, "dist", `ndmpd_${VERSION}_amd64.deb`);
  let installed = false;

  afterAll(async () => {
    // Whatever happened, the machine is left as it was: no package, no /etc/ndmpd, no state.
    if (installed) await run("dpkg", ["--purge", "ndmpd"]);
    rmSync(W, { recursive: true, force: true });
  });

  it("npm run package's script builds the .deb offline with what it should hold", async () => {
    const b = await run("bash", [join(ROOT, "packaging/build-deb.sh")], { timeoutMs: 120_000 });
    expect(b.code, b.stderr).toBe(0);
    expect(b.stdout.trim()).toBe(`dist/ndmpd_${VERSION}_amd64.deb`);
    const info = await run("dpkg-deb", ["--info", DEB]);
    expect(info.code).toBe(0);
    expect(info.stdout).toMatch(/ Package: ndmpd\n/);
    expect(info.stdout).toContain(` Version: ${VERSION}\n`);
    expect(info.stdout).toMatch(/ Architecture: amd64\n/);
    for (const f of ["conffiles", "postinst", "prerm", "postrm", "control"]) expect(info.stdout).toMatch(new RegExp(`\\s${f}\\s`));
    const conffiles = await run("dpkg-deb", ["--ctrl-tarfile", DEB]).then(() => run("sh", ["-c", `dpkg-deb --ctrl-tarfile '${DEB}' | tar -xO ./conffiles`]));
    expect(conffiles.stdout).toBe("/etc/ndmpd/ndmpd.toml\n");
    const contents = await run("dpkg-deb", ["--contents", DEB]);
    const files = new Map(
      contents.stdout
        .trim()
        .split("\n")
        .map((l) => l.split(/\s+/))
        .map((f) => [f[5]!, `${f[0]} ${f[1]}`] as const),
    );
    expect(files.get("./usr/sbin/ndmpd")).toBe("-rwxr-xr-x root/root");
    expect(files.get("./lib/systemd/system/ndmpd.service")).toBe("-rw-r--r-- root/root");
    expect(files.get("./etc/ndmpd/ndmpd.toml")).toBe("-rw-r--r-- root/root");
    expect(files.get("./usr/share/man/man8/ndmpd.8.gz")).toBe("-rw-r--r-- root/root");
    expect(files.get("./")).toBe("drwxr-xr-x root/root");
  });

  it("installs, its unit verifies, the installed binary checks the installed config and backs up; remove keeps the state, purge clears it", async () => {
    // Never on a machine where ndmpd's files already are: purging would delete them.
    expect((await run("dpkg", ["-s", "ndmpd"])).code, "ndmpd is already installed on this machine").not.toBe(0);
    expect(existsSync("/var/lib/ndmpd") || existsSync("/etc/ndmpd"), "/var/lib/ndmpd or /etc/ndmpd exists already").toBe(false);
    const i = await run("dpkg", ["-i", DEB], { timeoutMs: 120_000 });
    installed = true;
    expect(i.code, i.stderr + i.stdout).toBe(0);
    expect(i.stdout).toContain("the password of NDMP user 'ndmp' is in /etc/ndmpd/ndmp.secret");
    expect(statSync("/var/lib/ndmpd").mode & 0o7777).toBe(0o750);
    const secret = statSync("/etc/ndmpd/ndmp.secret");
    expect(secret.mode & 0o777).toBe(0o600);
    expect(secret.size).toBeGreaterThan(16);

    const v = await run("systemd-analyze", ["verify", "/lib/systemd/system/ndmpd.service"]);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stderr).not.toMatch(/ndmpd\.service/);

    const check = await run("/usr/sbin/ndmpd", ["config", "check", "/etc/ndmpd/ndmpd.toml"]);
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout).toContain("# /etc/ndmpd/ndmpd.toml: OK");
    expect(check.stdout).toContain('password = "********"');
    expect(check.stdout).not.toContain(readFileSync("/etc/ndmpd/ndmp.secret", "utf8").trim());

    const page = await run("man", ["-l", "/usr/share/man/man8/ndmpd.8.gz"], { env: { ...process.env, PAGER: "cat", MANWIDTH: "100" } });
    expect(page.code, page.stderr).toBe(0);
    expect(page.stdout).toContain("kill-session");

    // The first backup after installing: the packaged configuration's library, no file written.
    const env = { ...process.env };
    delete env.NDMPD_CONFIG;
    delete env.NDMPD_STATE_DIR;
    const src = join(W, "src");
    mkdirSync(join(src, "d"), { recursive: true });
    writeFileSync(join(src, "d", "f.txt"), "after install\n");
    const b = await run("/usr/sbin/ndmpd", ["backup", src], { env, timeoutMs: 60_000 });
    expect(b.code, b.stderr + b.stdout).toBe(0);
    expect(existsSync("/var/lib/ndmpd/lib0/NDMP001L8.tape")).toBe(true);

    const r = await run("dpkg", ["-r", "ndmpd"], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync("/usr/sbin/ndmpd")).toBe(false);
    expect(existsSync("/lib/systemd/system/ndmpd.service")).toBe(false);
    expect(existsSync("/var/lib/ndmpd/lib0/NDMP001L8.tape")).toBe(true); // the backups stay
    expect(readdirSync("/var/lib/ndmpd")).toContain("lib0");
    expect(existsSync("/etc/ndmpd/ndmpd.toml")).toBe(true); // a conffile stays until purge

    const p = await run("dpkg", ["--purge", "ndmpd"], { timeoutMs: 60_000 });
    expect(p.code, p.stderr).toBe(0);
    installed = false;
    expect(existsSync("/var/lib/ndmpd")).toBe(false);
    expect(existsSync("/etc/ndmpd")).toBe(false);
  });
});
