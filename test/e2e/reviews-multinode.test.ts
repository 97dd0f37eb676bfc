/**
 * Missed review items at the due date with two server instances on one PostgreSQL database: both run the reviews
 * pass at the same moment, and each item is applied exactly once (one review.missed event, one eligibility.remove).
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { openAppStore } from "../../src/db/index.js";
import { manualClock } from "../../src/lib/clock.js";
import { createLogger } from "../../src/lib/logger.js";
import { createServer, type Server } from "../../src/server.js";
import { passwordFor, TEST_SCRYPT, testServer, type TestServer } from "../../src/testing/server.js";

const clock = manualClock(new Date());
const masterKey = randomBytes(32);
const users = Array.from({ length: 6 }, (_, i) => `member${i}`);
let nodeA: TestServer;
let nodeB: Server;

beforeAll(async () => {
  nodeA = await testServer("postgres", { clock, masterKey });
  nodeB = await createServer({
    config: nodeA.config,
    logger: createLogger({ level: "silent" }),
    masterKey,
    vaultKey: randomBytes(32),
    clock,
    scrypt: TEST_SCRYPT,
    store: await openAppStore({ databaseUrl: nodeA.databaseUrl }),
  });
  await nodeB.app.ready();
  for (const user of [...users, "lead"]) {
    const res = await nodeA.app.inject({
      method: "POST",
      url: "/v1/users",
      headers: { authorization: nodeA.adminAuth },
      payload: { name: user, password: passwordFor(user) },
    });
    expect(res.statusCode).toBe(201);
  }
  const apply = await nodeA.app.inject({
    method: "POST",
    url: "/v1/config/apply",
    headers: { authorization: nodeA.adminAuth },
    payload: {
      yaml: `
apiVersion: stint/v1
groups:
  - name: leads
    members: [lead]
policies:
  - name: self
    mfa: { required: false }
    maxDuration: 1h
targets:
  - name: app
    kind: internal
roles:
  - name: app-root
    target: app
    policy: self
    risk: critical
    owners: [leads]
eligibility:
  - role: app-root
    users: [${users.join(", ")}]
`,
    },
  });
  expect(apply.statusCode, apply.body).toBe(200);
}, 120_000);

afterAll(async () => {
  await nodeB?.close();
  await nodeA?.cleanup();
});

it("two nodes apply each missed item exactly once", async () => {
  const created = await nodeA.app.inject({
    method: "POST",
    url: "/v1/reviews/campaigns",
    headers: { authorization: nodeA.adminAuth },
    payload: { name: "root-review", scope: { risk: ["critical"] }, reviewers: { owners: true }, duration: "1h" },
  });
  expect(created.statusCode, created.body).toBe(201);
  clock.advance(3600_000 + 1);
  const [a, b] = await Promise.all([nodeA.reviewsWorker.runOnce(), nodeB.reviewsWorker.runOnce()]);
  expect(a.applied + b.applied).toBe(users.length);
  expect((await nodeA.reviewsWorker.runOnce()).applied).toBe(0);
  await nodeA.audit.catchUp();
  const count = async (action: string) =>
    Number(
      (
        await nodeA.store.db
          .selectFrom("audit_events")
          .select((eb) => eb.fn.countAll<string>().as("n"))
          .where("action", "=", action)
          .executeTakeFirstOrThrow()
      ).n,
    );
  expect(await count("review.missed")).toBe(users.length);
  expect(await count("eligibility.remove")).toBe(users.length);
  expect(await count("review.campaign.close")).toBe(1);
  const live = await nodeA.store.db.selectFrom("eligibilities").select("id").where("removed_at", "is", null).execute();
  expect(live).toHaveLength(0);
});
