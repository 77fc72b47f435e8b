/**
 * Recovery targets for engine tests: plain objects (what a test writes and checks) turned into
 * the engines' Targets (src/engine/targets.ts), and the outcome copied back onto them.
 */
import { Targets } from "../../src/engine/targets.ts";
import { Nlist } from "../../src/protocol/xdr/nlist.ts";
import { NLIST_V4 } from "../../src/protocol/xdr/v4.ts";

export interface TargetSpec {
  /** The archived path, relative ("" = the whole image). */
  original: Buffer;
  /** Its absolute destination. */
  destination: Buffer;
  node: bigint;
  fhInfo: bigint;
  /** Filled in by reportBack. */
  found?: boolean;
  error?: string;
  status?: number;
}

/** The Targets of these specs: each one an nlist entry "/original" -> destination. */
export function targetsOf(specs: readonly TargetSpec[]): Targets {
  const entries = specs.map((s) => ({
    original_path: Buffer.concat([Buffer.from("/"), s.original]),
    destination_path: s.destination,
    name: "",
    other_name: "",
    node: s.node,
    fh_info: s.fhInfo,
  }));
  return new Targets(Nlist.from(NLIST_V4, entries));
}

/** Copies each target's outcome (found, first error and its status) onto its spec. */
export function reportBack(targets: Targets, specs: TargetSpec[]): void {
  specs.forEach((s, i) => {
    s.found = targets.isFound(i);
    s.error = targets.error(i);
    s.status = targets.status(i);
  });
}
