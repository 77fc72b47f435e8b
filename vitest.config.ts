import { defineConfig } from "vitest/config";

/**
 * debian-package.test.ts installs the .deb on this machine (/etc/ndmpd, /var/lib/ndmpd,
 * /usr/sbin/ndmpd) for a while; every CLI call without --config reads /etc/ndmpd/ndmpd.toml
 * when it exists, so that file runs alone, after all the others.
 */
const HOST_INSTALL = "test/integration/debian-package.test.ts";

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
      { extends: true, test: { name: "suite", include: ["test/**/*.test.ts"], exclude: [HOST_INSTALL], sequence: { groupOrder: 0 } } },
      // groupOrder 1: starts only once every file of the suite has finished, and runs by itself.
      { extends: true, test: { name: "host-install", include: [HOST_INSTALL], sequence: { groupOrder: 1 } } },
    ],
  },
});
