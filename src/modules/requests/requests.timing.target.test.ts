/**
 * A request approved ahead for a role at a real target (the webhook connector's test endpoint): nothing reaches
 * the target before the start; at the start the scheduler starts it and provisioning goes through the outbox as
 * for any approval, the activation's duration counted from when the target holds it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TargetsHarness } from "../../testing/targets-harness.js";
import type { WebhookEndpoint } from "../../testing/webhook-endpoint.js";
import { cloudIamHarness } from "../../testing/webhook-target.js";

const SECRET = "webhook-signing-secret-for-timing-tests";
let h: TargetsHarness;
let endpoint: WebhookEndpoint;

beforeAll(async () => {
  ({ h, endpoint } = await cloudIamHarness(SECRET, {
    role: { name: "iam-admin", risk: "high" },
    users: ["fay"],
    signed: true,
  }));
}, 60_000);

afterAll(async () => {
  await h?.server.cleanup();
  await endpoint?.close();
});

describe("a scheduled start at a real target", () => {
  it("provisions nothing before the start, then through the outbox at the start, expiring a duration after it", async () => {
    const startAt = new Date(h.clock.now().getTime() + 30_000);
    const submitted = await h.as("fay", "POST", "/v1/activation-requests", {
      role: "iam-admin",
      duration: "15m",
      reason: "rotate the deploy role's trust policy",
      startAt: startAt.toISOString(),
    });
    expect(submitted.body).toMatchObject({ state: "approved", startAt: startAt.toISOString() });
    const id = submitted.body.id as string;

    h.clock.advance(29_999);
    await h.server.scheduler.runOnce();
    await h.drainOutbox();
    expect(endpoint.calls).toEqual([]);
    expect((await h.admin("GET", `/v1/activation-requests/${id}`)).body.state).toBe("approved");

    h.clock.advance(1);
    expect((await h.server.scheduler.runOnce()).started).toBe(1);
    expect((await h.admin("GET", `/v1/activation-requests/${id}`)).body.state).toBe("provisioning");
    await h.drainOutbox();
    expect(endpoint.calls.map((c) => [c.action, c.login])).toEqual([["provision", "fay@example.com"]]);
    expect(endpoint.holders.get("fay@example.com")?.size).toBe(1);
    const active = (await h.admin("GET", `/v1/activation-requests/${id}`)).body;
    expect(active.state).toBe("active");
    expect(active.activatedAt).toBe(startAt.toISOString());
    expect(Date.parse(active.expiresAt as string)).toBe(startAt.getTime() + 15 * 60_000);

    // It ends like any activation: revoked at the target at its expiry.
    h.clock.advance(15 * 60_000);
    await h.server.scheduler.runOnce();
    await h.drainOutbox();
    expect((await h.admin("GET", `/v1/activation-requests/${id}`)).body.state).toBe("expired");
    expect(endpoint.calls.map((c) => c.action)).toEqual(["provision", "revoke"]);
  });
});
