/**
 * The access commands (roles, activate, requests, decisions, check, activation token) against a
 * scripted fake API: what is sent, what is printed, and the exit codes scripts rely on.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runCliCaptured, saveSignedIn } from "../../testing/cli-run.js";
import { exitCodeFor } from "../exit-codes.js";
import { describePolicy, humanSpan, pollDelay, shortId } from "./access.js";

const NOW = Date.parse("2030-01-01T12:00:00.000Z");
const iso = (offsetMs: number) => new Date(NOW + offsetMs).toISOString();
const ID = "0190b6a0-1111-7000-8000-00000000abcd";
const OTHER_ID = "0190b6a0-1111-7000-8000-00000000ef01";

function request(overrides: Record<string, unknown> = {}) {
  return {
    id: ID,
    role: "prod-db-reader",
    requester: "alice",
    state: "pending",
    duration: "1h",
    reason: "investigate slow queries on orders",
    ticket: "INC-42",
    breakGlass: false,
    extendsRequestId: null,
    stages: [{ name: "stage 1", count: 1, approvals: [], escalated: false }],
    stageIndex: 0,
    stageDeadline: null,
    submittedAt: iso(-5 * 60_000),
    decidedAt: null,
    activatedAt: null,
    expiresAt: null,
    endedAt: null,
    endReason: null,
    endedBy: null,
    extensions: 0,
    decisions: [],
    ...overrides,
  };
}

const active = request({
  state: "active",
  activatedAt: iso(0),
  expiresAt: iso(23 * 60_000 + 10_000),
  decisions: [{ stage: 0, approver: "carol", decision: "approve", reason: "go ahead", decidedAt: iso(0) }],
});

interface Call {
  method: string;
  url: URL;
  body: unknown;
}
type Reply = { status: number; body?: unknown };

describe("access commands (fake API)", () => {
  let dir: string;
  let calls: Call[];
  let handlers: ((call: Call) => Reply | undefined)[];

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "stint-cli-access-"));
    calls = [];
    handlers = [];
    await saveSignedIn(dir, { name: "alice", now: NOW });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function on(method: string, pathname: string, reply: (call: Call) => Reply): void {
    handlers.push((call) => (call.method === method && call.url.pathname === pathname ? reply(call) : undefined));
  }

  const fakeFetch: typeof fetch = async (input, init) => {
    const call: Call = {
      method: init?.method ?? "GET",
      url: new URL(String(input)),
      body: typeof init?.body === "string" ? JSON.parse(init.body) : undefined,
    };
    calls.push(call);
    for (const handler of handlers) {
      const reply = handler(call);
      if (reply) return new Response(reply.body === undefined ? "" : JSON.stringify(reply.body), reply);
    }
    return new Response(JSON.stringify({ error: { code: "ROUTE_NOT_FOUND", message: "no route" } }), { status: 404 });
  };

  async function run(argv: string[], now: () => number = () => NOW) {
    return runCliCaptured(argv, { env: { STINT_CONFIG_DIR: dir, HOME: dir }, fetch: fakeFetch, now, isTTY: false });
  }

  it("roles: policy in plain words, and active roles with their time left", async () => {
    const policy = {
      defaultDuration: "1h",
      maxDuration: "2h",
      approvalRequired: true,
      approvalStages: 1,
      mfaRequired: true,
      ticketRequired: true,
      breakGlass: false,
      maxExtensions: 1,
    };
    const items = [
      {
        role: "prod-db-reader",
        description: null,
        risk: "high",
        eligibleUntil: "2027-11-24T00:00:00.000Z",
        policy,
        state: "active",
        requestId: ID,
        expiresAt: iso(23 * 60_000 + 30_000),
      },
      {
        role: "staging-admin",
        description: null,
        risk: "low",
        eligibleUntil: null,
        policy: { ...policy, approvalRequired: false, approvalStages: 0, mfaRequired: false, ticketRequired: false },
        state: null,
        requestId: null,
        expiresAt: null,
      },
    ];
    on("GET", "/v1/me/roles", () => ({ status: 200, body: { items } }));
    const result = await run(["roles"]);
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^ROLE\s+STATE\s+RISK\s+POLICY\s+ELIGIBLE UNTIL$/);
    expect(lines[1]).toContain("active, 23m left");
    expect(lines[1]).toContain("up to 2h (default 1h), 1 approval stage, MFA, ticket required, 1 extension");
    expect(lines[1]).toContain("2027-11-24T00:00:00Z");
    expect(lines[2]).toMatch(
      /staging-admin\s+eligible\s+low\s+up to 2h \(default 1h\), no approval, 1 extension\s+no end/,
    );

    const json = await run(["roles", "--json"]);
    expect(JSON.parse(json.stdout)).toEqual({ items });
  });

  it("activate sends the role, duration, reason and ticket, and exits 0 at once without --wait", async () => {
    on("POST", "/v1/activation-requests", () => ({ status: 201, body: request() }));
    const result = await run([
      "activate",
      "prod-db-reader",
      "--for",
      "1h",
      "--reason",
      "investigate slow queries on orders",
      "--ticket",
      "INC-42",
    ]);
    expect(result.code).toBe(0);
    expect(calls[0]!.body).toEqual({
      role: "prod-db-reader",
      duration: "1h",
      reason: "investigate slow queries on orders",
      ticket: "INC-42",
    });
    expect(result.stdout).toBe(
      `Request ${ID} (prod-db-reader for alice) is pending: stage 1/1 (stage 1): 0 of 1 approvals.\n`,
    );
    expect(result.stderr).toContain(`stint cancel ${ID}`);
  });

  it("activate refuses a missing reason or a malformed duration before sending anything", async () => {
    expect((await run(["activate", "prod-db-reader"])).code).toBe(2);
    expect((await run(["activate", "prod-db-reader", "--reason", "x", "--for", "an hour"])).code).toBe(2);
    expect(calls).toEqual([]);
  });

  it("activate --wait follows the request until it is active and prints the expiry", async () => {
    on("POST", "/v1/activation-requests", () => ({ status: 201, body: request() }));
    on("GET", `/v1/activation-requests/${ID}`, () => ({ status: 200, body: active }));
    const result = await run(["activate", "prod-db-reader", "--reason", "investigate slow queries", "--wait"]);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain("waiting for approval: stage 1/1 (stage 1): 0 of 1 approvals");
    expect(result.stdout).toBe("prod-db-reader is active until 2030-01-01T12:23:10Z (23m left).\n");
  });

  it("activate --wait exits 5 with the approver's reason when the request is denied", async () => {
    on("POST", "/v1/activation-requests", () => ({ status: 201, body: request() }));
    const denied = request({
      state: "denied",
      decisions: [{ stage: 0, approver: "carol", decision: "deny", reason: "no change window", decidedAt: iso(0) }],
    });
    on("GET", `/v1/activation-requests/${ID}`, () => ({ status: 200, body: denied }));
    const result = await run(["activate", "prod-db-reader", "--reason", "investigate slow queries", "--wait"]);
    expect(result.code).toBe(5);
    expect(result.stderr).toContain("error: REQUEST_DENIED: denied by carol: no change window\n");

    const json = await run(["activate", "prod-db-reader", "--reason", "investigate slow", "--wait", "--json"]);
    expect(json.code).toBe(5);
    expect(JSON.parse(json.stdout)).toMatchObject({ id: ID, state: "denied" });
  });

  it("activate --wait exits 1 when the request ends otherwise, or when the wait times out", async () => {
    on("POST", "/v1/activation-requests", () => ({ status: 201, body: request() }));
    let state = "cancelled";
    on("GET", `/v1/activation-requests/${ID}`, () => ({
      status: 200,
      body: request(state === "cancelled" ? { state, endReason: "cancelled by the requester" } : {}),
    }));
    const ended = await run(["activate", "prod-db-reader", "--reason", "investigate slow", "--wait"]);
    expect(ended.code).toBe(1);
    expect(ended.stderr).toContain("error: REQUEST_ENDED: the request ended cancelled: cancelled by the requester");

    state = "pending";
    let clock = NOW;
    const timedOut = await run(
      ["activate", "prod-db-reader", "--reason", "investigate slow", "--wait", "--timeout", "1m"],
      () => (clock += 40_000),
    );
    expect(timedOut.code).toBe(1);
    expect(timedOut.stderr).toMatch(/error: WAIT_TIMEOUT: request \S+ is still pending after 1m; it stays open/);
  });

  it("activate --otp steps up first; without it MFA_STEP_UP_REQUIRED exits 4 with a hint", async () => {
    let stepped = false;
    on("POST", "/v1/auth/step-up", () => {
      stepped = true;
      return { status: 200, body: { mfaAt: iso(0) } };
    });
    on("POST", "/v1/activation-requests", () =>
      stepped
        ? { status: 201, body: active }
        : {
            status: 401,
            body: { error: { code: "MFA_STEP_UP_REQUIRED", message: "This role needs a recent MFA check." } },
          },
    );
    const refused = await run(["activate", "prod-db-reader", "--reason", "investigate slow queries"]);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain(
      "MFA_STEP_UP_REQUIRED: This role needs a recent MFA check; add --otp - (the code on stdin) or set STINT_TOTP_CODE",
    );

    const done = await run(["activate", "prod-db-reader", "--reason", "investigate slow queries", "--otp", "123 456"]);
    expect(done.code).toBe(0);
    expect(calls.find((call) => call.url.pathname === "/v1/auth/step-up")!.body).toEqual({ otp: "123456" });
    expect(done.stdout).toContain("prod-db-reader is active until");
  });

  it("MFA_STEP_UP_REQUIRED for someone with no authenticator app says to enrol one, not to add --otp", async () => {
    on("GET", "/v1/me", () => ({
      status: 200,
      body: {
        id: ID,
        kind: "user",
        name: "alice",
        email: null,
        displayName: null,
        manager: null,
        status: "active",
        disabledBy: null,
        platformRoles: ["user"],
        mfaEnrolled: false,
        groups: [],
        createdAt: iso(-86_400_000),
      },
    }));
    on("POST", "/v1/activation-requests", () => ({
      status: 401,
      body: { error: { code: "MFA_STEP_UP_REQUIRED", message: "This role needs a recent MFA check." } },
    }));
    const refused = await run(["activate", "prod-db-reader", "--reason", "investigate slow queries"]);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain(
      "MFA_STEP_UP_REQUIRED: This role needs a recent MFA check; you have no authenticator app enrolled: run `stint mfa enroll` first",
    );
    expect(refused.stderr).not.toContain("--otp");
  });

  it("approve of a short id nothing waiting matches says it may be decided already, not 'of yours'", async () => {
    on("GET", "/v1/activation-requests", (call) =>
      call.url.searchParams.get("scope") === "all"
        ? { status: 403, body: { error: { code: "FORBIDDEN", message: "You are not allowed to do that." } } }
        : { status: 200, body: { items: [] } },
    );
    const result = await run(["approve", "7c1e9a42"]);
    expect(result.code).toBe(6);
    expect(result.stderr).toContain(
      'NOT_FOUND: no request waiting for your decision matches "7c1e9a42": it may be decided already',
    );
    expect(result.stderr).not.toContain("of yours");
  });

  it("requests --pending asks for the inbox and shows a table with short ids", async () => {
    const ended = { ...active, state: "deactivated", endedAt: iso(-60_000), endedBy: "alice" };
    on("GET", "/v1/activation-requests", () => ({ status: 200, body: { items: [request(), active, ended] } }));
    const result = await run(["requests", "--pending", "--role", "prod-db-reader"]);
    expect(result.code).toBe(0);
    expect(calls[0]!.url.searchParams.get("scope")).toBe("inbox");
    expect(calls[0]!.url.searchParams.get("role")).toBe("prod-db-reader");
    const lines = result.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^ID\s+ROLE\s+REQUESTER\s+STATE\s+AGE\s+STAGE\s+EXPIRES\s+MFA TO APPROVE\s+REASON$/);
    expect(lines[1]).toMatch(/^0000abcd\s+prod-db-reader\s+alice\s+pending\s+5m\s+1\/1\s+-\s+-\s+investigate/);
    expect(lines[2]).toMatch(/^0000abcd\s+prod-db-reader\s+alice\s+active\s+5m\s+-\s+in 23m\s/);
    expect(lines[3]).toMatch(/^0000abcd\s+prod-db-reader\s+alice\s+deactivated\s+5m\s+-\s+ended 1m ago\s/);

    await run(["requests"]);
    expect(calls.at(-1)!.url.searchParams.get("scope")).toBe("mine");
    expect((await run(["requests"])).stdout).toMatch(
      /^ID\s+ROLE\s+REQUESTER\s+STATE\s+AGE\s+STAGE\s+EXPIRES\s+REASON\n/,
    );
    expect((await run(["requests", "--mine", "--all"])).code).toBe(2);
    expect((await run(["requests", "--state", "sleeping"])).code).toBe(2);
  });

  it("requests --pending says what approving each asks of your MFA, and how to step up", async () => {
    const hint = (required: boolean, satisfied: boolean, passkeyOnly = false) => ({
      approverMfa: { required, withinSeconds: required ? 900 : null, passkeyOnly, satisfied },
    });
    const items = [
      request(hint(true, false)),
      request({ id: OTHER_ID, ...hint(true, true) }),
      request({ id: "0190b6a0-1111-7000-8000-000000001234", ...hint(true, false, true) }),
      request({ id: "0190b6a0-1111-7000-8000-000000005678", ...hint(false, true) }),
    ];
    on("GET", "/v1/activation-requests", () => ({ status: 200, body: { items } }));
    const result = await run(["requests", "--pending"]);
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split("\n");
    expect(lines[1]).toMatch(/^0000abcd\s.*\s1\/1\s+-\s+step up \(15m\)\s+investigate/);
    expect(lines[2]).toMatch(/^0000ef01\s.*\s1\/1\s+-\s+ok \(15m\)\s+investigate/);
    expect(lines[3]).toMatch(/^00001234\s.*\s1\/1\s+-\s+passkey \(15m\)\s+investigate/);
    expect(lines[4]).toMatch(/^00005678\s.*\s1\/1\s+-\s+-\s+investigate/);
    expect(lines.at(-1)).toBe(
      "2 requests need a fresh MFA check of yours to approve: `stint step-up` first (`--webauthn` for a passkey), or `stint approve <id> --otp -`.",
    );
    // --json passes the server's answer through, the hint with it.
    const json = await run(["requests", "--pending", "--json"]);
    expect(JSON.parse(json.stdout).items[0].approverMfa).toEqual(hint(true, false).approverMfa);
  });

  it("changes list says what approving each change request asks of your MFA, and how to step up", async () => {
    const change = (id: string, approverMfa?: object) => ({
      id,
      kind: "catalog",
      status: "pending",
      tier: "high",
      author: "bob",
      createdAt: iso(-60_000),
      expiresAt: iso(86_400_000),
      plan: { changes: [], summary: { create: 1, update: 0, delete: 0 }, notes: [] },
      assessment: [],
      document: "apiVersion: stint/v1\n",
      decidedBy: null,
      decidedAt: null,
      reason: null,
      canApprove: approverMfa !== undefined,
      ...(approverMfa ? { approverMfa } : {}),
    });
    const hint = { required: true, withinSeconds: 300, passkeyOnly: false, satisfied: false };
    on("GET", "/v1/change-requests", () => ({
      status: 200,
      body: { items: [change(ID, hint), change(OTHER_ID, { ...hint, satisfied: true }), change(OTHER_ID)] },
    }));
    const result = await run(["changes", "list"]);
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^ID\s+STATUS\s+TIER\s+AUTHOR\s+CHANGES\s+EXPIRES\s+MFA TO APPROVE$/);
    expect(lines[1]).toMatch(new RegExp(`^${ID}\\s+pending\\s+high\\s+bob\\s+\\+1 ~0 -0\\s+\\S+\\s+step up \\(5m\\)$`));
    expect(lines[2]).toMatch(/\sok \(5m\)$/);
    expect(lines[3]).toMatch(/\s-$/); // not one this user may approve: nothing to say
    expect(lines.at(-1)).toBe(
      "1 change request needs a fresh MFA check of yours to approve: `stint step-up` first (`--webauthn` for a passkey), or `stint changes approve <id> --otp -`.",
    );
  });

  it("approve resolves a short id through the lists, and refuses an ambiguous one", async () => {
    on("GET", "/v1/activation-requests", (call) =>
      call.url.searchParams.get("scope") === "all"
        ? { status: 403, body: { error: { code: "FORBIDDEN", message: "no" } } }
        : { status: 200, body: { items: [request(), request({ id: OTHER_ID })] } },
    );
    on("POST", `/v1/activation-requests/${ID}/approvals`, () => ({ status: 200, body: active }));
    const result = await run(["approve", "0000abcd", "--reason", "go ahead"]);
    expect(result.code).toBe(0);
    expect(calls.at(-1)!.body).toEqual({ reason: "go ahead" });
    expect(result.stdout).toBe("Approved. prod-db-reader is active until 2030-01-01T12:23:10Z (23m left).\n");

    const ambiguous = await run(["approve", "0190b6a0"]);
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toContain("matches 2 requests");
    expect((await run(["approve", "ffffffff"])).code).toBe(6);
    expect((await run(["approve", "abc"])).code).toBe(2);
  });

  it("approve reports the server's refusals with their exit codes", async () => {
    on("POST", `/v1/activation-requests/${ID}/approvals`, () => ({
      status: 403,
      body: { error: { code: "SELF_APPROVAL", message: "Nobody approves their own request." } },
    }));
    const result = await run(["approve", ID]);
    expect(result.code).toBe(5);
    expect(result.stderr).toBe("error: SELF_APPROVAL: Nobody approves their own request.\n");
    expect(calls).toHaveLength(1); // a full UUID needs no lookup
  });

  it("approve --otp - steps up first where the policy asks the approver for a recent MFA check (finding 82)", async () => {
    let stepped = false;
    on("POST", "/v1/auth/step-up", () => {
      stepped = true;
      return { status: 200, body: { mfaAt: iso(0) } };
    });
    const message = "Approving requests for this role needs a one-time code entered within the last 15m.";
    on("POST", `/v1/activation-requests/${ID}/approvals`, () =>
      stepped
        ? { status: 200, body: active }
        : { status: 401, body: { error: { code: "MFA_STEP_UP_REQUIRED", message } } },
    );
    const refused = await run(["approve", ID]);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain("add --otp - (the code on stdin) or set STINT_TOTP_CODE");

    const done = await runCliCaptured(["approve", ID, "--otp", "-"], {
      env: { STINT_CONFIG_DIR: dir, HOME: dir },
      fetch: fakeFetch,
      now: () => NOW,
      isTTY: false,
      input: "654 321\n",
    });
    expect(done.code, done.stderr).toBe(0);
    expect(calls.find((call) => call.url.pathname === "/v1/auth/step-up")!.body).toEqual({ otp: "654321" });
    expect(done.stdout).toContain("Approved. prod-db-reader is active until");
  });

  it("deny and revoke need a reason; cancel, deactivate and extend call their routes", async () => {
    expect((await run(["deny", ID])).code).toBe(2);
    expect((await run(["revoke", ID])).code).toBe(2);
    expect(calls).toEqual([]);

    on("POST", `/v1/activation-requests/${ID}/denials`, () => ({ status: 200, body: request({ state: "denied" }) }));
    on("POST", `/v1/activation-requests/${ID}/cancel`, () => ({ status: 200, body: request({ state: "cancelled" }) }));
    on("POST", `/v1/activation-requests/${ID}/revoke`, () => ({ status: 200, body: request({ state: "revoked" }) }));
    on("POST", "/v1/me/roles/prod-db-reader/deactivate", () => ({
      status: 200,
      body: request({ state: "deactivated" }),
    }));
    on("POST", "/v1/me/roles/prod-db-reader/extensions", () => ({
      status: 201,
      body: request({ id: OTHER_ID, state: "approved", extendsRequestId: ID }),
    }));
    on("GET", `/v1/activation-requests/${ID}`, () => ({ status: 200, body: active }));

    expect(await run(["deny", ID, "--reason", "no change window"])).toMatchObject({
      code: 0,
      stdout: `Denied request ${ID} (prod-db-reader for alice).\n`,
    });
    expect(calls.at(-1)!.body).toEqual({ reason: "no change window" });
    expect((await run(["cancel", ID])).stdout).toBe(`Cancelled request ${ID} (prod-db-reader).\n`);
    expect((await run(["revoke", ID, "--reason", "suspicious queries"])).stdout).toBe(
      `Revoked prod-db-reader of alice (request ${ID}).\n`,
    );
    expect((await run(["deactivate", "prod-db-reader"])).stdout).toBe(`Deactivated prod-db-reader (request ${ID}).\n`);
    const extended = await run(["extend", "prod-db-reader", "--by", "30m", "--reason", "migration runs longer"]);
    expect(extended.code).toBe(0);
    expect(calls.find((call) => call.url.pathname.endsWith("/extensions"))!.body).toEqual({
      by: "30m",
      reason: "migration runs longer",
    });
    expect(extended.stdout).toBe("Extended by 30m: prod-db-reader is active until 2030-01-01T12:23:10Z (23m left).\n");
  });

  it("check exits 0 when allowed and 5 when not, so scripts can branch on it", async () => {
    let allowed = true;
    on("GET", "/v1/check", () => ({
      status: 200,
      body: {
        principal: "alice",
        role: "prod-db-reader",
        allowed,
        reason: allowed ? "active activation" : "no active activation of this role",
        expiresAt: allowed ? iso(600_000) : null,
        requestId: allowed ? ID : null,
      },
    }));
    const yes = await run(["check", "alice", "prod-db-reader"]);
    expect(yes).toMatchObject({
      code: 0,
      stdout: "allowed: alice holds prod-db-reader until 2030-01-01T12:10:00Z (10m left)\n",
    });
    expect(calls[0]!.url.search).toBe("?principal=alice&role=prod-db-reader");

    allowed = false;
    const no = await run(["check", "alice", "prod-db-reader"]);
    expect(no.code).toBe(9);
    expect(no.stdout).toBe("not allowed: alice does not hold prod-db-reader (no active activation of this role)\n");
    expect(no.stderr).toBe("");
    const json = await run(["check", "alice", "prod-db-reader", "--json"]);
    expect(json.code).toBe(9);
    expect(JSON.parse(json.stdout)).toMatchObject({ allowed: false });
  });

  it("token activation prints the JWT alone on stdout", async () => {
    const body = {
      token: "eyJhbGciOiJFZERTQSJ9.e30.sig",
      expiresAt: iso(300_000),
      roles: [{ role: "prod-db-reader", expiresAt: iso(600_000), requestId: ID }],
    };
    on("POST", "/v1/tokens/activation", () => ({ status: 200, body }));
    const result = await run(["token", "activation"]);
    expect(result).toMatchObject({ code: 0, stdout: `${body.token}\n` });
    expect(result.stderr).toContain("active roles: prod-db-reader");
    expect(JSON.parse((await run(["token", "activation", "--json"])).stdout)).toEqual(body);
  });
});

describe("activate --wait pacing", () => {
  it("asks again within 50 ms at first, then backs off to once a second", () => {
    const delays = Array.from({ length: 8 }, (_, asked) => pollDelay(asked));
    expect(delays).toEqual([50, 100, 200, 400, 800, 1000, 1000, 1000]);
    // An auto-approved activation that is active 200 ms after submission is seen within 350 ms.
    expect(delays.slice(0, 3).reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(350);
  });
});

describe("access wording and exit codes", () => {
  it("writes spans of time for people", () => {
    expect(humanSpan(45_000)).toBe("45s");
    expect(humanSpan(23 * 60_000 + 59_000)).toBe("23m");
    expect(humanSpan(65 * 60_000)).toBe("1h 5m");
    expect(humanSpan(2 * 3_600_000)).toBe("2h");
    expect(humanSpan(51 * 3_600_000)).toBe("2d 3h");
    expect(humanSpan(-5)).toBe("0s");
  });

  it("shortens ids to their random tail", () => {
    expect(shortId(ID)).toBe("0000abcd");
  });

  it("describes break-glass policies", () => {
    expect(
      describePolicy({
        defaultDuration: "1h",
        maxDuration: "1h",
        approvalRequired: false,
        approvalStages: 0,
        mfaRequired: true,
        ticketRequired: false,
        breakGlass: true,
        maxExtensions: 0,
      }),
    ).toBe("up to 1h (default 1h), break-glass: no approval, reviewed afterwards, MFA");
  });

  it.each([
    ["NOT_ELIGIBLE", 5],
    ["SELF_APPROVAL", 5],
    ["NOT_AN_APPROVER", 5],
    ["OUTSIDE_WINDOW", 5],
    ["REQUEST_ALREADY_OPEN", 7],
    ["REQUEST_NOT_PENDING", 7],
    ["ALREADY_DECIDED", 7],
    ["EXTENSION_LIMIT_REACHED", 7],
    ["NOT_ACTIVE", 7],
    ["DURATION_TOO_LONG", 2],
    ["DURATION_INVALID", 2],
    ["JUSTIFICATION_INVALID", 2],
    ["MFA_STEP_UP_REQUIRED", 4],
  ] as const)("%s → exit %i", (code, exit) => {
    expect(exitCodeFor(code)).toBe(exit);
  });
});
