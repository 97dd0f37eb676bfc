/**
 * Server output a person can read: at the default level a request writes no line (a first run's setup code is
 * not buried under the web UI's asset requests); at `debug` each request writes exactly one line, its URL
 * redacted; on a terminal the lines are readable, elsewhere JSON.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DestinationStream } from "pino";
import { createLogger, isPretty } from "../../src/lib/logger.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

function capture(): DestinationStream & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    write(line: string) {
      lines.push(line);
    },
  };
}

async function someRequests(server: TestServer): Promise<number> {
  const requests = [
    { method: "GET" as const, url: "/healthz" },
    { method: "GET" as const, url: "/v1/me", headers: { authorization: server.adminAuth } },
    { method: "GET" as const, url: "/v1/me" },
    { method: "GET" as const, url: "/v1/no-such-route" },
    {
      method: "GET" as const,
      url: "/v1/me?token=hunter2-secret-in-a-url",
      headers: { authorization: server.adminAuth },
    },
  ];
  for (const request of requests) await server.app.inject(request);
  return requests.length;
}

describe("request log", () => {
  let quiet: TestServer;
  let verbose: TestServer;
  const quietLog = capture();
  const verboseLog = capture();

  beforeAll(async () => {
    quiet = await testServer("pglite", { logLevel: "info", logDestination: quietLog });
    verbose = await testServer("pglite", { logLevel: "debug", logDestination: verboseLog });
  });
  afterAll(async () => {
    await quiet?.cleanup();
    await verbose?.cleanup();
  });

  it("writes no line for a request at the default level", async () => {
    const before = quietLog.lines.length;
    await someRequests(quiet);
    const written = quietLog.lines.slice(before);
    expect(written.filter((line) => line.includes("/v1/me") || line.includes("/healthz"))).toEqual([]);
  });

  it("writes exactly one line per request at debug, with method, status and time, the URL redacted", async () => {
    const before = verboseLog.lines.length;
    const count = await someRequests(verbose);
    const entries = verboseLog.lines
      .slice(before)
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((entry) => entry.msg === "request");
    expect(entries).toHaveLength(count);
    expect(entries.map((entry) => [entry.method, entry.statusCode])).toEqual([
      ["GET", 200],
      ["GET", 200],
      ["GET", 401],
      ["GET", 404],
      ["GET", 200],
    ]);
    for (const entry of entries) expect(typeof entry.ms).toBe("number");
    expect(entries[4]!.url).toBe("/v1/me?token=[redacted]");
    expect(verboseLog.lines.join("")).not.toContain("hunter2");
  });
});

describe("log format", () => {
  it("is readable on a terminal and JSON elsewhere unless chosen", () => {
    expect(isPretty("auto", true)).toBe(true);
    expect(isPretty("auto", false)).toBe(false);
    expect(isPretty("json", true)).toBe(false);
    expect(isPretty("pretty", false)).toBe(true);
  });

  it("writes one readable line per entry in the pretty format, still redacted", () => {
    const out = capture();
    const logger = createLogger({ level: "info", format: "pretty", destination: out });
    logger.info({ password: "pretty-secret-value", role: "db-admin" }, "role activated");
    const text = out.lines.join("");
    expect(() => JSON.parse(out.lines[0]!)).toThrow();
    expect(text).toContain("INFO");
    expect(text).toContain("role activated");
    expect(text).toContain("db-admin");
    expect(text).not.toContain("pretty-secret-value");
    expect(text.trimEnd().split("\n")).toHaveLength(1);
  });

  it("writes JSON lines in the json format", () => {
    const out = capture();
    createLogger({ level: "info", format: "json", destination: out }).info({ role: "db-admin" }, "role activated");
    expect(JSON.parse(out.lines[0]!)).toMatchObject({ msg: "role activated", role: "db-admin", level: 30 });
  });
});
