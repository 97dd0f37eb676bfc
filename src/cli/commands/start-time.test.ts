/** `stint activate --start`: what it reads as a start time, what it sends, and what it refuses before sending. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runCliCaptured, saveSignedIn } from "../../testing/cli-run.js";
import { isCliError } from "../exit-codes.js";
import { parseStart } from "./start-time.js";

const NOW = Date.parse("2030-01-01T12:00:00.000Z");
const iso = (offsetMs: number) => new Date(NOW + offsetMs).toISOString();

describe("parseStart", () => {
  it.each([
    ["+30s", iso(30_000)],
    ["+30m", iso(30 * 60_000)],
    [" +2h ", iso(2 * 3600_000)],
    ["+1d", iso(86_400_000)],
    ["2030-01-02T09:00:00Z", "2030-01-02T09:00:00.000Z"],
    ["2030-01-02T09:00Z", "2030-01-02T09:00:00.000Z"],
    ["2030-01-02T09:00:00.250Z", "2030-01-02T09:00:00.250Z"],
    ["2030-01-02T10:00:00+01:00", "2030-01-02T09:00:00.000Z"],
    ["2030-01-02T04:30-04:30", "2030-01-02T09:00:00.000Z"],
    // Without an offset: the local time zone, as `new Date` reads it.
    ["2030-01-02T09:00:00", new Date(2030, 0, 2, 9, 0, 0).toISOString()],
  ])("reads %s as %s", (text, expected) => {
    expect(parseStart(text, NOW)).toBe(expected);
  });

  it.each([
    "30m", // a duration without "+": ambiguous with a clock time
    "+30",
    "+-5m",
    "-5m",
    "+1w",
    "+10000000000d",
    "tomorrow",
    "2030-01-02", // a date without a time
    "2030-13-02T09:00:00Z",
    "2030-01-02T25:00:00Z",
    "2030-01-02 09:00:00Z",
    "1893456000",
    "",
    "2030-01-02T09:00:00Z; rm -rf /",
  ])("refuses %j as a usage error", (text) => {
    let caught: unknown;
    try {
      parseStart(text, NOW);
    } catch (error) {
      caught = error;
    }
    expect(isCliError(caught)).toBe(true);
    expect((caught as Error).message).toContain("--start");
  });
});

describe("stint activate --start (fake API)", () => {
  let dir: string;
  let sent: unknown[];
  let reply: (body: Record<string, unknown>) => { status: number; body: unknown };
  let listed: unknown[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "stint-cli-start-"));
    sent = [];
    await saveSignedIn(dir, { name: "alice", now: NOW });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const fakeFetch: typeof fetch = async (input, init) => {
    const url = new URL(String(input));
    const body = typeof init?.body === "string" ? (JSON.parse(init.body) as Record<string, unknown>) : {};
    if ((init?.method ?? "GET") === "GET" && url.pathname === "/v1/activation-requests")
      return new Response(JSON.stringify({ items: listed }), { status: 200 });
    if (init?.method === "POST" && url.pathname === "/v1/activation-requests") {
      sent.push(body);
      const r = reply(body);
      return new Response(JSON.stringify(r.body), { status: r.status });
    }
    return new Response(JSON.stringify({ error: { code: "ROUTE_NOT_FOUND", message: "no route" } }), { status: 404 });
  };
  const run = (argv: string[]) =>
    runCliCaptured(argv, { env: { STINT_CONFIG_DIR: dir, HOME: dir }, fetch: fakeFetch, now: () => NOW, isTTY: false });
  const scheduled = (startAt: string) => ({
    id: "0190b6a0-1111-7000-8000-00000000abcd",
    role: "prod-db-admin",
    requester: "alice",
    state: "approved",
    duration: "2h",
    reason: "schema migration, CHG-78",
    ticket: null,
    breakGlass: false,
    extendsRequestId: null,
    stages: [],
    stageIndex: 0,
    stageDeadline: null,
    submittedAt: iso(0),
    decidedAt: iso(0),
    activatedAt: null,
    expiresAt: null,
    endedAt: null,
    endReason: null,
    endedBy: null,
    extensions: 0,
    startAt,
    pendingExpiresAt: null,
    decisions: [],
  });

  it("sends startAt (relative to now) and says when it starts", async () => {
    reply = (body) => ({ status: 201, body: scheduled(body.startAt as string) });
    const result = await run([
      "activate",
      "prod-db-admin",
      "--start",
      "+30m",
      "--for",
      "2h",
      "--reason",
      "schema migration, CHG-78",
    ]);
    expect(result.code).toBe(0);
    expect(sent).toEqual([
      { role: "prod-db-admin", reason: "schema migration, CHG-78", duration: "2h", startAt: iso(30 * 60_000) },
    ]);
    expect(result.stdout).toContain(`it starts at ${iso(30 * 60_000).replace(".000Z", "Z")} (in 30m) for 2h`);
    expect(result.stderr).toContain("stint cancel 0190b6a0-1111-7000-8000-00000000abcd");
  });

  it("sends an ISO start in UTC", async () => {
    reply = (body) => ({ status: 201, body: scheduled(body.startAt as string) });
    await run([
      "activate",
      "prod-db-admin",
      "--start",
      "2030-01-02T10:00:00+01:00",
      "--reason",
      "schema migration, CHG-78",
    ]);
    expect(sent).toMatchObject([{ startAt: "2030-01-02T09:00:00.000Z" }]);
  });

  it("refuses a malformed start with exit 2 before sending anything", async () => {
    reply = () => ({ status: 500, body: {} });
    for (const bad of ["tomorrow", "30m", "2030-01-02"]) {
      const result = await run(["activate", "prod-db-admin", "--start", bad, "--reason", "schema migration, CHG-78"]);
      expect([bad, result.code]).toEqual([bad, 2]);
      expect(result.stderr).toContain("--start");
    }
    expect(sent).toEqual([]);
  });

  it("stint requests shows a scheduled request's start and when a pending one lapses undecided", async () => {
    listed = [
      scheduled(iso(2 * 3600_000)),
      {
        ...scheduled(iso(3600_000)),
        id: "0190b6a0-1111-7000-8000-00000000ef01",
        role: "prod-db-reader",
        state: "pending",
        stages: [{ name: "stage 1", count: 1, approvals: [], escalated: false }],
        decidedAt: null,
        pendingExpiresAt: iso(23 * 3600_000),
      },
    ];
    const result = await run(["requests"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/prod-db-admin\s+alice\s+scheduled \(starts in 2h\)/);
    expect(result.stdout).toMatch(/prod-db-reader\s+alice\s+pending\s+0s\s+1\/1\s+lapses in 23h/);
  });

  it("stint requests shows a pending stage's timeout when it comes before the request lapses, saying which", async () => {
    const pending = (id: string, stageDeadline: string | null) => ({
      ...scheduled(iso(3600_000)),
      id,
      role: "prod-db-reader",
      state: "pending",
      stages: [{ name: "stage 1", count: 1, approvals: [], escalated: false }],
      stageDeadline,
      decidedAt: null,
      pendingExpiresAt: iso(23 * 3600_000),
    });
    listed = [
      pending("0190b6a0-1111-7000-8000-00000000ef01", iso(29 * 60_000)),
      pending("0190b6a0-2222-7000-8000-00000000ef02", iso(30 * 3600_000)),
    ];
    const lines = (await run(["requests"])).stdout.trim().split("\n");
    expect(lines[1]).toMatch(/^0000ef01\s+prod-db-reader\s+alice\s+pending\s+0s\s+1\/1\s+stage times out in 29m\s/);
    // A stage that would time out after the request lapses: the lapse comes first.
    expect(lines[2]).toMatch(/^0000ef02\s+prod-db-reader\s+alice\s+pending\s+0s\s+1\/1\s+lapses in 23h\s/);
  });

  it("shows the server's refusal of a start in the past or too far ahead, with its exit code", async () => {
    reply = () => ({
      status: 400,
      body: {
        error: {
          code: "START_TOO_FAR",
          message: "The start time is more than 30d ahead.",
          details: { maxStartDelay: "30d" },
        },
      },
    });
    const result = await run(["activate", "prod-db-admin", "--start", "+400d", "--reason", "schema migration, CHG-78"]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("START_TOO_FAR");
    expect(sent).toHaveLength(1);
  });
});
