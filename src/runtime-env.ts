// Options the runtime reads once, when the process starts, before any of our code runs: the
// compiled binary sets them by starting itself again, in place (execve: same pid, same
// descriptors), with them in its environment. It is the first import of the binary's entry point,
// launch.ts, a small bundle apart from the program (main.ts), so that the program is loaded once,
// in the process that stays. An option already in the environment (the operator's) is kept.
//
//  - BUN_JSC_useFTLJIT=0 for `ndmpd backup` and `ndmpd recover`: they run the DMA, the data
//    service and the mover in one short process, in which JavaScriptCore's top tier (FTL) costs
//    more CPU compiling than it gives back (with it off, a 20,000-file backup took about a third
//    less CPU). The server runs for days and keeps every tier.
//  - MIMALLOC_PURGE_DELAY=200 for the same two: by default the allocator hands freed memory back
//    to the kernel 10 ms after it is freed, and the next buffer of the job faults it in again,
//    page by page (tens of microseconds a page on this kind of VM). Measured, `ndmpd backup` of
//    20,000 files, three sets of 7-9 runs alternated, medians: default 0.80 / 0.86 / 0.90 s,
//    200 ms 0.76 / 0.86 / 0.84 s, -1 (never hand back) 0.77 / - / 0.86 s; peak RSS at 1,000,000
//    files: default 118-124 MiB, 200 ms 120-121 MiB, -1 133-137 MiB (which is why not -1:
//    memory would grow with the tree).
//    The server showed no difference in alternated runs and keeps the default.
import { LIBC_CANDIDATES } from "./native/libc.ts";

/** The job commands that run whole in this process. */
const SHORT_JOBS = new Set(["backup", "recover"]);
/** What they start with (see above); MIMALLOC_PURGE_DELAY in milliseconds. */
const JOB_OPTIONS: Record<string, string> = { BUN_JSC_useFTLJIT: "0", MIMALLOC_PURGE_DELAY: "200" };
const keepAlive: unknown[] = [];

/**
 * What to add to the environment before the runtime starts (nothing: run as we are): only in
 * the compiled binary, only for the commands above, only what is not set yet (so never twice).
 */
export function startEnv(argv: readonly string[], env: NodeJS.ProcessEnv, compiled: boolean): Record<string, string> {
  const add: Record<string, string> = {};
  if (!compiled || !SHORT_JOBS.has(argv[2] ?? "")) return add;
  for (const [name, value] of Object.entries(JOB_OPTIONS)) if (env[name] === undefined) add[name] = value;
  return add;
}

/** A compiled binary runs its bundle from Bun's embedded filesystem. */
function isCompiled(): boolean {
  return typeof process.versions.bun === "string" && (process.argv[1] ?? "").startsWith("/$bunfs/");
}

async function restart(add: Record<string, string>): Promise<void> {
  const specifier = "bun:ffi"; // a variable: Node-side bundlers must not resolve it
  const ffi = (await import(specifier)) as typeof import("bun:ffi");
  let lib: ReturnType<typeof openExecve> | undefined;
  try {
    lib = openExecve(ffi);
  } catch {
    return; // no libc to bind: run as we are
  }
  const cstr = (s: string) => Buffer.from(`${s}\0`, "utf8");
  const vector = (items: Buffer[]) => {
    const v = new BigUint64Array(items.length + 1);
    items.forEach((b, i) => (v[i] = BigInt(ffi.ptr(b))));
    return v;
  };
  const path = cstr(process.execPath);
  const args = [path, ...process.argv.slice(2).map(cstr)];
  const env = [...Object.entries(process.env), ...Object.entries(add)].map(([k, v]) => cstr(`${k}=${v ?? ""}`));
  const argv = vector(args);
  const envp = vector(env);
  keepAlive.push(args, env, argv, envp); // what the pointers point at lives across the call
  // Returns only when it failed (then this process simply goes on as it is).
  lib.symbols.execve(ffi.ptr(path), ffi.ptr(argv), ffi.ptr(envp));
  keepAlive.length = 0;
  lib.close();
}

function openExecve(ffi: typeof import("bun:ffi")) {
  for (const name of LIBC_CANDIDATES) {
    try {
      return ffi.dlopen(name, { execve: { args: ["ptr", "ptr", "ptr"], returns: "i32" } });
    } catch {
      // try the next name
    }
  }
  throw new Error("no libc");
}

const add = startEnv(process.argv, process.env, isCompiled());
if (Object.keys(add).length > 0) await restart(add);
