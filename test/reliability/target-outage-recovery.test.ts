/**
 * Issue 13 finding 4: after a target outage, revocations waiting on their backoff (up to the 10-minute cap)
 * must not wait it out. A TCP proxy in front of the machine's real PostgreSQL is the target's address; it is
 * closed (outage) while three activations are revoked, their revocations fail and are pushed to the cap;
 * when the proxy listens again on the same port, every stuck revocation completes within 5 s.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { selfServicePolicy, targetsHarness, type TargetsHarness } from "../../src/testing/targets-harness.js";
import { switchableRelay } from "../../src/testing/tcp-relay.js";
import { isMemberOf } from "../../src/testing/pg-target.js";
import { until } from "../../src/testing/until.js";

const hex = randomBytes(4).toString("hex");
const database = `stint_tor_${hex}`;
const reader = `stint_tor_reader_${hex}`;
const adminUrl = "postgres://postgres@127.0.0.1:5432";
const users = ["kim", "lee", "max"].map((u) => `${u}${hex}`);
const loginOf = (user: string) => `stint_tor_${user}`;

let root: pg.Client;
let h: TargetsHarness;

/** A TCP proxy to 127.0.0.1:5432 that can go down (listener closed, connections cut) and come back on its port. */
const proxy = switchableRelay({ host: "127.0.0.1", port: 5432 });

const isMember = (login: string) => isMemberOf(root, reader, login);

beforeAll(async () => {
  root = new pg.Client({ connectionString: `${adminUrl}/postgres` });
  await root.connect();
  await root.query(`create database ${database}`);
  for (const user of users) await root.query(`create role ${loginOf(user)} login`);
  await root.query(`create role ${reader} nologin`);
  const port = await proxy.up();
  h = await targetsHarness({ realTime: true });
  for (const user of users) await h.createUser(user);
  await h.apply(`
apiVersion: stint/v1
policies:${selfServicePolicy("tor-self")}
targets:
  - name: tor-db
    kind: postgres
    address: postgres://postgres@127.0.0.1:${port}/${database}?sslmode=disable
    identity: { template: "stint_tor_{{name}}" }
    options: { ignore: [postgres] }
roles:
  - name: tor-reader
    target: tor-db
    entitlement: { role: ${reader} }
    policy: tor-self
    risk: medium
eligibility:
  - role: tor-reader
    users: [${users.join(", ")}]
`);
});

afterAll(async () => {
  await h?.server.outbox.stop();
  await h?.server.cleanup();
  await proxy.down();
  if (!root) return;
  await root.query(`drop database if exists ${database} with (force)`).catch(() => undefined);
  for (const role of [...users.map(loginOf), reader])
    await root.query(`drop role if exists ${role}`).catch(() => undefined);
  await root.end();
});

describe("recovery after a target outage (issue 13 finding 4)", () => {
  it("after a 60 s outage, every revocation stuck in backoff completes within 5 s of the target answering again", async () => {
    const requests: string[] = [];
    for (const user of users) {
      const request = await h.activate(user, "tor-reader", "1h");
      expect(request.state, JSON.stringify(request)).toBe("active");
      requests.push(String(request.id));
      expect(await isMember(loginOf(user))).toBe(true);
    }

    await proxy.down();
    const down = Date.now();
    h.server.outbox.start();
    for (const id of requests) {
      const res = await h.admin("POST", `/v1/activation-requests/${id}/revoke`, { reason: "incident closed" });
      expect(res.body.state).toBe("revoked");
    }
    const db = h.server.store.db;
    const target = await db.selectFrom("targets").select("id").where("name", "=", "tor-db").executeTakeFirstOrThrow();
    const lane = `target:${target.id}`;
    // Each revocation fails against the dead address and waits on its backoff.
    await until(
      "the revocations to fail",
      async () => {
        const failed = await db
          .selectFrom("outbox")
          .select("id")
          .where("lane", "=", lane)
          .where("kind", "=", "grant.revoke")
          .where("status", "=", "pending")
          .where("attempts", ">", 0)
          .execute();
        return failed.length === users.length;
      },
      30_000,
    );
    // As after a long outage: their next attempts are at the backoff cap, 10 minutes away.
    await db
      .updateTable("outbox")
      .set({ next_attempt_at: new Date(h.clock.now().getTime() + 10 * 60_000) })
      .where("lane", "=", lane)
      .where("status", "=", "pending")
      .where("attempts", ">", 0)
      .execute();
    // The outage lasts a minute in all, as in acceptance 4 (probes keep failing meanwhile).
    const outage = Date.now() - down;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, 60_000 - outage)));
    for (const user of users) expect(await isMember(loginOf(user))).toBe(true);

    await proxy.up();
    const back = Date.now();
    // Complete: the privilege gone at the target and the grant recorded as revoked.
    await until(
      "every revocation to complete",
      async () => {
        const grants = await db.selectFrom("grants").select("state").where("request_id", "in", requests).execute();
        const gone = (await Promise.all(users.map((u) => isMember(loginOf(u))))).every((m) => !m);
        return gone && grants.every((g) => g.state === "revoked");
      },
      20_000,
    );
    const elapsed = Date.now() - back;
    expect(elapsed).toBeLessThan(5_000);
  });
});
