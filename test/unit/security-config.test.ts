/** The security keys of the configuration: data_peers, per-user scopes, TLS, server_auth's clear text. */
import { describe, expect, it } from "vitest";
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
