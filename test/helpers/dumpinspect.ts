/**
 * Where dumpinspect.py (the team's strict checker of dump streams, ../shared/spec/tools/) is.
 * The repository carries a copy in test/tools/ so that a clone checks its dump streams on a
 * machine without ../shared; where ../shared is present, its copy is the one used, and
 * test/unit/tools.test.ts fails if the two have drifted apart.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const SHARED_DUMPINSPECT = fileURLToPath(new URL("../../../shared/spec/tools/dumpinspect.py", import.meta.url));
export const VENDORED_DUMPINSPECT = fileURLToPath(new URL("../tools/dumpinspect.py", import.meta.url));
export const DUMPINSPECT = existsSync(SHARED_DUMPINSPECT) ? SHARED_DUMPINSPECT : VENDORED_DUMPINSPECT;
