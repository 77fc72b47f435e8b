/**
 * The IPC data connection (NDMP's NDMP_ADDR_IPC): two sessions of one server joined by an
 * in-process pipe. LOCAL joins a session's data service and its own mover; IPC joins services
 * of different sessions on the same server, which a copy (data -> data) or a duplication
 * (mover -> mover) within one server needs: each side has its own control connection.
 *
 * The listening side gets an opaque token (ipc_addr.comm_data) that the DMA hands to the other
 * session's CONNECT. Tokens are random and live only while their listener waits, so a session
 * can reach only a listener whose address its DMA was given.
 */
import { randomBytes } from "node:crypto";
import type { Duplex } from "node:stream";
import { AddrType } from "../protocol/codes.ts";
import type { Addr } from "../protocol/xdr/v4.ts";
import { createLocalPair } from "./local.ts";

export interface IpcListener {
  addr: Addr;
  /** Resolves with the listening end once another session connects (one connection only). */
  accepted: Promise<Duplex>;
  close(): void;
}

/** Listeners waiting for their peer, by token (hex of comm_data). */
const waiting = new Map<string, (end: Duplex) => void>();

export function listenIpc(): IpcListener {
  const token = randomBytes(16);
  const key = token.toString("hex");
  let settle!: { resolve: (d: Duplex) => void; reject: (e: Error) => void };
  const accepted = new Promise<Duplex>((resolve, reject) => (settle = { resolve, reject }));
  accepted.catch(() => {}); // a listener closed before anyone came is not an unhandled error
  waiting.set(key, (end) => settle.resolve(end));
  return {
    addr: { addr_type: AddrType.IPC, ipc_addr: { comm_data: token } },
    accepted,
    close() {
      if (waiting.delete(key)) settle.reject(new Error("listener closed"));
    },
  };
}

/** The connecting end for a listener's token; undefined when no listener waits for it. */
export function connectIpc(commData: Uint8Array | Buffer): Duplex | undefined {
  const key = Buffer.from(commData).toString("hex");
  const hand = waiting.get(key);
  if (!hand) return undefined;
  waiting.delete(key);
  const pair = createLocalPair();
  hand(pair.mover);
  return pair.data;
}

/** How many listeners wait (leak checks in tests). */
export function ipcListeners(): number {
  return waiting.size;
}
