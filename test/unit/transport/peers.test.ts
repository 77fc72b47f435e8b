/** data_peers: CIDR blocks parsed strictly, and matched for IPv4, IPv6 and IPv4-mapped addresses. */
import { describe, expect, it } from "vitest";
import { parseCidr, peerFilter } from "../../../src/transport/peers.ts";

describe("parseCidr", () => {
  it("reads blocks and bare addresses (one host)", () => {
    expect(parseCidr("10.0.0.0/8")).toEqual({ address: "10.0.0.0", prefix: 8, family: "ipv4" });
    expect(parseCidr("::1/128")).toEqual({ address: "::1", prefix: 128, family: "ipv6" });
    expect(parseCidr("192.0.2.7")).toEqual({ address: "192.0.2.7", prefix: 32, family: "ipv4" });
    expect(parseCidr("fd00::")).toEqual({ address: "fd00::", prefix: 128, family: "ipv6" });
  });

  it("refuses what is not an address or has a prefix too long", () => {
    for (const bad of ["", "10.0.0/8", "10.0.0.0/33", "::/129", "host.example/24", "10.0.0.0/-1", "10.0.0.0/8/8"]) {
      expect(() => parseCidr(bad), bad).toThrow();
    }
  });
});

describe("peerFilter", () => {
  it("allows any address without data_peers", () => {
    const f = peerFilter(null);
    expect(f.allows("203.0.113.9")).toBe(true);
  });

  it("allows inside the blocks only, IPv4-mapped addresses as IPv4", () => {
    const f = peerFilter(["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"]);
    expect(f.allows("10.200.3.4")).toBe(true);
    expect(f.allows("11.0.0.1")).toBe(false);
    expect(f.allows("127.0.0.1")).toBe(true);
    expect(f.allows("127.0.0.2")).toBe(false);
    expect(f.allows("::ffff:10.1.1.1")).toBe(true);
    expect(f.allows("::ffff:127.0.0.2")).toBe(false);
    expect(f.allows("fd12::1")).toBe(true);
    expect(f.allows("fe80::1")).toBe(false);
    expect(f.allows(undefined)).toBe(false);
    expect(f.allows("not-an-address")).toBe(false);
  });

  it("an empty list allows nobody", () => {
    expect(peerFilter([]).allows("127.0.0.1")).toBe(false);
  });
});
