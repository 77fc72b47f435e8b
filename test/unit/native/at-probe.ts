// Run under Bun by at.test.ts: the *at calls of the native layer (AtCallsApi) on a scratch directory
// prepared by the test, printed as one JSON line.
//   at-probe <dir>   dir holds a/ (a directory), l -> /etc (a symlink)
import fs from "node:fs";
import * as C from "../../../src/native/at.ts";
import { loadNative } from "../../../src/native/index.ts";

const dir = process.argv[2];
if (!dir) throw new Error("usage: at-probe <dir>");
const native = await loadNative();
const at = native.atCalls;
if (!at) throw new Error(`no AtCallsApi: ${native.reason}`);
const b = (s: string) => Buffer.from(s);
const code = (run: () => unknown): string => {
  try {
    run();
    return "ok";
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
};
const STRICT = C.RESOLVE_BENEATH | C.RESOLVE_NO_SYMLINKS | C.RESOLVE_NO_MAGICLINKS;
const PATH_DIR = C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC;

const root = fs.openSync(dir, PATH_DIR);
const result: Record<string, unknown> = {};
// What openat2 lets through under the restore writer's flags, and what it refuses.
result.resolve = Object.fromEntries(
  ["a", "l", "l/passwd", "a/../l", "..", "a/../..", "/etc"].map((p) => [p, code(() => fs.closeSync(at.openat2(root, b(p), PATH_DIR, 0, STRICT)))]),
);
// A magic link (absolute, so refused twice over) and RESOLVE_NO_MAGICLINKS on its own.
result.magic = code(() => fs.closeSync(at.openat2(C.AT_FDCWD, b(`/proc/self/fd/${root}`), PATH_DIR, 0, C.RESOLVE_NO_MAGICLINKS)));
const a = at.openat2(root, b("a"), PATH_DIR, 0, STRICT);
const f = at.openat(a, b("f"), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW | C.O_CLOEXEC, 0o640);
fs.writeSync(f, b("content"));
fs.closeSync(f);
result.exclusive = code(() => at.openat(a, b("f"), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600));
at.mkdirat(a, b("sub"), 0o711);
at.symlinkat(b("/etc"), a, b("sym"));
result.noFollowOpen = code(() => at.openat(a, b("sym"), C.O_WRONLY | C.O_CREAT | C.O_NOFOLLOW, 0o600));
at.linkat(a, b("f"), a, b("hard"), 0);
at.linkat(a, b("sym"), a, b("hardsym"), 0); // the symlink itself, not /etc
at.mknodat(a, b("fifo.tmp"), 0o010600, 0, 0);
at.renameat(a, b("fifo.tmp"), a, b("fifo"));
at.utimensat(a, b("sym"), { sec: 1_000_000_000, nsec: 123_456_789 }, { sec: 4_102_444_800, nsec: 987_654_321 }, C.AT_SYMLINK_NOFOLLOW);
result.chownSelf = code(() => at.fchownat(a, b("sym"), process.getuid!(), process.getgid!(), C.AT_SYMLINK_NOFOLLOW));
at.unlinkat(a, b("hard"), 0);
result.rmdirFile = code(() => at.unlinkat(a, b("f"), C.AT_REMOVEDIR));
at.unlinkat(a, b("sub"), C.AT_REMOVEDIR);
result.missing = code(() => at.unlinkat(a, b("nothing"), 0));
const sym = fs.lstatSync(`${dir}/a/sym`, { bigint: true });
result.symTimes = [sym.atimeNs.toString(), sym.mtimeNs.toString()];
result.names = fs.readdirSync(`${dir}/a`).sort();
result.fileMode = fs.lstatSync(`${dir}/a/f`).mode & 0o777;
result.fifo = fs.lstatSync(`${dir}/a/fifo`).isFIFO();
result.hardsym = fs.lstatSync(`${dir}/a/hardsym`).isSymbolicLink();
console.log(JSON.stringify(result));
