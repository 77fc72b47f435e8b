// `ndmpd backup` and `ndmpd recover` run the DMA, the data service and the mover in one short
// process, and in one that short JavaScriptCore's top tier (FTL) costs more CPU compiling than it
// gives back: with it off, a 20,000-file backup took about a third less CPU. JSC reads its options
// (BUN_JSC_*) once, when the VM starts, before any of our code runs; so the compiled binary
// starts itself again, in place (execve: same pid, same descriptors), with the option set.
// It is the first import of the binary's entry point, launch.ts, a small bundle apart from the
// program (main.ts), so that the program is loaded once, in the process that stays.
// The server (`ndmpd serve`) runs for days and keeps every tier.
import { LIBC_CANDIDATES } from "./native/libc.ts";

/** The job commands that run whole in this process. */
const SHORT_JOBS = new Set(["backup", "recover"]);
const OPTION = "BUN_JSC_useFTLJIT";
const keepAlive: unknown[] = [];

/** Whether to start again: the compiled binary, a job command, and the option not chosen yet. */
export function wantsRestart(argv: readonly string[], env: NodeJS.ProcessEnv, compiled: boolean): boolean {
  return compiled && SHORT_JOBS.has(argv[2] ?? "") && env[OPTION] === undefined;
}

/** A compiled binary runs its bundle from Bun's embedded filesystem. */
function isCompiled(): boolean {
  return typeof process.versions.bun === "string" && (process.argv[1] ?? "").startsWith("/$bunfs/");
}

async function restart(): Promise<void> {
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
  const env = [...Object.entries(process.env).map(([k, v]) => cstr(`${k}=${v ?? ""}`)), cstr(`${OPTION}=0`)];
  const argv = vector(args);
  const envp = vector(env);
  keepAlive.push(args, env, argv, envp); // what the pointers point at lives across the call
  // Returns only when it failed (then this process simply goes on, with every tier).
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

if (wantsRestart(process.argv, process.env, isCompiled())) await restart();
