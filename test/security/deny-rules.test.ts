/**
 * Deny rules ignored by requests (peers shipped fixes where a role's deny rules were checked when a request
 * was made but not on the other paths that grant access). Stint's deny rules are a policy's activation
 * windows with `outsideWindow: deny`, and eligibility itself (no eligibility: no access). Each must hold on
 * every path that makes an activation active or longer: submit, extension, an approval by a person, and a
 * stage that approves by itself when it times out, not only when the request is made.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../src/lib/clock.js";
import { actAs, seedRole, seedUser } from "../../src/testing/pim.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

// A Wednesday, ten minutes before the window closes (windows are 09:00–17:00 UTC every day).
const clock = manualClock(new Date("2026-12-02T16:50:00Z"));
let server: TestServer;
const REASON = "restart the stuck billing workers for incident 4711";
const window = {
  days: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
  from: "09:00",
  to: "17:00",
  timeZone: "UTC",
} as const;
const base = {
  mfa: { required: false },
  windows: [{ ...window, days: [...window.days] }],
  outsideWindow: "deny" as const,
};

beforeAll(async () => {
  server = await testServer("pglite", { clock });
  await seedUser(server, "alice", { groups: ["devs"] });
  await seedUser(server, "bob", { groups: ["devs"] });
  await seedUser(server, "carol", { groups: ["leads"] });
  await seedRole(server, {
    name: "billing-approved",
    policy: { ...base, approval: { stages: [{ approvers: { groups: ["leads"] } }] } },
    eligibleGroups: ["devs"],
  });
  await seedRole(server, {
    name: "billing-auto",
    risk: "low",
    policy: {
      ...base,
      approval: { stages: [{ approvers: { groups: ["leads"] }, timeout: "20m", onTimeout: "approve" }] },
    },
    eligibleGroups: ["devs"],
  });
  await seedRole(server, {
    name: "billing-self",
    policy: { ...base, maxExtensions: 2, maxDuration: "2h" },
    eligibleGroups: ["devs"],
  });
  await seedRole(server, { name: "billing-nobody", policy: { mfa: { required: false } } });
});
afterAll(async () => server?.cleanup());

const submit = (who: string, role: string) =>
  actAs(server, who)("POST", "/v1/activation-requests", { role, reason: REASON, duration: "1h" });
const state = async (id: unknown) =>
  (await actAs(server, "carol")("GET", `/v1/activation-requests/${String(id)}`)).body;

describe("deny rules ignored by requests", () => {
  it("an approval that would activate outside the windows is refused; inside them it works", async () => {
    clock.set(new Date("2026-12-02T16:50:00Z"));
    const submitted = await submit("alice", "billing-approved");
    expect(submitted.status, JSON.stringify(submitted.body)).toBe(201);
    clock.set(new Date("2026-12-02T17:10:00Z"));
    const late = await actAs(server, "carol")(
      "POST",
      `/v1/activation-requests/${String(submitted.body.id)}/approvals`,
      {
        reason: "ok",
      },
    );
    expect(late.status).toBe(403);
    expect(late.body.error?.code).toBe("OUTSIDE_WINDOW");
    expect((await state(submitted.body.id)).state).toBe("pending");
    expect((await state(submitted.body.id)).activatedAt).toBeNull();

    clock.set(new Date("2026-12-03T09:05:00Z"));
    const inside = await actAs(server, "carol")(
      "POST",
      `/v1/activation-requests/${String(submitted.body.id)}/approvals`,
      { reason: "ok" },
    );
    expect(inside.status, JSON.stringify(inside.body)).toBe(200);
    expect(inside.body.state).toBe("active");
  });

  it("a stage that approves on timeout does not activate outside the windows", async () => {
    clock.set(new Date("2026-12-03T16:50:00Z"));
    const submitted = await submit("bob", "billing-auto");
    expect(submitted.status, JSON.stringify(submitted.body)).toBe(201);
    clock.set(new Date("2026-12-03T17:15:00Z")); // the 20m timeout passed after the window closed
    await server.scheduler.runOnce();
    const after = await state(submitted.body.id);
    expect(after.state).not.toMatch(/^(approved|provisioning|active)$/);
    expect(after.activatedAt).toBeNull();
  });

  it("submitting and extending outside the windows are refused", async () => {
    clock.set(new Date("2026-12-04T16:30:00Z"));
    const active = await submit("alice", "billing-self");
    expect(active.status, JSON.stringify(active.body)).toBe(201);
    expect(active.body.state).toBe("active");
    clock.set(new Date("2026-12-04T17:05:00Z"));
    const extend = await actAs(server, "alice")("POST", "/v1/me/roles/billing-self/extensions", {
      by: "30m",
      reason: REASON,
    });
    expect(extend.status).toBe(403);
    expect(extend.body.error?.code).toBe("OUTSIDE_WINDOW");
    const late = await submit("bob", "billing-self");
    expect(late.status).toBe(403);
    expect(late.body.error?.code).toBe("OUTSIDE_WINDOW");
  });

  it("a role nobody made you eligible for is refused on every path", async () => {
    clock.set(new Date("2026-12-05T10:00:00Z"));
    const submitted = await submit("alice", "billing-nobody");
    expect(submitted.status).toBe(403);
    expect(submitted.body.error?.code).toBe("NOT_ELIGIBLE");
    const extend = await actAs(server, "alice")("POST", "/v1/me/roles/billing-nobody/extensions", {
      by: "30m",
      reason: REASON,
    });
    expect(extend.status).toBeGreaterThanOrEqual(400);
    const check = await actAs(server, "alice")("GET", "/v1/check?principal=alice&role=billing-nobody");
    expect(check.body.allowed).toBe(false);
  });
});
