/**
 * The audit trail: one structured line per job start and end and per refused request, with who
 * (user, peer address), what (operation, paths, devices), how much (bytes) and the outcome.
 * They are log lines (msg "audit"), so `log_format = "json"` makes them one JSON object each for
 * a log shipper; refusals are warnings, jobs info, and both are written at every `log_level`.
 */
import type { Logger } from "../log.ts";

export type AuditEvent = "job-start" | "job-end" | "refused";

export interface AuditRecord {
  event: AuditEvent;
  /** The authenticated user ("" with auth "none"; the name tried, for a failed login). */
  user: string | undefined;
  /** The control connection's peer ("addr:port"); a data connection's refusal names its own. */
  peer: string | undefined;
  /** The NDMP request (DATA_START_BACKUP ...) or the job (BACKUP, RECOVER, MOVER_READ ...). */
  operation: string;
  /** At most AUDIT_PATHS of them; `paths_total` counts them all when there are more. */
  paths?: string[];
  paths_total?: number;
  devices?: string[];
  bytes?: bigint | number;
  /** "started", a halt reason (SUCCESSFUL, ABORTED ...), or the error of a refusal. */
  outcome: string;
  /** Why a request was refused, in words. */
  why?: string;
  /** A job's data connection is in TLS (NDMPD_DATA_TLS). */
  tls?: boolean;
}

/** Paths an audit line names: a million-entry nlist must not make two lines of 60 MB each. */
export const AUDIT_PATHS = 32;

/**
 * The paths an audit record keeps: the first AUDIT_PATHS, and the count when there are more.
 * `total` is that count when the caller passes only the first ones (a recovery's nlist).
 */
export function auditPaths(paths: readonly Buffer[], show: (p: Buffer) => string, total = paths.length): Pick<AuditRecord, "paths" | "paths_total"> {
  const kept = paths.slice(0, AUDIT_PATHS).map(show);
  return total > AUDIT_PATHS ? { paths: kept, paths_total: total } : { paths: kept };
}

export function audit(log: Logger, r: AuditRecord): void {
  const { event, ...fields } = r;
  const clean = Object.fromEntries(Object.entries({ audit: event, ...fields }).filter(([, v]) => v !== undefined));
  log.record(event === "refused" ? "warn" : "info", "audit", clean);
}
