import { defineConfig } from "vitest/config";

/** Tests that change the machine itself (they install the Debian package): run alone, last. */
const MACHINE = ["test/integration/debian-package.test.ts"];

export default defineConfig({
  test: {
    // Integration tests start real processes (our binary, ndmjob, tar, restore):
    // give them room, and never run two heavy suites on the two cores at once.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 2,
    // Each test file gets its own state directory (NDMPD_STATE_DIR): files run two at a time.
    setupFiles: ["test/helpers/isolate.ts"],
    projects: [
      { extends: true, test: { name: "suite", include: ["test/**/*.test.ts"], exclude: MACHINE, sequence: { groupOrder: 0 } } },
      // groupOrder 1: starts only once every file of the suite has finished, and runs by itself.
      { extends: true, test: { name: "machine", include: MACHINE, sequence: { groupOrder: 1 }, maxWorkers: 1 } },
    ],
  },
});
