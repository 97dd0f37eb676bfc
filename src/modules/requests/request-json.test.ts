/**
 * An activation request's answer is written by hand (submit and deactivate answer one per elevation): it must
 * be what zod's serializer wrote — same fields, same order, nothing unlisted — and an answer of another shape
 * must still be refused.
 */
import fc from "fast-check";
import { serializerCompiler } from "fastify-type-provider-zod";
import { describe, expect, it } from "vitest";
import * as c from "../../contract/requests.js";
import { activationRequestSerializer } from "./request-json.js";

const route = { schema: c.activationRequest, method: "POST", url: "/v1/activation-requests", httpStatus: "201" };
const byHand = activationRequestSerializer(serializerCompiler)(route);
const byZod = serializerCompiler(route);

const ACTIVE = {
  id: "01a243c9-0955-76dc-9f68-8c313623809f",
  role: "db-admin",
  requester: "alice",
  state: "active",
  duration: "30m",
  reason: "rotate the replica's keys",
  ticket: null,
  breakGlass: false,
  extendsRequestId: null,
  stages: [],
  stageIndex: 0,
  stageDeadline: null,
  submittedAt: "2026-12-05T02:19:38.325Z",
  decidedAt: "2026-12-05T02:19:38.325Z",
  activatedAt: "2026-12-05T02:19:38.325Z",
  expiresAt: "2026-12-05T02:49:38.325Z",
  endedAt: null,
  endReason: null,
  endedBy: null,
  extensions: 0,
  startAt: null,
  pendingExpiresAt: null,
  decisions: [],
};
const DECIDED = {
  ...ACTIVE,
  state: "deactivated",
  ticket: "CHG-1234",
  extendsRequestId: "01a243c9-0955-76dc-9f68-8c3136238000",
  stages: [
    { name: "owners", count: 1, approvals: ["bob"], escalated: false },
    { name: "security", count: 2, approvals: ["carol", "dave"], escalated: true },
  ],
  stageIndex: 1,
  endedAt: "2026-12-05T02:29:38.325Z",
  endReason: "ended early by the holder",
  endedBy: "alice",
  extensions: 2,
  decisions: [
    { stage: 0, approver: "bob", decision: "approve", reason: null, decidedAt: "2026-12-05T02:19:38.325Z" },
    { stage: 1, approver: "carol", decision: "deny", reason: "not now", decidedAt: "2026-12-05T02:19:39.000Z" },
  ],
};

describe("an activation request's serializer", () => {
  it("writes what zod wrote, for requests with and without stages, decisions and optional times", () => {
    const { startAt: _s, pendingExpiresAt: _p, ...withoutOptional } = ACTIVE;
    const pending = { ...ACTIVE, state: "pending", pendingExpiresAt: "2026-12-06T02:19:38.325Z" };
    for (const answer of [ACTIVE, DECIDED, withoutOptional, pending]) {
      expect(byHand(answer)).toBe(byZod(answer));
      expect(JSON.parse(byHand(answer) as string)).toEqual(answer);
    }
  });

  it("writes no field the contract does not list", () => {
    const leaky = {
      ...DECIDED,
      requesterId: "00000000-0000-7000-8000-000000000001",
      secret: "s3cret",
      stages: DECIDED.stages.map((stage) => ({ ...stage, secret: "s3cret" })),
      decisions: DECIDED.decisions.map((d) => ({ ...d, secret: "s3cret" })),
    };
    expect(byHand(leaky)).toBe(byZod(DECIDED));
    expect(byHand(leaky)).not.toContain("s3cret");
  });

  it("refuses an answer of another shape, as zod does", () => {
    for (const wrong of [
      { ...ACTIVE, state: "sleeping" },
      { ...ACTIVE, breakGlass: "no" },
      { ...ACTIVE, expiresAt: 1_700_000_000 },
      { ...ACTIVE, ticket: undefined },
      { ...ACTIVE, extensions: 1.5 },
      { ...ACTIVE, stages: [{ name: "owners", count: 1, approvals: [7], escalated: false }] },
      { ...ACTIVE, decisions: [{ ...DECIDED.decisions[0], decision: "maybe" }] },
      { ...ACTIVE, decisions: null },
      { role: "db-admin" },
      null,
      "active",
    ])
      expect(() => byHand(wrong), JSON.stringify(wrong)).toThrow(/response|serializ/i);
  });

  it("writes what zod wrote whatever the texts hold (quotes, backslashes, controls, non-ASCII)", () => {
    const text = fc.oneof(
      fc.string({ unit: "grapheme", maxLength: 20 }),
      fc.string({ unit: fc.constantFrom('"', "\\", "\n", "\u0000", "\u2028", "a", " ", "-", "é", "/"), maxLength: 8 }),
    );
    fc.assert(
      fc.property(text, text, text, text, fc.option(text), (role, requester, reason, approver, ticket) => {
        const answer = {
          ...DECIDED,
          role,
          requester,
          reason,
          ticket,
          endReason: reason,
          stages: [{ name: role, count: 1, approvals: [approver], escalated: false }],
          decisions: [{ ...DECIDED.decisions[1], approver, reason: ticket }],
        };
        const written = byHand(answer) as string;
        expect(written).toBe(byZod(answer));
        expect(JSON.parse(written)).toEqual(answer);
      }),
      { numRuns: 500 },
    );
  });

  it("leaves the other statuses' schemas to zod", () => {
    const other = activationRequestSerializer(serializerCompiler)({ ...route, schema: c.checkResult });
    expect(() => other(ACTIVE)).toThrow(/response|serializ/i);
  });
});
