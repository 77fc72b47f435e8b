/** TCP data connections: NDMP's IPv4 address form, the one-shot listener, port ranges, connecting. */
import { connect, createServer, type Server, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { peerFilter } from "../../../src/transport/peers.ts";
import { allowedAddrs, connectData, ipToU32, ipv4Of, listenData, tcpAddr, u32ToIp } from "../../../src/transport/tcp.ts";

/** Resolves when the peer closes the socket (a refusal: the server accepted, then dropped it). */
function closedByPeer(s: Socket): Promise<void> {
  s.on("error", () => {});
  s.resume();
  return new Promise((r) => s.once("close", () => r()));
}

function tryConnect(port: number, localAddress?: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port, localAddress });
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

function serverOn(port = 0): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen({ host: "127.0.0.1", port }, () => resolve(s));
  });
}

describe("NDMP IPv4 addresses", () => {
  it("puts the first octet in the most significant byte, both ways", () => {
    expect(ipToU32("127.0.0.1")).toBe(0x7f000001);
    expect(ipToU32("255.254.253.252")).toBe(0xfffefdfc);
    expect(u32ToIp(0xc0a80a01)).toBe("192.168.10.1");
    for (const ip of ["0.0.0.0", "10.1.2.3", "255.255.255.255"]) expect(u32ToIp(ipToU32(ip))).toBe(ip);
    expect(tcpAddr("10.0.0.1", 10000)).toEqual({ ip_addr: 0x0a000001, port: 10000, addr_env: [] });
  });

  it("takes IPv4 from plain and IPv4-mapped IPv6 socket addresses, nothing else", () => {
    expect(ipv4Of("192.0.2.7")).toBe("192.0.2.7");
    expect(ipv4Of("::ffff:192.0.2.7")).toBe("192.0.2.7");
    expect(ipv4Of("::1")).toBeUndefined();
    expect(ipv4Of("fe80::1")).toBeUndefined();
    expect(ipv4Of(undefined)).toBeUndefined();
  });
});

describe("listenData", () => {
  it("binds the address the DMA reached us on, advertises it, and accepts exactly one connection", async () => {
    const l = await listenData("::ffff:127.0.0.1", { ports: null });
    expect(l.addrs).toHaveLength(1);
    expect(l.addrs[0]!.ip_addr).toBe(0x7f000001);
    const port = l.addrs[0]!.port;
    const client = await tryConnect(port);
    const accepted = await l.accepted;
    expect(accepted.remotePort).toBe(client.localPort);
    // Paused on accept: nothing is read until the mover starts its pump.
    expect(accepted.isPaused()).toBe(true);
    accepted.resume();
    const got = new Promise<string>((r) => accepted.once("data", (c: Buffer) => r(c.toString())));
    client.write("first bytes");
    expect(await got).toBe("first bytes");
    // The listener is gone after the first connection.
    await expect(tryConnect(port)).rejects.toMatchObject({ code: "ECONNREFUSED" });
    client.destroy();
    accepted.destroy();
  });

  it("close() before anyone connects rejects `accepted` and frees the port", async () => {
    const l = await listenData("127.0.0.1", { ports: null });
    const port = l.addrs[0]!.port;
    l.close();
    await expect(l.accepted).rejects.toThrow(/closed/);
    await expect(tryConnect(port)).rejects.toMatchObject({ code: "ECONNREFUSED" });
  });

  it("binds inside the configured port range, and says so when every port in it is taken", async () => {
    const probe = await serverOn();
    const base = (probe.address() as { port: number }).port;
    probe.close();
    const range = { from: base, to: base + 1 };
    const a = await listenData("127.0.0.1", { ports: range });
    const b = await listenData("127.0.0.1", { ports: range });
    const ports = [a.addrs[0]!.port, b.addrs[0]!.port].sort();
    expect(ports).toEqual([base, base + 1]);
    await expect(listenData("127.0.0.1", { ports: range })).rejects.toThrow(new RegExp(`no free port in ${base}-${base + 1}`));
    a.close();
    b.close();
  });

  it("drops a connection from outside data_peers without consuming the listen; the real peer gets in", async () => {
    const refused: string[] = [];
    const l = await listenData("127.0.0.1", { ports: null, peers: peerFilter(["127.0.0.1/32"]), refused: (p) => refused.push(p) });
    const port = l.addrs[0]!.port;
    // 127.0.0.2 is another address of lo (all of 127/8 is local): a stranger on this host.
    const stranger = await tryConnect(port, "127.0.0.2");
    const strangerPort = stranger.localPort;
    await closedByPeer(stranger);
    expect(refused).toEqual([`127.0.0.2:${strangerPort}`]);
    const real = await tryConnect(port, "127.0.0.1");
    const accepted = await l.accepted;
    expect(accepted.remoteAddress).toBe("127.0.0.1");
    expect(accepted.remotePort).toBe(real.localPort);
    await expect(tryConnect(port)).rejects.toMatchObject({ code: "ECONNREFUSED" });
    real.destroy();
    accepted.destroy();
  });

  it("serves only the first of connections accepted together; the others are closed", async () => {
    const l = await listenData("127.0.0.1", { ports: null });
    const port = l.addrs[0]!.port;
    const [a, b] = await Promise.all([tryConnect(port), tryConnect(port).catch(() => undefined)]);
    const accepted = await l.accepted;
    const [served, other] = accepted.remotePort === a.localPort ? [a, b] : [b, a];
    expect(served).toBeDefined();
    // The second one was either refused by the kernel or accepted and dropped at once.
    if (other) await closedByPeer(other);
    served!.destroy();
    accepted.destroy();
  });

  it("with an IPv6 control connection, listens on IPv4 and advertises at least one address", async () => {
    const l = await listenData("::1", { ports: null });
    expect(l.addrs.length).toBeGreaterThan(0);
    for (const a of l.addrs) expect(a.port).toBe(l.addrs[0]!.port);
    const c = await tryConnect(l.addrs[0]!.port); // 0.0.0.0 includes loopback
    (await l.accepted).destroy();
    c.destroy();
  });
});

describe("connectData", () => {
  it("data_peers also limits where DATA_CONNECT and MOVER_CONNECT may go", () => {
    const addrs = [tcpAddr("10.1.2.3", 5000), tcpAddr("127.0.0.1", 5001)];
    expect(allowedAddrs(addrs, peerFilter(["127.0.0.0/8"]))).toEqual([addrs[1]]);
    expect(allowedAddrs(addrs, peerFilter(null))).toEqual(addrs);
    expect(allowedAddrs(addrs, peerFilter(["192.168.0.0/16"]))).toEqual([]);
  });

  it("tries the addresses in order and returns the first that answers", async () => {
    const dead = await serverOn();
    const deadPort = (dead.address() as { port: number }).port;
    await new Promise((r) => dead.close(r));
    const live = await serverOn();
    const livePort = (live.address() as { port: number }).port;
    const accepted = new Promise<Socket>((r) => live.once("connection", r));
    const s = await connectData([tcpAddr("127.0.0.1", deadPort), tcpAddr("127.0.0.1", livePort)]);
    expect(s.remotePort).toBe(livePort);
    (await accepted).destroy();
    s.destroy();
    live.close();
  });

  it("fails with the last error when nothing answers, and with a clear error for no address", async () => {
    const dead = await serverOn();
    const deadPort = (dead.address() as { port: number }).port;
    await new Promise((r) => dead.close(r));
    await expect(connectData([tcpAddr("127.0.0.1", deadPort)])).rejects.toMatchObject({ code: "ECONNREFUSED" });
    await expect(connectData([])).rejects.toThrow(/no address/);
  });

  it("gives up after its timeout on an address that never answers", async () => {
    // 192.0.2.0/24 is TEST-NET-1: packets go nowhere (or fail at once without a route).
    const t0 = Date.now();
    await expect(connectData([tcpAddr("192.0.2.1", 9)], 300)).rejects.toThrow();
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});
