/** Shared set-up of the security tests. */
import { expect } from "vitest";
import type { manualClock } from "../../src/lib/clock.js";
import { apiCaller } from "../../src/testing/api-call.js";
import { seedRole, seedUser } from "../../src/testing/pim.js";
import { passwordFor, totpNow, type TestServer } from "../../src/testing/server.js";

/**
 * A catalog file that widens access: `user` becomes eligible for `role`, a high-risk role on an internal
 * target, without MFA. Held for a second approver while four-eyes covers the high tier.
 */
export function wideningFile(role = "payroll-admin", user = "mallory"): string {
  return `apiVersion: stint/v1
policies:
  - { name: plain, mfa: { required: false } }
targets:
  - { name: payroll, kind: internal }
roles:
  - { name: ${role}, target: payroll, policy: plain, risk: high }
eligibility:
  - { role: ${role}, users: [${user}] }
`;
}

/** One approval stage: any member of the group `approvers`. */
export const APPROVERS_STAGE = { stages: [{ approvers: { groups: ["approvers"] } }] };

/**
 * The approver-MFA tests' world (finding 82): alice (group requesters) asks, carol and dan (group approvers) decide;
 * `payments-admin` (high) asks the approver's MFA within 5m, `ledger-admin` (critical, no `approval.mfa`) within 15m
 * by default, `wiki-admin` (medium) nothing, and `more` roles as given. Carol has an authenticator: `code()` is her
 * next one-time code, each of a time step of its own (a code is accepted once). `submit(role)` is alice's request,
 * after ending an earlier test's activation of it, if any.
 */
export async function approverMfaWorld(
  server: TestServer,
  clock: ReturnType<typeof manualClock>,
  more: { name: string; risk: "high" | "critical"; approval: object }[] = [],
): Promise<{ code: () => string; submit: (role: string) => Promise<string> }> {
  const call = apiCaller(() => server);
  await seedUser(server, "alice", { groups: ["requesters"] });
  await seedUser(server, "carol", { groups: ["approvers"] });
  await seedUser(server, "dan", { groups: ["approvers"] });
  const roles = [
    { name: "payments-admin", risk: "high", approval: { ...APPROVERS_STAGE, mfa: { required: true, maxAge: "5m" } } },
    // No approval.mfa: the default asks critical roles' approvers only.
    { name: "ledger-admin", risk: "critical", approval: APPROVERS_STAGE },
    { name: "wiki-admin", risk: "medium", approval: APPROVERS_STAGE },
    ...more,
  ] as const;
  for (const { name, risk, approval } of roles)
    await seedRole(server, {
      name,
      risk,
      policy: { mfa: { required: false }, approval },
      eligibleGroups: ["requesters"],
    });
  let secret = "";
  const code = () => {
    clock.advance(60_000);
    return totpNow(secret, clock.now().getTime());
  };
  const carol = await server.login("carol", passwordFor("carol"));
  secret = String((await call(carol, "POST", "/v1/me/mfa/totp")).body.secret);
  expect((await call(carol, "POST", "/v1/me/mfa/totp/confirm", { code: code() })).status).toBe(200);
  const submit = async (role: string) => {
    const alice = await server.login("alice");
    await call(alice, "POST", `/v1/me/roles/${role}/deactivate`);
    const res = await call(alice, "POST", "/v1/activation-requests", {
      role,
      reason: "rotate the payment keys after incident 4711",
    });
    expect(res.status, res.text).toBe(201);
    return String(res.body.id);
  };
  return { code, submit };
}
