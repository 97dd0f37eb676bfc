/**
 * Break-glass activations extended by their holder (security review, finding 33).
 *
 * A break-glass role activates without approval, loudly: every channel is told (`breakglass.used`), the anomaly
 * rule `breakGlass` fires on it (its `review` or `revoke` action), and a review item is opened. Its policy may
 * allow extensions; an extension, approval-free like the activation, was none of that: no alarm, no review,
 * no `breakglass.used` event, so after a colleague had acknowledged the emergency ("genuine incident") the
 * holder could stretch it to maxDuration × (1 + maxExtensions) with nobody told. Every break-glass extension is
 * now a break-glass use of its own: alarm, event and review item, in the extension's transaction.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { actAs, seedRole, seedUser } from "../../src/testing/pim.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

let server: TestServer;
const alice = () => actAs(server, "alice");

async function breakGlassUses(): Promise<{ subject: string; details: Record<string, unknown> }[]> {
  const res = await actAs(server, "ada")("GET", "/v1/audit/events?action=breakglass.used&limit=50");
  return res.body.items as { subject: string; details: Record<string, unknown> }[];
}

beforeAll(async () => {
  // One channel, so that what is told to every channel shows in the outbox (its receiver is never reached).
  const file = path.join(mkdtempSync(path.join(tmpdir(), "stint-bg-ext-")), "stint.yaml");
  writeFileSync(
    file,
    'notifications:\n  channels:\n    - { name: oncall, kind: webhook, url: "http://127.0.0.1:9/hook", secret: "0123456789abcdef0123456789abcdef" }\n',
  );
  server = await testServer("pglite", { env: { STINT_CONFIG_FILE: file } });
  await seedUser(server, "alice");
  await server.userWithRoles("ada", ["admin"]);
  await seedRole(server, {
    name: "emergency-admin",
    risk: "critical",
    policy: { breakGlass: true, mfa: { required: false }, maxDuration: "1h", maxExtensions: 3 },
    eligibleUsers: ["alice"],
  });
}, 60_000);
afterAll(async () => server?.cleanup());

describe("break-glass: extensions", () => {
  it("an extension of a break-glass activation is itself a break-glass use: audited, every channel told, reviewed", async () => {
    const activated = await alice()("POST", "/v1/activation-requests", {
      role: "emergency-admin",
      reason: "payments database down, on-call cannot sign in",
      duration: "1h",
    });
    expect(activated.status, JSON.stringify(activated.body)).toBe(201);
    expect(activated.body.state).toBe("active");
    expect(await breakGlassUses()).toHaveLength(1);

    const extended = await alice()("POST", "/v1/me/roles/emergency-admin/extensions", {
      by: "1h",
      reason: "still restoring the payments database",
    });
    expect(extended.status, JSON.stringify(extended.body)).toBe(201);
    expect(extended.body.state, "break-glass needs no approval, extensions neither").toBe("approved");

    const uses = await breakGlassUses();
    expect(uses, "the extension is a break-glass use of its own").toHaveLength(2);
    const reviews = await server.store.db
      .selectFrom("review_items")
      .select(["subject", "status"])
      .where("kind", "=", "break-glass-activation")
      .execute();
    expect(reviews, "each use opens a review item").toHaveLength(2);
    const outbox = await server.store.db.selectFrom("outbox").select(["kind", "payload"]).execute();
    const told = outbox.filter((row) => /break_glass|breakglass\.used/.test(JSON.stringify(row.payload)));
    expect(told.length, "every channel is told of the extension too").toBe(2);
  });
});
