import { describe, expect, it } from "vitest";
import { Logger } from "../../../src/log.ts";
import { audit, AUDIT_PATHS, auditPaths } from "../../../src/security/audit.ts";

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
    // Or given only the first ones and the count (a recovery does not list a million paths).
    expect(auditPaths(paths(AUDIT_PATHS), show, 1_000_000)).toEqual({ paths: a.paths, paths_total: 1_000_000 });
  });

  it("are written at every log_level: log_level = \"error\" hides the rest, never the audit trail", () => {
    const lines: string[] = [];
    const log = new Logger("error", "json", {}, { write: (l) => lines.push(l) });
    log.info("an ordinary line");
    log.warn("an ordinary warning");
    audit(log, { event: "job-start", user: "ndmp", peer: "10.0.0.1:5000", operation: "BACKUP", paths: ["/srv"], outcome: "started" });
    audit(log, { event: "refused", user: "x", peer: "10.0.0.2:5000", operation: "CONNECT_CLIENT_AUTH", outcome: "NOT_AUTHORIZED_ERR" });
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed.map((p) => [p.msg, p.level, p.audit])).toEqual([
      ["audit", "info", "job-start"],
      ["audit", "warn", "refused"],
    ]);
  });
});
