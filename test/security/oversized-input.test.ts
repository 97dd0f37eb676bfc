/**
 * Oversized request reasons (issue 12 regression class; cf. unbounded justification fields that bloat
 * audit logs and notifications, e.g. Teleport's request reason limits). Over a real socket: a 1 MB
 * reason, ticket or justification gets VALIDATION_FAILED, a body past the 1 MiB limit gets
 * PAYLOAD_TOO_LARGE; nothing is stored or audited, and the server goes on serving.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testServer, type TestServer } from "../../src/testing/server.js";
import { seedRole, seedUser } from "../../src/testing/pim.js";

const MB = 1_000_000;
let server: TestServer;
let url: string;
let alice: string;
let carol: string;
let pendingId: string;

async function call(method: string, path: string, authorization: string, body: unknown) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { authorization, "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text, code: (JSON.parse(text) as { error?: { code: string } }).error?.code };
}

const counts = async () => ({
  requests: Number(
    (
      await server.store.db
        .selectFrom("activation_requests")
        .select((eb) => eb.fn.countAll().as("n"))
        .executeTakeFirstOrThrow()
    ).n,
  ),
  events: Number(
    (
      await server.store.db
        .selectFrom("audit_events")
        .select((eb) => eb.fn.countAll().as("n"))
        .executeTakeFirstOrThrow()
    ).n,
  ),
});

beforeAll(async () => {
  server = await testServer("pglite");
  url = await server.app.listen({ host: "127.0.0.1", port: 0 });
  await seedUser(server, "carol");
  await seedUser(server, "alice", { manager: "carol" });
  await seedUser(server, "bob", { manager: "carol" });
  await seedRole(server, {
    name: "db",
    policy: {
      mfa: { required: false, maxAge: "10m" },
      justification: { minLength: 5 },
      approval: { stages: [{ approvers: { manager: true }, count: 1 }] },
    },
    eligibleUsers: ["alice", "bob"],
  });
  alice = await server.login("alice");
  carol = await server.login("carol");
  const pending = await call("POST", "/v1/activation-requests", await server.login("bob"), {
    role: "db",
    reason: "a normal reason",
  });
  expect(pending.status).toBe(201);
  pendingId = (JSON.parse(pending.text) as { id: string }).id;
});
afterAll(async () => server?.cleanup());

describe("oversized request reasons", () => {
  it("refuses a 1 MB reason, ticket or justification with VALIDATION_FAILED, storing and auditing nothing", async () => {
    const huge = "x".repeat(MB);
    const before = await counts();
    const attempts: [string, string, string, unknown][] = [
      ["submit reason", "POST", "/v1/activation-requests", { role: "db", reason: huge }],
      ["submit ticket", "POST", "/v1/activation-requests", { role: "db", reason: "fine reason", ticket: huge }],
      ["approval reason", "POST", `/v1/activation-requests/${pendingId}/approvals`, { reason: huge }],
      ["denial reason", "POST", `/v1/activation-requests/${pendingId}/denials`, { reason: huge }],
      ["revoke reason", "POST", `/v1/activation-requests/${pendingId}/revoke`, { reason: huge }],
      ["extension reason", "POST", "/v1/me/roles/db/extensions", { duration: "1h", reason: huge }],
      ["unicode reason", "POST", "/v1/activation-requests", { role: "db", reason: "é".repeat(MB / 2) }],
    ];
    for (const [label, method, path, body] of attempts) {
      const auth =
        label.startsWith("approval") || label.startsWith("denial")
          ? carol
          : label.startsWith("revoke")
            ? server.adminAuth
            : alice;
      const res = await call(method, path, auth, body);
      expect(res.status, `${label}: ${res.text.slice(0, 200)}`).toBe(400);
      expect(res.code, label).toBe("VALIDATION_FAILED");
      // The answer says what is wrong, without echoing the megabyte back.
      expect(res.text.length, label).toBeLessThan(2000);
    }
    expect(await counts()).toEqual(before);
  });

  it("refuses a body past the limit with PAYLOAD_TOO_LARGE before reading it into a request", async () => {
    const before = await counts();
    const res = await call("POST", "/v1/activation-requests", alice, { role: "db", reason: "y".repeat(2 * MB) });
    expect(res.status).toBe(413);
    expect(res.code).toBe("PAYLOAD_TOO_LARGE");
    expect(await counts()).toEqual(before);
  });

  it("keeps serving: health, and a normal request right after", async () => {
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const ok = await call("POST", "/v1/activation-requests", alice, { role: "db", reason: "look at the slow queries" });
    expect(ok.status, ok.text).toBe(201);
  });
});
