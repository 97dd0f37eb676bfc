/**
 * Class: raising a role's floor from its target's side, past the check the role's own write gets (finding 69).
 *
 * A role granting SUPERUSER on a staging target may declare `high`; relabelling the target `env: production` makes
 * its floor `critical`. The role write refused the tier, but `PUT /v1/targets/...` and a file changing only the
 * target left the role below its floor (reviews' default `onMissed`, alerts and policy rules keep the declared tier).
 * The target change is now judged against the floors of the roles on it, with the role write's error.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testServer, type TestServer } from "../../src/testing/server.js";
import { apiCaller } from "../../src/testing/api-call.js";

const target = (env: string) => ({
  name: "ledger-db",
  kind: "postgres",
  address: "postgres://stint@192.0.2.10:5432/ledger",
  labels: { env },
});
const ROLE = `roles:
  - { name: ledger-admin, target: ledger-db, policy: manual, risk: high, entitlement: { attribute: SUPERUSER } }
`;
const file = (env: string, role = true) => `apiVersion: stint/v1
policies:
  - { name: manual, approval: { stages: [ { approvers: { users: [carol] } } ] } }
targets:
  - { name: ledger-db, kind: postgres, address: "postgres://stint@192.0.2.10:5432/ledger", labels: { env: ${env} } }
${role ? ROLE : ""}`;

let server: TestServer;

const api = apiCaller(() => server);
const call = (method: "GET" | "POST" | "PUT", url: string, payload?: object) =>
  api(server.adminAuth, method, url, payload);
const labelOf = async () => ((await call("GET", "/v1/targets/ledger-db")).body as { labels: { env: string } }).labels;

beforeAll(async () => {
  server = await testServer("pglite", {
    env: { STINT_ALLOW_NETWORKS: "192.0.2.0/24", STINT_FOUR_EYES_TIERS: "critical" },
  });
  await server.userWithRoles("carol", ["user"]);
  await server.userWithRoles("admin2", ["admin"]); // four-eyes is not waived: a second admin exists
  expect((await call("POST", "/v1/config/apply", { yaml: file("staging") })).text).toContain('"applied":true');
});
afterAll(async () => server?.cleanup());

describe("a target change is judged against the floors of the roles on it", () => {
  it("a file that changes only the target is refused at the role (the rule since finding 69)", async () => {
    const res = await call("POST", "/v1/config/apply", { yaml: file("production", false) });
    expect(res.text).not.toContain('"applied":true');
    expect(res.text).toContain("below critical");
    expect(await labelOf()).toEqual({ env: "staging" });
  });

  it("and PUT /v1/targets relabelling to production under a 'high' SUPERUSER role is refused like the role write", async () => {
    const res = await call("PUT", "/v1/targets/ledger-db", target("production"));
    expect(res.status, res.text).toBe(400);
    expect(res.body.error?.code).toBe("VALIDATION_FAILED");
    expect(res.text).toContain("below critical");
    expect(res.text).toContain("ledger-admin");
    expect(await labelOf()).toEqual({ env: "staging" });
  });

  it("with the role raised to critical, the same relabel goes through", async () => {
    const raised = file("production").replace("risk: high", "risk: critical");
    expect((await call("POST", "/v1/config/apply", { yaml: raised })).text).toContain('"applied":true');
    expect(await labelOf()).toEqual({ env: "production" });
    expect((await call("PUT", "/v1/targets/ledger-db", target("prod"))).status).toBe(200);
  });

  it("four-eyes weighs a target change at its roles' floors: a break-glass role declared low makes it critical", async () => {
    const glass = `apiVersion: stint/v1
policies:
  - { name: glass, breakGlass: true }
targets:
  - { name: wiki-db, kind: postgres, address: "postgres://stint@192.0.2.12:5432/wiki", labels: { env: staging } }
roles:
  - { name: wiki-glass, target: wiki-db, policy: glass, risk: low, entitlement: { role: app_reader } }
`;
    expect((await call("POST", "/v1/config/apply", { yaml: glass })).text).toContain('"applied":true');
    const moved = { ...target("staging"), name: "wiki-db", address: "postgres://stint@192.0.2.13:5432/wiki" };
    const res = await call("PUT", "/v1/targets/wiki-db", moved);
    expect(res.status, res.text).toBe(202);
    expect(res.body).toMatchObject({ changeRequest: { tier: "critical" } });
  });
});
