/**
 * A one-file FUSE filesystem speaking the kernel protocol on /dev/fuse (no libfuse), whose file
 * `tape` answers every ioctl only when told: a device call that blocks for real, for as long
 * as a test wants, with no tape hardware. Run as a process of its own (it blocks reading
 * /dev/fuse): `node fuse-hold.ts` with /dev/fuse open on fd 3 (the mount's fd=3).
 * It prints "ioctl <cmd hex>" when an ioctl arrives and holds it; a lookup of the name
 * `release` (`stat MNT/release`) answers every held one with ENOTTY (what a non-tape gives).
 * This process blocks in read(2) on /dev/fuse, so the signal comes through the filesystem
 * itself. Other requests get ENOSYS.
 *
 * With an image file as argument it also serves `disk`, that file's bytes (READ/WRITE): a loop
 * device over it is a disk whose writes fail with EIO from the moment a lookup of `fail` is
 * seen, as a dying disk's would.
 */
import { fstatSync, openSync, readSync, writeSync } from "node:fs";

const FD = 3;
const ROOT = 1n;
const FILE = 2n;
const DISK = 3n;
const EIO = 5;
const image = process.argv[2] ? openSync(process.argv[2], "r+") : undefined;
let failing = false;
const ENOSYS = 38;
const ENOENT = 2;
const ENOTTY = 25;
const OP = { LOOKUP: 1, FORGET: 2, GETATTR: 3, OPEN: 14, READ: 15, WRITE: 16, FSYNC: 20, RELEASE: 18, FLUSH: 25, INIT: 26, OPENDIR: 27, RELEASEDIR: 29, IOCTL: 39, DESTROY: 38, BATCH_FORGET: 42 } as const;

function reply(unique: bigint, error: number, body: Buffer = Buffer.alloc(0)): void {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16 + body.length, 0);
  h.writeInt32LE(-error, 4);
  h.writeBigUInt64LE(unique, 8);
  try {
    writeSync(FD, Buffer.concat([h, body]));
  } catch {
    // the request was interrupted (the caller gave up): nothing to answer
  }
}

function attr(node: bigint): Buffer {
  const a = Buffer.alloc(88);
  a.writeBigUInt64LE(node, 0); // ino
  if (node === DISK && image !== undefined) a.writeBigUInt64LE(BigInt(fstatSync(image).size), 8); // size
  a.writeUInt32LE(node === ROOT ? 0o040755 : 0o100666, 60); // mode
  a.writeUInt32LE(1, 64); // nlink
  a.writeUInt32LE(4096, 80); // blksize
  return a;
}

const held: bigint[] = [];

const buf = Buffer.alloc((1 << 20) + 4096);
function loop(): void {
  let n: number;
  try {
    n = readSync(FD, buf, 0, buf.length, null);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENODEV") process.exit(0); // unmounted
    if (code === "EINTR" || code === "EAGAIN") return void setImmediate(loop);
    if (code === "EPERM") return void setTimeout(loop, 10); // not mounted yet

    throw e;
  }
  const opcode = buf.readUInt32LE(4);
  const unique = buf.readBigUInt64LE(8);
  const node = buf.readBigUInt64LE(16);
  const body = buf.subarray(40, n);
  switch (opcode) {
    case OP.INIT: {
      const out = Buffer.alloc(64);
      out.writeUInt32LE(7, 0);
      out.writeUInt32LE(31, 4);
      out.writeUInt32LE(body.readUInt32LE(8), 8); // max_readahead as asked
      out.writeUInt16LE(16, 16); // max_background
      out.writeUInt16LE(12, 18);
      out.writeUInt32LE(128 * 1024, 20); // max_write
      out.writeUInt32LE(1, 24); // time_gran
      reply(unique, 0, out);
      console.log("ready");
      break;
    }
    case OP.LOOKUP: {
      const name = body.subarray(0, body.indexOf(0)).toString();
      if (name === "release") {
        for (const u of held.splice(0)) reply(u, ENOTTY);
        console.log("released");
      }
      if (name === "fail") {
        failing = true;
        console.log("failing");
      }
      if (node === ROOT && name === "disk" && image !== undefined) {
        const e = Buffer.alloc(40);
        e.writeBigUInt64LE(DISK, 0);
        reply(unique, 0, Buffer.concat([e, attr(DISK)]));
        break;
      }
      if (node !== ROOT || name !== "tape") return void (reply(unique, ENOENT), setImmediate(loop));
      const e = Buffer.alloc(40);
      e.writeBigUInt64LE(FILE, 0);
      reply(unique, 0, Buffer.concat([e, attr(FILE)]));
      break;
    }
    case OP.GETATTR:
      reply(unique, 0, Buffer.concat([Buffer.alloc(16), attr(node)]));
      break;
    case OP.OPEN:
    case OP.OPENDIR:
      reply(unique, 0, Buffer.alloc(16));
      break;
    case OP.RELEASE:
    case OP.RELEASEDIR:
    case OP.FLUSH:
      reply(unique, 0);
      break;
    case OP.FORGET:
    case OP.BATCH_FORGET:
      break; // no reply
    case OP.READ: {
      const offset = Number(body.readBigUInt64LE(8));
      const size = body.readUInt32LE(16);
      const out = Buffer.alloc(size);
      const got = image === undefined ? 0 : readSync(image, out, 0, size, offset);
      reply(unique, 0, out.subarray(0, got));
      break;
    }
    case OP.WRITE: {
      const offset = Number(body.readBigUInt64LE(8));
      const size = body.readUInt32LE(16);
      if (failing || image === undefined) {
        reply(unique, EIO);
        break;
      }
      writeSync(image, body, 40, size, offset);
      const out = Buffer.alloc(8);
      out.writeUInt32LE(size, 0);
      reply(unique, 0, out);
      break;
    }
    case OP.FSYNC:
      reply(unique, failing ? EIO : 0);
      break;
    case OP.IOCTL:
      console.log(`ioctl ${body.readUInt32LE(12).toString(16)}`);
      held.push(unique);
      break;
    case OP.DESTROY:
      process.exit(0);
    default:
      reply(unique, ENOSYS);
  }
  setImmediate(loop);
}
loop();
