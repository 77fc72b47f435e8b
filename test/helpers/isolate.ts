/**
 * Per test file (vitest setupFiles): a private state directory. With no state_dir in a
 * configuration and no --state-dir, ndmpd (server, CLI and `remote` DMA) uses /var/lib/ndmpd as
 * root, or ~/.local/state/ndmpd: state that test files running at once would share (the
 * embedded library's cartridges, the remote catalog). NDMPD_STATE_DIR points every child that
 * inherits this environment at a directory of this file's own instead. A test that means to
 * use the defaults (the Debian package's) removes the variable from its child's environment.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";

const dir = mkdtempSync(join(tmpdir(), "ndmpd-test-state-"));
process.env.NDMPD_STATE_DIR = dir;
process.env.XDG_STATE_HOME = dir;
afterAll(() => rmSync(dir, { recursive: true, force: true }));
