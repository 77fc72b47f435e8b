/**
 * A small NDMP client (the DMA side of a control connection): `ndmpd query` uses it, the
 * tests use it to speak to the real server, and the CLI's jobs will drive remote servers
 * with it.
 */
import { EventEmitter } from "node:events";
import { connect, isIP, type Socket } from "node:net";
import { checkServerIdentity, connect as tlsConnect } from "node:tls";
import { AuthType, errorName, Message, MessageType, messageName } from "../protocol/codes.ts";
import { frameRecord, RecordReader } from "../protocol/framing.ts";
import { decodeHeader, encodeMessage, wireFor, type Header, type WireVersion } from "../protocol/message.ts";
import { md5Digest } from "../server/auth.ts";

export class NdmpClientError extends Error {
  override name = "NdmpClientError";
  constructor(
    readonly message_code: number,
    readonly error: number,
    where: "header" | "body",
  ) {
    super(`${messageName(message_code)} failed: ${errorName(error)} (in the ${where})`);
  }
}

/** How `connectTls` talks TLS: PEM contents, not file names. */
export interface TlsOptions {
  /** CA certificates the server's certificate must chain to (default: the system's). */
  ca?: Buffer;
  /** A client certificate and its key, for servers that ask for one. */
  cert?: Buffer;
  key?: Buffer;
  socket?: Socket;
}

export interface Reply {
  header: Header;
  body: any;
}

export interface Post {
  header: Header;
  code: number;
  body: any;
}

export class NdmpClient extends EventEmitter {
  private sequence = 0;
  private readonly reader: RecordReader;
  private readonly waiting = new Map<number, { code: number; resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private closedError: Error | undefined;
  /** Every post received, in order (NOTIFY, LOG, FH). */
  readonly posts: Post[] = [];
  /** Header error codes of replies nobody waited for (raw requests), by reply_sequence. */
  readonly unmatchedReplies = new Map<number, number>();
  /** The version the server offered in NOTIFY_CONNECTION_STATUS. */
  offeredVersion = 0;
  wire: WireVersion;

  private constructor(private readonly socket: Socket, maxRecord: number) {
    super();
    this.reader = new RecordReader(maxRecord);
    this.wire = wireFor(4)!;
    // A request goes out as two writes (mark + record): without this, Nagle delays each by ~40 ms.
    socket.setNoDelay(true);
    socket.on("data", (c: Buffer) => this.onData(c));
    socket.on("error", (e) => this.fail(e));
    socket.on("close", () => this.fail(new Error("connection closed")));
    socket.resume(); // one handed over paused (by a relay) starts flowing now that we listen
  }

  /** Connects and waits for the server's NOTIFY_CONNECTION_STATUS. */
  static async connect(host: string, port: number, opts: { timeoutMs?: number; maxRecord?: number } = {}): Promise<NdmpClient> {
    return NdmpClient.over(connect({ host, port }), opts);
  }

  /**
   * NDMPS: TLS 1.2 or later, the server's certificate verified against `tls.ca` (default: the
   * system's CAs) and the host name or IP address; a client certificate when given.
   * `tls.socket` runs TLS over a connection made elsewhere (a test's relay).
   */
  static async connectTls(host: string, port: number, tls: TlsOptions, opts: { timeoutMs?: number; maxRecord?: number } = {}): Promise<NdmpClient> {
    const sock = tlsConnect({
      host,
      port,
      socket: tls.socket,
      ca: tls.ca,
      cert: tls.cert,
      key: tls.key,
      minVersion: "TLSv1.2",
      // SNI takes names only; the certificate check takes the IP address as well.
      servername: isIP(host) ? undefined : host,
      checkServerIdentity: (_name, cert) => checkServerIdentity(host, cert),
    });
    await new Promise<void>((resolve, reject) => {
      sock.once("secureConnect", () => {
        sock.off("error", reject);
        resolve();
      });
      sock.once("error", reject);
    });
    return NdmpClient.over(sock, opts);
  }

  /** Speaks NDMP over a connection made elsewhere (TLS, a test's relay); waits for the server's status. */
  static async over(sock: Socket, opts: { timeoutMs?: number; maxRecord?: number } = {}): Promise<NdmpClient> {
    const client = new NdmpClient(sock, opts.maxRecord ?? 64 * 1024 * 1024);
    const timeout = opts.timeoutMs ?? 10_000;
    const status = await client.waitForPost(Message.NOTIFY_CONNECTION_STATUS, timeout);
    if (status.body.reason !== 0) {
      client.close();
      throw new Error(`server refused the connection: ${status.body.text_reason.toString()}`);
    }
    client.offeredVersion = status.body.protocol_version;
    return client;
  }

  /** Sends a request and resolves with the reply; header-level errors reject. */
  request(code: number, body: unknown = {}, opts: { allowBodyError?: boolean } = {}): Promise<Reply> {
    if (this.closedError) return Promise.reject(this.closedError);
    const seq = this.sendRequest(code, body);
    return new Promise<Reply>((resolve, reject) => {
      this.waiting.set(seq, {
        code,
        resolve: (r) => {
          if (!opts.allowBodyError && r.body && typeof r.body.error === "number" && r.body.error !== 0) {
            reject(new NdmpClientError(code, r.body.error, "body"));
          } else resolve(r);
        },
        reject,
      });
    });
  }

  /** Sends without waiting (CONNECT_CLOSE, or tests that send raw things). Returns the sequence. */
  sendRequest(code: number, body: unknown = {}): number {
    const payload = this.wire.encodePost(code, body);
    this.sequence = (this.sequence + 1) >>> 0;
    const h: Header = {
      sequence: this.sequence,
      time_stamp: Math.floor(Date.now() / 1000),
      message_type: MessageType.REQUEST,
      message_code: code,
      reply_sequence: 0,
      error_code: 0,
    };
    for (const part of frameRecord(encodeMessage(h, payload))) this.socket.write(part);
    return this.sequence;
  }

  /** Sends raw bytes on the control connection (hostile-input tests). */
  sendRaw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  async open(version: number): Promise<void> {
    await this.request(Message.CONNECT_OPEN, { protocol_version: version });
    this.wire = wireFor(version) ?? this.wire;
  }

  async authText(user: string, password: string): Promise<void> {
    await this.request(Message.CONNECT_CLIENT_AUTH, {
      auth_data: { auth_type: AuthType.TEXT, auth_text: { auth_id: user, auth_password: password } },
    });
  }

  async authMd5(user: string, password: string): Promise<void> {
    const attr = await this.request(Message.CONFIG_GET_AUTH_ATTR, { auth_type: AuthType.MD5 });
    const digest = md5Digest(Buffer.from(password, "utf8"), attr.body.server_attr.challenge);
    await this.request(Message.CONNECT_CLIENT_AUTH, {
      auth_data: { auth_type: AuthType.MD5, auth_md5: { auth_id: user, auth_digest: digest } },
    });
  }

  /** Resolves with the first post of `code` received from now on (or already queued and unclaimed). */
  waitForPost(code: number, timeoutMs = 30_000, since = 0): Promise<Post> {
    const found = this.posts.slice(since).find((p) => p.code === code);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const onPost = (p: Post) => {
        if (p.code !== code) return;
        cleanup();
        resolve(p);
      };
      const onClose = (e: Error) => {
        cleanup();
        reject(e);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for ${messageName(code)}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off("post", onPost);
        this.off("closed", onClose);
      };
      this.on("post", onPost);
      this.on("closed", onClose);
    });
  }

  /** CONNECT_CLOSE (no reply), then close the socket. */
  async close(): Promise<void> {
    if (!this.closedError) {
      try {
        this.sendRequest(Message.CONNECT_CLOSE);
      } catch {
        // closing anyway
      }
    }
    this.socket.end();
    await new Promise<void>((r) => {
      if (this.socket.destroyed) return r();
      this.socket.once("close", () => r());
      setTimeout(() => {
        this.socket.destroy();
        r();
      }, 2000).unref();
    });
  }

  get isClosed(): boolean {
    return this.closedError !== undefined;
  }

  private onData(chunk: Buffer): void {
    let records: Buffer[];
    try {
      records = this.reader.push(chunk);
    } catch (e) {
      this.fail(e as Error);
      this.socket.destroy();
      return;
    }
    for (const rec of records) this.onRecord(rec);
  }

  private onRecord(rec: Buffer): void {
    const header = decodeHeader(rec);
    const payload = rec.subarray(24);
    if (header.message_type === MessageType.REPLY) {
      const w = this.waiting.get(header.reply_sequence);
      if (!w) {
        this.unmatchedReplies.set(header.reply_sequence, header.error_code);
        return;
      }
      this.waiting.delete(header.reply_sequence);
      if (header.error_code !== 0) {
        w.reject(new NdmpClientError(header.message_code, header.error_code, "header"));
        return;
      }
      try {
        const body = this.wire.schema(header.message_code)?.reply ? this.wire.decodeReply(header.message_code, payload) : {};
        w.resolve({ header, body });
      } catch (e) {
        w.reject(e as Error);
      }
      return;
    }
    let body: unknown;
    try {
      body = this.wire.decodeRequest(header.message_code, payload);
    } catch {
      body = undefined;
    }
    const post: Post = { header, code: header.message_code, body };
    this.posts.push(post);
    this.emit("post", post);
  }

  private fail(e: Error): void {
    if (this.closedError) return;
    this.closedError = e;
    for (const w of this.waiting.values()) w.reject(e);
    this.waiting.clear();
    this.emit("closed", e);
  }
}
