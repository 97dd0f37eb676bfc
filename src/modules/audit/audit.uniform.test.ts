/**
 * The batch writer of one kind of event (`audit.uniform.ts`, the scheduler's expiries) against the MAC text
 * every event's MAC must cover (`pendingMessage`, itself held to the `canonicalize` package in
 * `audit.canonical.test.ts`): a template cut wrong would write MACs the sequencer rejects, and its events
 * would be chained as `audit.pending_rejected` instead of themselves.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { expiredDetails } from "../requests/requests.service.js";
import { pendingMessage } from "./audit.rules.js";
import type { PendingAuditEvent } from "./audit.types.js";
import {
  canonicalDetailsText,
  uniformMessage,
  uniformRows,
  uniformTemplate,
  type SharedColumns,
} from "./audit.uniform.js";

/** Characters JSON escapes or may (quote, backslash, controls, surrogates), and the very keys the template cuts at. */
const tricky = fc.oneof(
  fc.string({
    unit: fc.constantFrom("a", "é", "😀", '"', "\\", "\n", "\u0000", "\u001f", "\ud800", "\udc00", ":", ",", "{", "}"),
  }),
  fc.constantFrom('"details":{},"id":""', ',"subject":""', '"subject":""', "{}"),
  fc.string(),
);
const nullable = fc.option(tricky, { nil: null });
const shared: fc.Arbitrary<SharedColumns> = fc.record({
  time: fc.oneof(tricky, fc.constant("2026-03-02T10:31:00.000Z")),
  actor: tricky,
  actorId: nullable,
  action: tricky,
  outcome: fc.constantFrom("success", "denied", "failed"),
  reason: nullable,
  correlationId: nullable,
  sourceIp: nullable,
  userAgent: nullable,
});
const details = fc.dictionary(tricky, fc.oneof(tricky, fc.integer(), fc.constant(null), fc.boolean()));

describe("uniform batches of audit events", () => {
  it("write the MAC text pendingMessage writes for the same event, or decline (the general path then decides)", () => {
    fc.assert(
      fc.property(shared, fc.oneof(tricky, fc.uuid()), tricky, details, (s, id, subject, d) => {
        const event: PendingAuditEvent = { ...s, id, subject, details: d };
        let expected: string | undefined;
        try {
          expected = pendingMessage(event);
        } catch {
          expected = undefined;
        }
        const template = uniformTemplate(s);
        if (!template) return;
        let text: string;
        try {
          text = canonicalDetailsText(d);
        } catch {
          expect(expected).toBeUndefined();
          return;
        }
        const message = uniformMessage(template, id, subject, text);
        if (message !== null) expect(message).toBe(expected);
      }),
      { numRuns: 2000 },
    );
  });

  it("decline nothing plain: the scheduler's events always take the template", () => {
    const s: SharedColumns = {
      time: "2026-03-02T10:31:00.000Z",
      actor: "system:system",
      actorId: null,
      action: "request.expired",
      outcome: "success",
      reason: "the activation reached its end time",
      correlationId: "scheduler",
      sourceIp: null,
      userAgent: null,
    };
    const template = uniformTemplate(s)!;
    expect(template).not.toBeNull();
    const rows = JSON.parse(
      uniformRows(template, ["request:a", 'request:"b"'], ['{"x":1}', "{}"], (text) => `mac(${text.length})`)!,
    ) as [string, string, string, unknown][];
    expect(rows.map(([, subject, , d]) => [subject, d])).toEqual([
      ["request:a", { x: 1 }],
      ['request:"b"', {}],
    ]);
    // Each row's MAC covers the text of exactly its event (id included).
    const id = rows[1]![0];
    expect(rows[1]![2]).toBe(`mac(${pendingMessage({ ...s, id, subject: 'request:"b"', details: {} }).length})`);
  });

  it("expiredDetails is the canonical JSON of the request.expired details, names with quotes or unicode included", () => {
    const name = fc.oneof(fc.constantFrom("alice", "db-reader", "o'brien"), tricky);
    const time = fc.date({ min: new Date("2000-01-01"), max: new Date("2100-01-01"), noInvalidDate: true });
    fc.assert(
      fc.property(
        name,
        name,
        time,
        fc.option(time, { nil: null }),
        fc.nat(),
        (requester, role, expires, activated, late) => {
          const object = {
            activatedAt: activated === null ? null : activated.toISOString(),
            endedAt: new Date(expires.getTime() + late).toISOString(),
            expiresAt: expires.toISOString(),
            lateByMs: late,
            requester,
            role,
          };
          let expected: string;
          try {
            expected = canonicalDetailsText(object);
          } catch {
            return;
          }
          expect(
            expiredDetails(
              activated === null ? "null" : `"${activated.toISOString()}"`,
              object.endedAt,
              object.expiresAt,
              late,
              requester,
              role,
            ),
          ).toBe(expected);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
