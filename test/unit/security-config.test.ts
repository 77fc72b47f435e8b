/** The security keys of the configuration: data_peers, per-user scopes, TLS, server_auth's clear text. */
import { describe, expect, it } from "vitest";
import { renderEffective } from "../../src/config-check.ts";
import { parseConfig } from "../../src/config.ts";

const user = `[[user]]\nname = "ndmp"\npassword = "pw"\n`;

describe("data_peers", () => {
  it("is any address by default, a list of CIDR blocks when set", () => {
    expect(parseConfig(user, "t.toml").dataPeers).toBeNull();
    const c = parseConfig(`[server]\ndata_peers = ["10.0.0.0/8", "::1/128", "192.0.2.7"]\n${user}`, "t.toml");
    expect(c.dataPeers).toEqual(["10.0.0.0/8", "::1/128", "192.0.2.7"]);
  });

  it("names the key and the line of a bad block", () => {
    expect(() => parseConfig(`[server]\n\ndata_peers = ["10.0.0.0/40"]\n${user}`, "t.toml")).toThrow(/t\.toml:3: server\.data_peers: .*at most 32/);
    expect(() => parseConfig(`[server]\ndata_peers = "10.0.0.0/8"\n${user}`, "t.toml")).toThrow(/server\.data_peers: must be a list/);
  });
});

describe("[[user]] scopes", () => {
  const tape = `[[tape]]\nname = "vt0"\npath = "/tmp/vt0.tape"\n`;
  it("paths, devices and read_only make a scope; a user without them has none", () => {
    const c = parseConfig(
      `${user}[[user]]\nname = "s"\npassword = "p"\npaths = ["/srv/a/", "/srv/b"]\ndevices = ["vt0"]\n[[user]]\nname = "r"\npassword = "p"\nread_only = true\n${tape}`,
      "t.toml",
    );
    expect(c.scopes.get("ndmp")).toBeUndefined();
    expect(c.scopes.get("s")).toEqual({ paths: ["/srv/a", "/srv/b"], devices: ["vt0"], readOnly: false });
    expect(c.scopes.get("r")).toEqual({ readOnly: true });
  });

  it("refuses relative paths, unknown devices and a read_only that is not a boolean", () => {
    expect(() => parseConfig(`[[user]]\nname = "s"\npassword = "p"\npaths = ["srv"]\n`, "t.toml")).toThrow(/user\[0\]\.paths: must be a list of absolute paths/);
    expect(() => parseConfig(`[[user]]\nname = "s"\npassword = "p"\ndevices = ["vt9"]\n${tape}`, "t.toml")).toThrow(/user\[0\]\.devices: no \[\[tape\]\] or \[\[changer\]\] named vt9/);
    expect(() => parseConfig(`[[user]]\nname = "s"\npassword = "p"\nread_only = "yes"\n`, "t.toml")).toThrow(/read_only: must be true or false/);
  });
});

describe("[server_auth] allow_text", () => {
  it("is off unless set to true", () => {
    const sa = `[server_auth]\nid = "f"\npassword = "s"\n`;
    expect(parseConfig(`${user}${sa}`, "t.toml").serverAuth?.allowText).toBe(false);
    expect(parseConfig(`${user}${sa}allow_text = true\n`, "t.toml").serverAuth?.allowText).toBe(true);
    expect(() => parseConfig(`${user}${sa}allow_text = 1\n`, "t.toml")).toThrow(/server_auth\.allow_text: must be true or false/);
  });
});

describe("[tls]", () => {
  it("needs listen, a readable cert and key; require_client_cert needs client_ca; cert_cn users may have no password", async () => {
    const { mkdtempSync, rmSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { makeCerts } = await import("../helpers/certs.ts");
    const dir = mkdtempSync(join(tmpdir(), "ndmpd-tlscfg-"));
    try {
      const c = await makeCerts(dir);
      const tls = `[tls]\nlisten = "127.0.0.1:30000"\ncert = "${c.serverCert}"\nkey = "${c.serverKey}"\n`;
      const cfg = parseConfig(`${user}[[user]]\nname = "dma"\ncert_cn = "dma-1"\n${tls}client_ca = "${c.ca}"\nrequire_client_cert = true\n`, "t.toml");
      expect(cfg.tls).toEqual({
        listen: [{ host: "127.0.0.1", port: 30000 }],
        cert: c.serverCert,
        key: c.serverKey,
        clientCa: c.ca,
        requireClientCert: true,
        handshakeTimeoutMs: 10_000,
      });
      expect(cfg.certUsers.get("dma-1")).toBe("dma");
      expect(parseConfig(`${user}${tls}peer_ca = "${c.ca}"\n`, "t.toml").tls?.peerCa).toBe(c.ca);
      expect(cfg.users.get("dma")?.length).toBe(0);
      // `config check` shows all of it, and what it shows reads back the same.
      const again = parseConfig(renderEffective(cfg), "effective.toml");
      expect(again.tls).toEqual(cfg.tls);
      expect(again.certUsers).toEqual(cfg.certUsers);
      expect(() => parseConfig(`${user}${tls}require_client_cert = true\n`, "t.toml")).toThrow(/tls\.require_client_cert: needs client_ca/);
      expect(() => parseConfig(`${user}[tls]\ncert = "${c.serverCert}"\nkey = "${c.serverKey}"\n`, "t.toml")).toThrow(/tls\.listen: needs at least one/);
      expect(() => parseConfig(`${user}${tls.replace(c.serverKey, "/nonexistent.key")}`, "t.toml")).toThrow(/tls\.key: cannot read/);
      // A key that does not belong to the certificate.
      expect(() => parseConfig(`${user}${tls.replace(c.serverKey, c.clientKey)}`, "t.toml")).toThrow(/tls\.cert: the certificate, key or CA cannot be used/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
