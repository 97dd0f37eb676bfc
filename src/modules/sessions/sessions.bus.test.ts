import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { newId } from "../../lib/ids.js";
import { endedPayloads, parseBus, type ActivationEnded } from "./sessions.bus.js";

const role = fc.oneof(fc.constantFrom("db-reader", "prod-admin", "é-role"), fc.string({ maxLength: 40 }));

describe("sessions bus messages", () => {
  it("activations ended in one transaction come back one by one, in order, from payloads under NOTIFY's limit", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            requestId: fc.oneof({ weight: 9, arbitrary: fc.uuid() }, { weight: 1, arbitrary: fc.string() }),
            role,
            state: fc.constantFrom("expired", "revoked"),
            by: fc.constantFrom("system", "alice"),
            reason: fc.constantFrom("time is up", "x".repeat(7600)),
          }),
          { maxLength: 800 },
        ),
        (items) => {
          const ended = items.map((item) => ({ ...item, at: 1234 }));
          const payloads = endedPayloads(ended);
          for (const payload of payloads) expect(Buffer.byteLength(payload)).toBeLessThan(8000);
          const back = payloads.flatMap(parseBus);
          expect(back).toEqual(ended.map((e): ActivationEnded => ({ type: "activation", ...e })));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("a batch of 500 expiries is two notifications, not 500", () => {
    const ended = Array.from({ length: 500 }, (_, i) => ({
      requestId: newId(),
      role: `role-${i % 100}`,
      state: "expired",
      by: "system",
      reason: "the activation's time is up",
      at: 1,
    }));
    const payloads = endedPayloads(ended);
    expect(payloads).toHaveLength(2);
    expect(payloads.flatMap(parseBus).map((m) => (m.type === "activation" ? m.requestId : ""))).toEqual(
      ended.map((e) => e.requestId),
    );
  });

  it("reads the single messages as before and ignores junk", () => {
    const kill = { type: "kill", sessionId: newId(), by: "root", reason: "r", at: 5 };
    expect(parseBus(JSON.stringify(kill))).toEqual([kill]);
    for (const junk of [
      "",
      "null",
      "{",
      '{"type":"activations","ids":"zz","roles":[],"r":[],"state":"expired","by":"s","reason":""}',
      JSON.stringify({ type: "activations", ids: "", roles: ["a"], r: [0], state: "expired", by: "s", reason: "" }),
      JSON.stringify({ type: "activation", requestId: 5 }),
    ])
      expect(parseBus(junk)).toEqual([]);
  });
});
