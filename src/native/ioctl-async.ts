/**
 * ioctl off the event loop: one worker thread (ioctl-thread.ts) per open device, so that a drive
 * that rewinds for a minute, or a changer command with a long timeout, stalls neither the other
 * sessions nor the other devices. Where there is no worker (Node, a binary built without it, a
 * test double of IoctlApi) the same interface runs the call on this thread.
 *
 * Buffers the kernel reads or writes through a pointer (SG_IO's data, CDB and sense) must be
 * shared(): the worker is in this process, and shared memory neither moves nor is copied.
 */
import { entryPointUrl } from "./entry-point.ts";
import type { Worker } from "node:worker_threads";
import { NativeError } from "./errno.ts";
import { isBun, loadNative } from "./index.ts";
import type { IoctlReply, IoctlRequest } from "./ioctl-thread.ts";
import type { IoctlApi } from "./types.ts";

export interface AsyncIoctl {
  /** ioctl(fd, request, arg); rejects with NativeError as IoctlApi.ioctl throws. */
  ioctl(fd: number, request: number, arg: Uint8Array): Promise<number>;
  /** A buffer whose address stays valid and visible to the thread doing the call. */
  shared(size: number): Buffer;
  /** Its address (for structs that carry pointers); 0n for an empty buffer. */
  address(buf: Uint8Array): bigint;
  /** True when calls run on a thread of their own. */
  readonly threaded: boolean;
  close(): Promise<void>;
}

/** The same calls on this thread: for Node-side fallbacks and test doubles. */
export function inlineIoctl(api: IoctlApi): AsyncIoctl {
  return {
    threaded: false,
    ioctl: async (fd, request, arg) => api.ioctl(fd, request, arg),
    shared: (size) => Buffer.alloc(size),
    address: (buf) => (api.address ? api.address(buf) : 0n),
    close: async () => {},
  };
}

/** The worker's module, beside this one in the source tree or in the compiled binary. */
export function ioctlThreadUrl(): URL | undefined {
  return entryPointUrl(import.meta.url, "native/ioctl-thread.ts");
}

/**
 * A worker thread for one device's ioctls, or the inline form when there can be none. `api` is
 * this thread's binding (for addresses, and the fallback).
 */
export async function openIoctl(api: IoctlApi): Promise<AsyncIoctl> {
  const url = isBun() ? ioctlThreadUrl() : undefined;
  if (!url || !api.address) return inlineIoctl(api);
  const { Worker } = await import("node:worker_threads");
  const worker = new Worker(url);
  try {
    await new Promise<void>((resolve, reject) => {
      worker.once("message", () => resolve());
      worker.once("error", reject);
    });
  } catch {
    void worker.terminate();
    return inlineIoctl(api);
  }
  return new ThreadIoctl(worker, api);
}

class ThreadIoctl implements AsyncIoctl {
  readonly threaded = true;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (rc: number) => void; reject: (e: Error) => void }>();
  private failed: Error | undefined;

  constructor(
    private readonly worker: Worker,
    private readonly api: IoctlApi,
  ) {
    worker.on("message", (r: IoctlReply) => this.settle(r));
    worker.on("error", (e) => this.fail(e instanceof Error ? e : new Error(String(e))));
    worker.on("exit", () => this.fail(new Error("the ioctl thread ended")));
    worker.unref(); // an idle device keeps no process alive
  }

  shared(size: number): Buffer {
    return Buffer.from(new SharedArrayBuffer(Math.max(size, 1)), 0, size);
  }

  address(buf: Uint8Array): bigint {
    return this.api.address!(buf);
  }

  async ioctl(fd: number, request: number, arg: Uint8Array): Promise<number> {
    if (this.failed) throw this.failed;
    // The argument goes by shared memory: the worker's kernel call fills in the caller's bytes.
    const isShared = arg.buffer instanceof SharedArrayBuffer;
    const view = isShared ? arg : this.shared(arg.length);
    if (!isShared) view.set(arg);
    const id = this.nextId++;
    const done = new Promise<number>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    this.worker.ref(); // a call under way keeps the process alive until it answers
    this.worker.postMessage({ id, fd, request, arg: view.buffer as SharedArrayBuffer, offset: view.byteOffset, length: view.length } satisfies IoctlRequest);
    try {
      return await done;
    } finally {
      if (!isShared) arg.set(view);
      if (this.waiting.size === 0) this.worker.unref();
    }
  }

  async close(): Promise<void> {
    this.fail(new Error("the device is closed"));
    await this.worker.terminate();
  }

  private settle(r: IoctlReply): void {
    const w = this.waiting.get(r.id);
    if (!w) return;
    this.waiting.delete(r.id);
    if ("rc" in r) w.resolve(r.rc);
    else if ("errno" in r) w.reject(new NativeError("ioctl", r.errno));
    else w.reject(new Error(`ioctl thread: ${r.fatal}`));
  }

  private fail(e: Error): void {
    this.failed ??= e;
    for (const w of this.waiting.values()) w.reject(e);
    this.waiting.clear();
  }
}

/** openIoctl with this process's binding (null when there is none). */
export async function openDeviceIoctl(): Promise<AsyncIoctl | null> {
  const native = await loadNative();
  return native.ioctl ? openIoctl(native.ioctl) : null;
}
