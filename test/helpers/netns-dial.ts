/**
 * Connections into a private network namespace from the test process: a relay runs inside the
 * namespace and listens on a Unix socket (a path, which no network namespace hides). Each
 * connection to it names a TCP destination, and optionally the local address to connect from
 * (any of 127/8 once lo is up: how a test plays a stranger at 127.0.0.2).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Netns } from "./netns.ts";

/** Per connection: one line "HOST PORT [LOCAL]", answered "+" (connected, then raw bytes) or "-CODE". */
const RELAY = `
const net = require("net");
const srv = net.createServer((u) => {
  let head = Buffer.alloc(0);
  const onData = (c) => {
    head = Buffer.concat([head, c]);
    const nl = head.indexOf(10);
    if (nl < 0) return;
    u.off("data", onData);
    u.pause();
    const [host, port, localAddress] = head.subarray(0, nl).toString().split(" ");
    const rest = head.subarray(nl + 1);
    const t = net.connect({ host, port: Number(port), localAddress: localAddress || undefined });
    let connected = false;
    t.once("connect", () => {
      connected = true;
      u.write("+\\n");
      if (rest.length) t.write(rest);
      u.pipe(t);
      t.pipe(u);
      u.resume();
    });
    t.on("error", (e) => { if (connected) return u.destroy(); u.end("-" + (e.code || "ERROR") + "\\n"); });
    t.on("close", () => u.end());
    u.on("close", () => t.destroy());
    u.on("error", () => t.destroy());
  };
  u.on("data", onData);
});
srv.listen(process.argv[1], () => console.log("ready"));
`;

export interface Dialer {
  /** A TCP connection from inside the namespace; rejects with the error code when refused. */
  dial(host: string, port: number, localAddress?: string): Promise<Socket>;
  stop(): Promise<void>;
}

export async function startDialer(ns: Netns): Promise<Dialer> {
  const dir = mkdtempSync(join(tmpdir(), "ndmpd-dial-"));
  const path = join(dir, "relay.sock");
  const [cmd, ...pre] = ns.prefix();
  const p: ChildProcess = spawn(cmd!, [...pre, process.execPath, "-e", RELAY, path], { stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise<void>((r) => p.once("exit", () => r()));
  await new Promise<void>((resolve, reject) => {
    p.stdout!.once("data", () => resolve());
    p.once("exit", (code) => reject(new Error(`relay exited (${code}) before listening`)));
  });
  p.stdout!.resume();
  return {
    dial(host, port, localAddress) {
      return new Promise((resolve, reject) => {
        const s = connect(path);
        let head = "";
        const onData = (c: Buffer) => {
          head += c.toString("latin1");
          const nl = head.indexOf("\n");
          if (nl < 0) return;
          s.off("data", onData);
          s.pause();
          const answer = head.slice(0, nl);
          const rest = Buffer.from(head.slice(nl + 1), "latin1");
          if (!answer.startsWith("+")) {
            s.destroy();
            const e = new Error(`connect to ${host}:${port} failed: ${answer.slice(1)}`) as NodeJS.ErrnoException;
            e.code = answer.slice(1);
            return reject(e);
          }
          if (rest.length) s.unshift(rest);
          resolve(s);
        };
        s.on("data", onData);
        s.once("error", reject);
        s.once("close", () => reject(new Error(`the relay closed the connection to ${host}:${port}`)));
        s.write(`${host} ${port}${localAddress ? ` ${localAddress}` : ""}\n`);
      });
    },
    async stop() {
      p.kill("SIGTERM");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
