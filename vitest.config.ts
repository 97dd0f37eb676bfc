import { defineConfig } from "vitest/config";

const shared = { testTimeout: 240_000, hookTimeout: 240_000, pool: "forks" as const };

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
        // End-to-end, security and reliability tests spawn servers, browsers and daemons and set process
        // state: each file in its own process.
        test: { ...shared, name: "test", include: ["test/**/*.test.ts"], isolate: true },
      },
    ],
  },
});
