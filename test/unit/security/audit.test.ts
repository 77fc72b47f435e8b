import { describe, expect, it } from "vitest";
import { AUDIT_PATHS, auditPaths } from "../../../src/security/audit.ts";

describe("audit records", () => {
  const paths = (n: number) => Array.from({ length: n }, (_, i) => Buffer.from(`/r/${i}`));
  const show = (p: Buffer) => p.toString("latin1");

  it("name every path of a small job, without a count", () => {
    expect(auditPaths(paths(3), show)).toEqual({ paths: ["/r/0", "/r/1", "/r/2"] });
    expect(auditPaths(paths(AUDIT_PATHS), show).paths_total).toBeUndefined();
  });

  it("name the first paths of a million-entry recovery and count them all, so the line stays small", () => {
    const a = auditPaths(paths(1_000_000), show);
    expect(a.paths).toHaveLength(AUDIT_PATHS);
    expect(a.paths![0]).toBe("/r/0");
    expect(a.paths_total).toBe(1_000_000);
  });
});
