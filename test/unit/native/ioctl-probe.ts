// Compiled by ioctl-async.test.ts with the same extra entry points as `npm run build` (read from
// package.json): ioctls through the device thread, printed as one JSON line.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { loadNative, NativeError } from "../../../src/native/index.ts";
import { openIoctl } from "../../../src/native/ioctl-async.ts";

const FIONREAD = 0x541b;
const MTIOCGET = 0x80306d02;
const native = await loadNative();
const io = await openIoctl(native.ioctl!);
const out: Record<string, unknown> = { threaded: io.threaded };

// A pipe holding 1234 bytes: FIONREAD writes the count through the pointer, into our memory.
const dir = fs.mkdtempSync("/tmp/ndmpd-ioctl-probe-");
const [r, w] = (() => {
  const fifo = `${dir}/p`;
  spawnSync("mkfifo", [fifo]);
  const rfd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const wfd = fs.openSync(fifo, fs.constants.O_WRONLY);
  return [rfd, wfd];
})();
fs.writeSync(w, Buffer.alloc(1234, 7));
const plain = Buffer.alloc(4);
await io.ioctl(r, FIONREAD, plain);
const shared = io.shared(4);
await io.ioctl(r, FIONREAD, shared);
out.plain = plain.readInt32LE(0);
out.shared = shared.readInt32LE(0);

// A regular file is not a tape: ENOTTY comes back from the thread as the same NativeError.
const fd = fs.openSync(process.execPath, "r");
try {
  await io.ioctl(fd, MTIOCGET, Buffer.alloc(48));
  out.error = null;
} catch (e) {
  out.error = e instanceof NativeError ? e.code : String(e);
}

// Many calls at once are answered, each to its own caller.
const many = await Promise.all(Array.from({ length: 100 }, async () => {
  const b = Buffer.alloc(4);
  await io.ioctl(r, FIONREAD, b);
  return b.readInt32LE(0);
}));
out.many = many.every((n) => n === 1234);
await io.close();
try {
  await io.ioctl(r, FIONREAD, Buffer.alloc(4));
  out.afterClose = "answered";
} catch (e) {
  out.afterClose = (e as Error).message;
}
fs.rmSync(dir, { recursive: true, force: true });
console.log(JSON.stringify(out));
process.exit(0);
