/**
 * Appends and chaining write events as a VALUES list (few rows) or as `unnest` arrays (`UNNEST_FROM` rows
 * and more), and the chaining pass moves pending rows into the chain inside the database. Whichever way,
 * what is read back and verified is exactly what was appended: texts that array literals must quote
 * (quotes, backslashes, braces, commas, "NULL", empty), NULLs, and details of every shape.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ENGINES } from "../../testing/engines.js";
import { auditHarness } from "../../testing/harness.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { UNNEST_FROM } from "./audit.store.js";
import type { AuditInput } from "./audit.types.js";

const bob: Actor = {
  kind: "principal",
  id: "0190d000-0000-7000-8000-000000000002",
  name: 'bob "the, {builder}" \\ NULL',
  principalKind: "user",
  roles: ["user"],
};

const AWKWARD = ["", "NULL", "null", '"', "\\", "{a,b}", "a,b", "é ünïcode 😀", "line\nbreak\ttab", " spaced ", "()"];

function inputs(count: number): AuditInput[] {
  return Array.from({ length: count }, (_, i) => {
    const text = AWKWARD[i % AWKWARD.length]!;
    return {
      action: `test.${text}`,
      outcome: (["success", "denied", "failed"] as const)[i % 3]!,
      subject: i % 4 === 0 ? null : `thing:${text}`,
      reason: i % 5 === 0 ? null : text,
      details: {
        text,
        n: i,
        nested: { z: [1, "NULL", null, { b: text, a: true }], a: -0.5 },
        ...(i % 2 === 0 ? { b: 1, a: 2 } : {}),
      },
    };
  });
}

describe.each(ENGINES)("audit writes on %s", (engine) => {
  let h: Awaited<ReturnType<typeof auditHarness>> | undefined;
  afterEach(async () => {
    await h?.cleanup();
    h = undefined;
  });

  for (const sequencing of ["inline", "background"] as const)
    it(`a VALUES list and unnest arrays write the same events, verified (${sequencing} chaining)`, async () => {
      h = await auditHarness(engine, { checkpointEvery: 25, sequencing });
      const { audit, store } = h;
      const context: CallContext = { correlationId: 'c,"1"', sourceIp: null, userAgent: "ua {x} \\ NULL" };
      const few = inputs(3);
      const many = inputs(UNNEST_FROM + 24);
      const written = [
        ...(await audit.record(bob, context, few)),
        ...(await store.transaction((tx) => audit.append(tx, bob, context, many))),
        ...(
          await store.transaction((tx) =>
            audit.appendMany(
              tx,
              Array.from({ length: UNNEST_FROM }, (_, i) => ({
                actor: bob,
                context: { ...context, sourceIp: i % 2 ? "192.0.2.7" : null },
                events: inputs(1),
              })),
            ),
          )
        ).flat(),
      ];
      expect(await audit.catchUp()).toBeGreaterThanOrEqual(sequencing === "inline" ? 0 : written.length);
      const verified = await audit.verify();
      expect(verified).toMatchObject({ ok: true, count: written.length });
      const read = await audit.read({ limit: 1000 });
      expect(read.map(({ seq: _seq, prevHash: _prev, hash: _hash, ...event }) => event)).toEqual(
        written.map((event) => ({ ...event, details: JSON.parse(JSON.stringify(event.details)) as unknown })),
      );
    });
});
