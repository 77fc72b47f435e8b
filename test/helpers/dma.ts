/**
 * The DMA side of tape and mover tests: our NdmpClient on the control connection, plus a
 * plain TCP peer on the data connection (what a data server would be), and seeded stream bytes.
 */
import { createCipheriv, createHash } from "node:crypto";
import { connect, createServer, type Socket } from "node:net";
import { NdmpClient, NdmpClientError, type Post } from "../../src/client/client.ts";
import { ErrorCode, Message } from "../../src/protocol/codes.ts";
import { u32ToIp } from "../../src/transport/tcp.ts";
import { PASSWORD, USER } from "./server.ts";

export const KiB = 1024;
export const MiB = 1024 * 1024;

/** A server config with virtual drives; "$DIR" is the server's temp dir (startServer). */
export function tapeServerConfig(tapes: Array<{ name: string; capacity?: string; file?: string }>, extra = ""): string {
  const drives = tapes
    .map((t) => `[[tape]]\nname = "${t.name}"\npath = "$DIR/${t.file ?? `${t.name}.tape`}"\n${t.capacity ? `capacity = "${t.capacity}"\n` : ""}`)
    .join("\n");
  return `[server]\nlisten = "127.0.0.1:0"\nstate_dir = "$DIR/state"\nauth_failure_delay_ms = 0\n${extra}\n[auth]\nmethods = ["md5", "text"]\n\n[[user]]\nname = "${USER}"\npassword = "${PASSWORD}"\n\n${drives}`;
}

/** An authenticated v4 session. */
export async function dma(port: number): Promise<NdmpClient> {
  const c = await NdmpClient.connect("127.0.0.1", port);
  // NdmpClient writes each request as two socket writes (mark, record) and leaves Nagle on: under
  // Node that costs a delayed ACK, ~44 ms, per request (Bun is unaffected). Until the client sets
  // TCP_NODELAY itself, the tests do it for it.
  (c as unknown as { socket: Socket }).socket.setNoDelay(true);
  await c.open(4);
  await c.authMd5(USER, PASSWORD);
  return c;
}

/** Deterministic pseudo-random bytes (AES-128-CTR keyed by the seed): fast enough for 1 GiB. */
export function seededBytes(length: number, seed: number): Buffer {
  const key = createHash("sha256").update(`ndmpd-test-${seed}`).digest();
  const c = createCipheriv("aes-128-ctr", key.subarray(0, 16), key.subarray(16, 32));
  return c.update(Buffer.alloc(length));
}

export function sha256(b: Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}

/** Connects to the first address of a MOVER_LISTEN/DATA_LISTEN reply. */
export function connectTo(addr: { addr_type: number; tcp_addr?: Array<{ ip_addr: number; port: number }> }): Promise<Socket> {
  const a = addr.tcp_addr?.[0];
  if (!a) throw new Error("no TCP address in the reply");
  return new Promise((resolve, reject) => {
    const s = connect({ host: u32ToIp(a.ip_addr), port: a.port });
    s.once("connect", () => {
      s.off("error", reject);
      resolve(s);
    });
    s.once("error", reject);
  });
}

/** Writes `data` in chunks honouring back-pressure; ends the socket afterwards unless told not to. */
export async function sendAll(sock: Socket, data: Buffer, opts: { chunk?: number; end?: boolean } = {}): Promise<void> {
  const chunk = opts.chunk ?? 256 * KiB;
  for (let off = 0; off < data.length; off += chunk) {
    if (sock.destroyed) throw new Error("data connection closed while sending");
    if (!sock.write(data.subarray(off, Math.min(off + chunk, data.length)))) {
      await new Promise<void>((resolve, reject) => {
        const done = () => {
          sock.off("close", gone);
          resolve();
        };
        const gone = () => {
          sock.off("drain", done);
          reject(new Error("data connection closed while sending"));
        };
        sock.once("drain", done);
        sock.once("close", gone);
      });
    }
  }
  if (opts.end !== false) await new Promise<void>((r) => sock.end(r));
}

/** Collects what arrives on a data connection; waitFor(n) resolves once n bytes are in. */
export class Receiver {
  private chunks: Buffer[] = [];
  length = 0;
  closed = false;
  private waiters: Array<() => void> = [];

  constructor(readonly sock: Socket) {
    sock.on("data", (c: Buffer) => {
      this.chunks.push(c);
      this.length += c.length;
      this.wake();
    });
    sock.on("error", () => {});
    sock.on("close", () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  bytes(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  async waitFor(n: number, timeoutMs = 30_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.length < n) {
      if (this.closed) throw new Error(`data connection closed after ${this.length} of ${n} bytes`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out with ${this.length} of ${n} bytes`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.bytes();
  }
}

/** The next post of `code` after index `since` of c.posts (so repeated pauses are told apart). */
export function postAfter(c: NdmpClient, code: number, since: number, timeoutMs = 30_000): Promise<Post> {
  return c.waitForPost(code, timeoutMs, since);
}

/** Waits until `cond()` holds, polling. */
export async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function moverState(c: NdmpClient) {
  return (await c.request(Message.MOVER_GET_STATE)).body as {
    mode: number;
    state: number;
    pause_reason: number;
    halt_reason: number;
    record_size: number;
    record_num: number;
    bytes_moved: bigint;
    seek_position: bigint;
    bytes_left_to_read: bigint;
    window_offset: bigint;
    window_length: bigint;
    data_connection_addr: { addr_type: number; tcp_addr?: Array<{ ip_addr: number; port: number }> };
  };
}

export async function tapeState(c: NdmpClient) {
  return (await c.request(Message.TAPE_GET_STATE)).body as {
    unsupported: number;
    flags: number;
    file_num: number;
    soft_errors: number;
    block_size: number;
    blockno: number;
    total_space: bigint;
    space_remain: bigint;
  };
}

export async function mtio(c: NdmpClient, op: number, count: number): Promise<number> {
  return (await c.request(Message.TAPE_MTIO, { tape_op: op, count })).body.resid_count as number;
}

/** A one-connection listener in this process (the DMA's side of a data connection); DATA_CONNECT points the server at it. */
export function listenOnce(): Promise<{ port: number; accepted: Promise<Socket> }> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    let got!: (s: Socket) => void;
    const accepted = new Promise<Socket>((r) => (got = r));
    server.once("connection", (s) => {
      server.close();
      got(s);
    });
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve({ port: (server.address() as { port: number }).port, accepted }));
  });
}

/** The NDMP error a request fails with (body or header), or NO_ERR. */
export async function errorOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return ErrorCode.NO_ERR;
  } catch (e) {
    if (e instanceof NdmpClientError) return e.error;
    throw e;
  }
}
