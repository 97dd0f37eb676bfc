/**
 * Class: a security user (catalog.write) weakening the access review of their own access.
 *
 * Recurring reviews (`reviews:`) are how someone else checks that a person still needs a role. SELF_GRANT stopped a
 * catalog writer from widening their own eligibility or the rules of their roles, but not from narrowing the
 * scope of the review that covers them, stretching it to once in ten years, or deleting it (prune): the access
 * then went unreviewed, by their own hand. Any change to, or deletion of, a definition covering the author's own
 * eligibility is now refused with SELF_GRANT; someone whose access it does not cover makes it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testServer, type TestServer } from "../../src/testing/server.js";

const review = (scope: string, every = "90d") => `apiVersion: stint/v1
reviews:
  - name: payroll-quarterly
    every: ${every}
    duration: 14d
    scope: ${scope}
    reviewers: { groups: [auditors] }
`;

const BASE = `apiVersion: stint/v1
groups:
  - { name: auditors, members: [carol] }
  - { name: finance, members: [sam] }
policies:
  - { name: plain, mfa: { required: false } }
targets:
  - { name: payroll, kind: internal }
  - { name: wiki, kind: internal }
roles:
  - { name: payroll-admin, target: payroll, policy: plain, risk: high }
  - { name: wiki-editor, target: wiki, policy: plain, risk: low }
eligibility:
  - { role: payroll-admin, groups: [finance] }
${review("{ roles: [payroll-admin, wiki-editor] }").replace("apiVersion: stint/v1\n", "")}`;

let server: TestServer;
let sam: string;

async function apply(auth: string, yaml: string) {
  const res = await server.app.inject({
    method: "POST",
    url: "/v1/config/apply",
    headers: { authorization: auth },
    payload: { yaml },
  });
  return { status: res.statusCode, body: res.json() as { applied?: boolean; error?: { code: string } } };
}

const storedScope = async () =>
  JSON.stringify(
    (
      await server.store.db
        .selectFrom("review_definitions")
        .select("spec")
        .where("name", "=", "payroll-quarterly")
        .executeTakeFirst()
    )?.spec ?? null,
  );

beforeAll(async () => {
  server = await testServer("pglite");
  for (const name of ["carol", "ann"]) await server.userWithRoles(name, ["user"]);
  sam = await server.userWithRoles("sam", ["security"]);
  const base = await apply(server.adminAuth, BASE);
  expect(base.body, JSON.stringify(base.body)).toMatchObject({ applied: true });
});
afterAll(async () => server?.cleanup());

describe("nobody weakens the review of their own access", () => {
  it("narrowing the scope away from one's own role is SELF_GRANT, and nothing changes", async () => {
    const before = await storedScope();
    const res = await apply(sam, review("{ roles: [wiki-editor] }"));
    expect(res.status, JSON.stringify(res.body)).toBe(403);
    expect(res.body.error?.code).toBe("SELF_GRANT");
    expect(await storedScope()).toBe(before);
  });

  it("so is stretching its period, or deleting it with prune", async () => {
    const stretched = await apply(sam, review("{ roles: [payroll-admin, wiki-editor] }", "3650d"));
    expect(stretched.body.error?.code).toBe("SELF_GRANT");
    const pruned = await apply(sam, "apiVersion: stint/v1\nprune: true\nreviews: []\n");
    expect(pruned.body.error?.code).toBe("SELF_GRANT");
    expect(await storedScope()).toContain("payroll-admin");
  });

  it("someone whose access it does not cover may change it; a new review is always allowed", async () => {
    const added = await apply(
      sam,
      `${review("{ risk: [critical] }").replace("payroll-quarterly", "critical-monthly")}`,
    );
    expect(added.body, JSON.stringify(added.body)).toMatchObject({ applied: true });
    const narrowed = await apply(server.adminAuth, review("{ roles: [payroll-admin] }"));
    expect(narrowed.body, JSON.stringify(narrowed.body)).toMatchObject({ applied: true });
    expect(await storedScope()).not.toContain("wiki-editor");
  });
});
