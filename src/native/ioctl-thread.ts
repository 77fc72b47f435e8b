/**
 * The ioctl worker thread (ioctl-async.ts starts one per open device): runs each ioctl it is sent
 * with its own binding of libc, so a call that blocks for as long as a drive takes (a rewind, a
 * SCSI command with a DMA-chosen timeout) blocks this thread only, never the event loop.
 * The argument is a view of a SharedArrayBuffer: the kernel's answer lands in the caller's
 * memory. It is a separate entry point of the compiled binary (package.json: build).
 */
import { parentPort } from "node:worker_threads";
import { loadNative } from "./index.ts";
import { NativeError } from "./errno.ts";

export interface IoctlRequest {
  id: number;
  fd: number;
  request: number;
  arg: SharedArrayBuffer;
  offset: number;
  length: number;
}

export type IoctlReply = { id: number; rc: number } | { id: number; errno: number } | { id: number; fatal: string };

const port = parentPort!;
const native = await loadNative();

port.on("message", (m: IoctlRequest) => {
  const api = native.ioctl;
  if (!api) {
    port.postMessage({ id: m.id, fatal: native.reason ?? "no ioctl in this runtime" } satisfies IoctlReply);
    return;
  }
  try {
    const rc = api.ioctl(m.fd, m.request, new Uint8Array(m.arg, m.offset, m.length));
    port.postMessage({ id: m.id, rc } satisfies IoctlReply);
  } catch (e) {
    const reply: IoctlReply = e instanceof NativeError ? { id: m.id, errno: e.errno } : { id: m.id, fatal: String(e) };
    port.postMessage(reply);
  }
});
port.postMessage({ id: 0, rc: 0 } satisfies IoctlReply); // ready
