/**
 * A creator thread (file-creator.ts): makes the small files of each batch the restore posts
 * (createFiles), then posts the batch's buffers back with what failed. File descriptors are the
 * process's, so the parent descriptors in a batch are the restore writer's own, opened and
 * checked there; the writer keeps each one open until every batch that names it has come back.
 *
 * It is a separate entry point of the compiled binary (package.json: build).
 */
import { parentPort } from "node:worker_threads";
import { loadNative, type NativeApi } from "../native/index.ts";
import { createFiles, type BatchBuffers, type CreateFailure } from "./create-batch.ts";

export interface CreateRequest {
  seq: number;
  count: number;
  buffers: BatchBuffers;
}

export type CreateReply = { seq: number; buffers: BatchBuffers; failures: CreateFailure[] } | { seq: number; buffers: BatchBuffers; broken: string };

const port = parentPort!;
const native = loadNative();

// Requests are answered in the order they came: each waits for the same one promise.
port.on("message", (m: CreateRequest) => void native.then((native) => answer(m, native)));

function answer(m: CreateRequest, native: NativeApi): void {
  const reply: CreateReply = native.atCalls
    ? { seq: m.seq, buffers: m.buffers, failures: createFiles(native.atCalls, m.buffers, m.count) }
    : { seq: m.seq, buffers: m.buffers, broken: native.reason ?? "no native *at calls" };
  const b = reply.buffers;
  port.postMessage(reply, [b.meta.buffer as ArrayBuffer, b.names.buffer as ArrayBuffer, b.data.buffer as ArrayBuffer]);
}
