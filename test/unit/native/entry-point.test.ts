// Where a worker's code is (entry-point.ts). The compiled case that finds it is proven by the
// probes built like ndmpd (ioctl-async.test.ts, scan.test.ts) and by the binary's own tests.
import { describe, expect, it } from "vitest";
import { entryPointUrl } from "../../../src/native/entry-point.ts";

describe("entryPointUrl", () => {
  it("from source: the .ts file beside the asking module", () => {
    expect(entryPointUrl("file:///repo/src/engine/scan.ts", "engine/scan-worker.ts")?.href).toBe("file:///repo/src/engine/scan-worker.ts");
    expect(entryPointUrl("file:///repo/src/native/ioctl-async.ts", "native/ioctl-thread.ts")?.href).toBe("file:///repo/src/native/ioctl-thread.ts");
  });

  it("in a compiled binary without that entry point: none (the caller works without the thread)", () => {
    expect(entryPointUrl("file:///$bunfs/root/main.js", "engine/no-such-worker.ts")).toBeUndefined();
  });
});
