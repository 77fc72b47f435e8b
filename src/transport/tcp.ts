/**
 * TCP data connections (digest §7.1): the listening side of DATA/MOVER LISTEN and the
 * connecting side of DATA/MOVER CONNECT, with NDMP's IPv4 address form.
 */
import { createServer, connect, isIPv4, type Server, type Socket } from "node:net";
import { networkInterfaces } from "node:os";
import { ErrorCode } from "../protocol/codes.ts";
import type { TcpAddr } from "../protocol/xdr/v4.ts";
import { Refusal } from "../security/refusal.ts";
import { ANY_PEER, type PeerFilter } from "./peers.ts";
import { secureAccepted, secureConnected, type DataTls } from "./tls.ts";

/** "1.2.3.4" -> 0x01020304 (the first octet is the most significant byte, as on the wire). */
export function ipToU32(ip: string): number {
  const p = ip.split(".").map(Number);
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

export function u32ToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join(".");
}

/** An IPv4 address from a socket address, unwrapping IPv4-mapped IPv6 ("::ffff:1.2.3.4"). */
export function ipv4Of(address: string | undefined): string | undefined {
  if (!address) return undefined;
  const a = address.startsWith("::ffff:") ? address.slice(7) : address;
  return isIPv4(a) ? a : undefined;
}

/** Addresses a DATA_CONNECT / MOVER_CONNECT may list: each is tried in turn, with a timeout each. */
export const MAX_CONNECT_ADDRS = 16;

export function tcpAddr(ip: string, port: number): TcpAddr {
  return { ip_addr: ipToU32(ip), port, addr_env: [] };
}

export interface DataListener {
  /** The addresses to hand to the peer, best first. */
  addrs: TcpAddr[];
  /** Resolves with the first connection; the listener then closes (one connection only). */
  accepted: Promise<Socket>;
  /**
   * Resolves once a connection the kernel has already completed has been taken in (`accepted`
   * has resolved and its handlers have run): a request that depends on the state must see
   * the connection the peer has made, not the LISTEN we would report before our next look.
   */
  pending(): Promise<void>;
  close(): void;
}

/** One turn of the event loop: the I/O that is ready now has been handled when it resolves. */
const turn = () => new Promise<void>((r) => setImmediate(r));

export interface ListenOptions {
  /** Ports to bind in (data_port_range); null = any ephemeral port. */
  ports: { from: number; to: number } | null;
  /** Who may connect (data_peers); default anyone. */
  peers?: PeerFilter;
  /** Told of each connection from outside `peers` (or failing `tls`), dropped while the listen goes on. */
  refused?: (peer: string, why: string) => void;
  /** Data connections in TLS (NDMPD_DATA_TLS): the peer must complete a verified handshake. */
  tls?: DataTls;
}

/**
 * Listens for one data connection. NDMP v4 addresses are IPv4: bind to the IPv4 address the
 * DMA reached us on (that is what it can route to), or, when the control connection is IPv6,
 * to every IPv4 address, advertising each non-loopback one.
 *
 * The port takes exactly one connection and then closes, so nobody can join a data stream
 * that has its peer. A connection from outside `peers` is dropped without consuming the
 * listen: a stranger who comes first cannot lock the real peer out.
 */
export async function listenData(localAddress: string | undefined, opts: ListenOptions): Promise<DataListener> {
  const ip = ipv4Of(localAddress);
  const bindHost = ip ?? "0.0.0.0";
  const server = await bindInRange(bindHost, opts.ports);
  const port = (server.address() as { port: number }).port;
  const advertised = ip ? [ip] : externalIPv4s();
  const peers = opts.peers ?? ANY_PEER;
  let settle: { resolve: (s: Socket) => void; reject: (e: Error) => void };
  const accepted = new Promise<Socket>((resolve, reject) => (settle = { resolve, reject }));
  accepted.catch(() => {}); // a listener closed before anyone came is not an unhandled error
  let taken = false;
  /** TLS handshakes under way: the peer has connected, and a request must see the result. */
  const handshakes = new Set<Promise<unknown>>();
  server.on("connection", (sock) => {
    sock.on("error", () => {}); // a dropped socket's reset is nobody's business
    // Several connections may be accepted in one turn: only the first allowed one is served.
    if (taken) return void sock.destroy();
    if (!peers.allows(sock.remoteAddress)) {
      opts.refused?.(socketPeer(sock), "not in data_peers");
      return void sock.destroy();
    }
    if (opts.tls) {
      const peer = socketPeer(sock);
      // Like a stranger, a peer that fails the handshake is dropped and the listen goes on.
      const shaking = secureAccepted(sock, opts.tls);
      handshakes.add(shaking);
      shaking.finally(() => handshakes.delete(shaking)).catch(() => {});
      shaking.then(
        (t) => {
          if (taken) return void t.destroy();
          taken = true;
          server.close();
          settle.resolve(t);
        },
        (e: Error) => opts.refused?.(peer, `TLS: ${e.message}`),
      );
      return;
    }
    taken = true;
    sock.removeAllListeners("error");
    server.close();
    settle.resolve(sock);
  });
  server.on("error", (e) => settle.reject(e));
  return {
    addrs: advertised.map((a) => tcpAddr(a, port)),
    accepted,
    async pending() {
      // The end of this turn (events already polled), then one more poll of the sockets.
      await turn();
      await turn();
      // The peer's side of a TLS handshake ends before ours: its DMA may already be asking.
      if (handshakes.size > 0) {
        await Promise.allSettled([...handshakes]);
        await turn();
      }
    },
    close() {
      server.close();
      settle.reject(new Error("listener closed"));
    },
  };
}

/** "1.2.3.4:5678" or "[::1]:5678". */
export function socketPeer(sock: { remoteAddress?: string; remotePort?: number }): string {
  const a = sock.remoteAddress ?? "?";
  return `${a.includes(":") ? `[${a}]` : a}:${sock.remotePort ?? "?"}`;
}

/** The addresses of a DATA_CONNECT/MOVER_CONNECT that `peers` allows (data_peers binds both ways). */
export function allowedAddrs(addrs: TcpAddr[], peers: PeerFilter): TcpAddr[] {
  return addrs.filter((a) => peers.allows(u32ToIp(a.ip_addr)));
}

/**
 * The addresses of a DATA_CONNECT or MOVER_CONNECT that data_peers allows; none is a refusal
 * (ILLEGAL_ARGS; the session logs it to the DMA), and nothing is dialled.
 */
export function connectableAddrs(addrs: TcpAddr[], peers: PeerFilter): TcpAddr[] {
  const ok = allowedAddrs(addrs, peers);
  if (ok.length > 0) return ok;
  const to = addrs.map((a) => `${u32ToIp(a.ip_addr)}:${a.port}`).join(", ");
  throw new Refusal(ErrorCode.ILLEGAL_ARGS_ERR, `refused to connect to ${to}: not in data_peers`);
}

function externalIPv4s(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const i of list ?? []) if (i.family === "IPv4" && !i.internal) out.push(i.address);
  }
  return out.length > 0 ? out : ["127.0.0.1"];
}

async function bindInRange(host: string, ports: { from: number; to: number } | null): Promise<Server> {
  if (!ports) return bind(host, 0);
  const span = ports.to - ports.from + 1;
  const start = Math.floor(Math.random() * span);
  let last: Error | undefined;
  for (let i = 0; i < span; i++) {
    try {
      return await bind(host, ports.from + ((start + i) % span));
    } catch (e) {
      last = e as Error;
    }
  }
  throw new Error(`no free port in ${ports.from}-${ports.to}: ${last?.message}`);
}

function bind(host: string, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer({ pauseOnConnect: true });
    s.once("error", reject);
    s.listen({ host, port, backlog: 1 }, () => {
      s.off("error", reject);
      resolve(s);
    });
  });
}

/** Connects to the first address of `addrs` that answers (in TLS with `tls`: NDMPD_DATA_TLS). */
export async function connectData(addrs: TcpAddr[], timeoutMs = 15_000, tls?: DataTls): Promise<Socket> {
  let last: Error | undefined;
  for (const a of addrs) {
    let sock: Socket;
    try {
      sock = await connectOne(u32ToIp(a.ip_addr), a.port, timeoutMs);
    } catch (e) {
      last = e as Error;
      continue;
    }
    return tls ? secureConnected(sock, tls, timeoutMs) : sock;
  }
  throw last ?? new Error("no address to connect to");
}

function connectOne(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`connect to ${host}:${port} timed out`));
    }, timeoutMs);
    s.once("connect", () => {
      clearTimeout(timer);
      s.off("error", reject);
      resolve(s);
    });
    s.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
