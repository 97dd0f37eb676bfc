/**
 * Class: an approver four-eyes did not count (finding 89, part of finding 81's fix). An administrator's reset of the
 * password of someone who approves is held for another approver; "someone who approves" was read from the
 * platform roles and the policies as they stand. An account named an approver only in the policy snapshot of a
 * pending request (the policy changed since, the request is still decided by its snapshot) or a reviewer of an open
 * access-review item was not counted: the admin reset its password alone, signed in as it and decided.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ENGINES } from "../../src/testing/engines.js";
import { actAs, seedGroupMember, seedRole, seedUser } from "../../src/testing/pim.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

const RESET = "Reset-by-the-admin-alone-2718";

describe.each(ENGINES)("approvers counted completely (%s)", (engine) => {
  let server: TestServer;
  const admin = (method: "GET" | "POST" | "PUT", url: string, payload?: object) =>
    server.app.inject({
      method,
      url,
      headers: { authorization: server.adminAuth },
      ...(payload ? { payload } : {}),
    });

  beforeAll(async () => {
    server = await testServer(engine, { env: { STINT_FOUR_EYES_TIERS: "high,critical" } });
    // A second admin: the first is not alone, so nothing is waived.
    await server.userWithRoles("bob", ["admin"]);
    for (const name of ["mallory", "carol", "rita", "vera", "plain"]) await seedUser(server, name);
    await seedGroupMember(server, "auditors", "vera");
    await seedRole(server, {
      name: "ops-admin",
      risk: "medium",
      policy: { mfa: { required: false }, approval: { stages: [{ name: "lead", approvers: { users: ["carol"] } }] } },
      eligibleUsers: ["mallory"],
    });
  }, 120_000);
  afterAll(async () => server?.cleanup());

  it("an approver named only in a pending request's policy snapshot: the reset is held", async () => {
    const submitted = await actAs(server, "mallory")("POST", "/v1/activation-requests", {
      role: "ops-admin",
      reason: "rotate the ops keys",
    });
    expect(submitted.body.state, JSON.stringify(submitted.body)).toBe("pending");
    // The policy changes since: rita approves new requests, carol still decides the pending one.
    await server.store.db
      .updateTable("policies")
      .set({
        spec: JSON.stringify({
          mfa: { required: false },
          approval: { stages: [{ name: "lead", approvers: { users: ["rita"] } }] },
        }),
      })
      .where("name", "=", "ops-admin-policy")
      .execute();
    const reset = await admin("PUT", "/v1/users/carol/password", { password: RESET });
    expect(reset.statusCode, reset.body).toBe(202);
    expect(reset.json()).toMatchObject({ changeRequest: { status: "pending" } });
    expect(JSON.stringify((await admin("GET", "/v1/change-requests?status=all")).json())).toContain("pending request");
    const signIn = await server.app.inject({
      method: "POST",
      url: "/v1/auth/login",
      payload: { username: "carol", password: RESET },
    });
    expect(signIn.statusCode).toBe(401);
  });

  it("a reviewer of an open access-review item: the reset is held", async () => {
    await seedRole(server, {
      name: "app-reader",
      risk: "low",
      policy: { mfa: { required: false } },
      eligibleUsers: ["plain"],
    });
    const campaign = await admin("POST", "/v1/reviews/campaigns", {
      name: "app-reader-q4",
      scope: { roles: ["app-reader"] },
      reviewers: { groups: ["auditors"] },
      duration: "7d",
    });
    expect(campaign.statusCode, campaign.body).toBe(201);
    const reset = await admin("PUT", "/v1/users/vera/password", { password: RESET });
    expect(reset.statusCode, reset.body).toBe(202);
  });

  it("someone who approves nothing: the reset applies at once, as before", async () => {
    const reset = await admin("PUT", "/v1/users/rita/password", { password: RESET });
    // rita is named by the policy as it stands now: held. plain approves nothing.
    expect(reset.statusCode, reset.body).toBe(202);
    const plain = await admin("PUT", "/v1/users/plain/password", { password: RESET });
    expect(plain.statusCode, plain.body).toBe(200);
  });
});
