import { defineConfig } from "vitest/config";

const shared = { testTimeout: 240_000, hookTimeout: 240_000, pool: "forks" as const };

/**
 * Files under test/ that change process-wide state another file in the same worker would meet, so each runs in
 * its own process (project "test"). Every other file under test/security, test/http, test/fuzz and
 * test/reliability shares its worker's modules (project "test-shared"): it writes no `process.env`, stubs no
 * globals, timers or modules, leaves no `process.on` handler, chdir or exit code behind, and puts back any
 * module-level setting it changes (failpoints, the connectors' address policy) in afterEach/afterAll.
 * A new file there must keep to that rule, or be added here with the reason.
 */
const OWN_PROCESS = [
  // vi.mock("node:dns/promises"): a mock applies to modules imported after it, and in a shared worker they are not.
  "test/security/sso-entra-tenants.test.ts",
  // Measure process.memoryUsage().arrayBuffers growth: buffers and servers an earlier file left would count.
  "test/security/pg-large-messages.test.ts",
  "test/security/pg-oversized-frames.test.ts",
  "test/security/mysql-memory-bounds.test.ts",
];
const SHARED_DIRS = ["test/security", "test/http", "test/fuzz", "test/reliability"];

export default defineConfig({
  test: {
    fileParallelism: true,
    maxWorkers: 2,
    projects: [
      {
        // Unit and in-process integration tests share their worker's modules across files (no per-file re-import
        // of the server's module graph, ~2-3 s CPU a file): they stub no globals, env or timers and set up their
        // own stores and servers. The whole src suite passes this way (checked with --no-isolate).
        test: { ...shared, name: "src", include: ["src/**/*.test.ts"], isolate: false },
      },
      {
        // Security, HTTP, fuzz and reliability tests that leave no process-wide state behind (see OWN_PROCESS):
        // one worker imports the server's module graph once for all of them instead of once a file.
        test: {
          ...shared,
          name: "test-shared",
          include: SHARED_DIRS.map((dir) => `${dir}/**/*.test.ts`),
          exclude: OWN_PROCESS,
          isolate: false,
        },
      },
      {
        // End-to-end tests (whole servers, Chromium, daemons; helpers such as test/e2e/workload-issuer.ts keep
        // per-file state at module level) and OWN_PROCESS: each file in its own process.
        test: {
          ...shared,
          name: "test",
          include: ["test/e2e/**/*.test.ts", "test/web/**/*.test.ts", ...OWN_PROCESS],
          isolate: true,
        },
      },
    ],
  },
});
