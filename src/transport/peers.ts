/**
 * `data_peers`: the addresses a data connection may come from or go to, as CIDR blocks
 * ("10.0.0.0/8", "::1/128"). The matching is the runtime's (node:net BlockList).
 */
import { BlockList, isIPv4, isIPv6 } from "node:net";

export interface Cidr {
  address: string;
  prefix: number;
  family: "ipv4" | "ipv6";
}

/** "10.0.0.0/8" -> its parts; a bare address is a single host (/32 or /128). Throws on nonsense. */
export function parseCidr(text: string): Cidr {
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(text.trim());
  const address = m?.[1] ?? "";
  const family = isIPv4(address) ? "ipv4" : isIPv6(address) ? "ipv6" : undefined;
  if (!m || !family) throw new Error(`${JSON.stringify(text)} is not an address or ADDRESS/PREFIX`);
  const max = family === "ipv4" ? 32 : 128;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix > max) throw new Error(`${JSON.stringify(text)}: the prefix of an ${family} block is at most ${max}`);
  return { address, prefix, family };
}

export interface PeerFilter {
  allows(address: string | undefined): boolean;
}

/** Any address (no data_peers configured). */
export const ANY_PEER: PeerFilter = { allows: () => true };

/** A filter of the blocks given; IPv4-mapped IPv6 addresses ("::ffff:10.1.2.3") match IPv4 blocks. */
export function peerFilter(cidrs: readonly string[] | null | undefined): PeerFilter {
  if (!cidrs) return ANY_PEER;
  const list = new BlockList();
  for (const c of cidrs.map(parseCidr)) list.addSubnet(c.address, c.prefix, c.family);
  return {
    allows(address) {
      if (!address) return false;
      const a = address.startsWith("::ffff:") && isIPv4(address.slice(7)) ? address.slice(7) : address;
      if (isIPv4(a)) return list.check(a, "ipv4");
      return isIPv6(a) && list.check(a, "ipv6");
    },
  };
}
