// Compiled with `bun build --compile` by linux-sg.test.ts: opens SCSI generic devices that cannot
// work (a missing node, a regular file) and prints the error codes as one JSON line.
//   sg-probe <missing-path> <regular-file>
import { openLinuxSg } from "../../../../src/devices/changer/linux-sg.ts";
import { loadNative } from "../../../../src/native/index.ts";

const [missing, regular] = process.argv.slice(2);
const native = await loadNative();
const result: Record<string, unknown> = { runtime: native.runtime };
for (const [key, p] of [["missing", missing], ["regular", regular]] as const) {
  try {
    await openLinuxSg(p!, "probe");
    result[key] = "opened?!";
  } catch (error) {
    result[key] = { code: (error as { code?: string }).code, message: (error as Error).message };
  }
}
// The address of a buffer is a real, non-zero pointer under FFI.
result.address = native.ioctl?.address ? native.ioctl.address(Buffer.alloc(16)) !== 0n : null;
console.log(JSON.stringify(result));
