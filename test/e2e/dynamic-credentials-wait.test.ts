/**
 * `GET /v1/me/roles/:role/credentials?wait=N` against the machine's real PostgreSQL: asked right after the submit,
 * while the activation is still provisioning, the read answers with the minted login once the activation is
 * active (woken by it, no polling by the caller), and the login works. A read with nothing coming, or whose
 * activation fails, answers NOT_ACTIVE; a wait out of range is refused.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ApiReply, TargetsHarness } from "../../src/testing/targets-harness.js";
import { dynamicPgConfig, stintWithPgTarget, type PgTarget } from "./pg-target.js";

const hex = randomBytes(4).toString("hex");
const reader = `stint_dynw_reader_${hex}`;
const user = `wen${hex}`;

let h: TargetsHarness;
let target: PgTarget | undefined;

beforeAll(async () => {
  ({ h, target } = await stintWithPgTarget({
    target: {
      database: `stint_dynw_${hex}`,
      reader,
      table: { name: "ledger", column: "entry", value: "opening balance" },
      mintedFor: user,
    },
    principals: [user],
    config: (address) =>
      dynamicPgConfig({
        policy: "dynw-self",
        target: "ledger-pg",
        address,
        roles: [
          { name: "ledger-reader", reader },
          { name: "ledger-broken", reader: `stint_dynw_missing_${hex}` },
        ],
        users: [user],
      }),
  }));
});

afterAll(async () => {
  await h?.server.cleanup();
  await target?.cleanup();
});

async function submit(role: string): Promise<string> {
  const res = await h.as(user, "POST", "/v1/activation-requests", {
    role,
    duration: "10m",
    reason: "reading the ledger for the audit",
  });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  expect(res.body.state).toBe("provisioning");
  return String(res.body.id);
}

describe("credentials read that waits for the activation", () => {
  it("asked while provisioning, answers the working login once the activation is active", async () => {
    await submit("ledger-reader");
    // Without waiting, nothing yet.
    expect((await h.as(user, "GET", "/v1/me/roles/ledger-reader/credentials")).body.error?.code).toBe("NOT_ACTIVE");

    let answered: ApiReply | undefined;
    const waiting = h.as(user, "GET", "/v1/me/roles/ledger-reader/credentials?wait=30").then((reply) => {
      answered = reply;
      return reply;
    });
    // The read is parked on the request, which is still provisioning (the outbox has not run).
    await expect.poll(() => h.server.grants.waitingForCredentials(), { timeout: 20_000 }).toBe(1);
    expect(answered).toBeUndefined();

    await h.drainOutbox();
    const reply = await waiting;
    expect(reply.status, JSON.stringify(reply.body)).toBe(200);
    const creds = reply.body as unknown as {
      host: string;
      port: number;
      database: string;
      user: string;
      password: string;
    };
    expect(creds.user).toMatch(new RegExp(`^stint_${user}_[0-9a-f]{8}$`));

    const client = new pg.Client({ ...creds, database: creds.database });
    client.on("error", () => undefined);
    await client.connect();
    try {
      expect((await client.query("select entry from ledger")).rows).toEqual([{ entry: "opening balance" }]);
    } finally {
      await client.end();
    }
    const audit = await h.admin("GET", "/v1/audit/events?limit=500");
    expect((audit.body.items as { action: string }[]).map((e) => e.action)).toContain("grant.credentials_read");
    expect(JSON.stringify(audit.body)).not.toContain(creds.password);
    await h.as(user, "POST", "/v1/me/roles/ledger-reader/deactivate");
    await h.drainOutbox();
  });

  it("with nothing on its way, answers NOT_ACTIVE without waiting", async () => {
    const reply = await h.as(user, "GET", "/v1/me/roles/ledger-reader/credentials?wait=30");
    expect(reply.status).toBe(409);
    expect(reply.body.error?.code).toBe("NOT_ACTIVE");
    expect(h.server.grants.waitingForCredentials()).toBe(0);
  });

  it("answers NOT_ACTIVE when the activation it waits for fails at the target", async () => {
    await submit("ledger-broken");
    const waiting = h.as(user, "GET", "/v1/me/roles/ledger-broken/credentials?wait=30");
    await expect.poll(() => h.server.grants.waitingForCredentials(), { timeout: 20_000 }).toBe(1);
    await h.drainOutbox();
    const reply = await waiting;
    expect(reply.body.error?.code, JSON.stringify(reply.body)).toBe("NOT_ACTIVE");
  });

  it("refuses a wait out of range", async () => {
    for (const wait of ["31", "-1", "soon"]) {
      const reply = await h.as(user, "GET", `/v1/me/roles/ledger-reader/credentials?wait=${wait}`);
      expect(reply.status, wait).toBe(400);
      expect(reply.body.error?.code).toBe("VALIDATION_FAILED");
    }
  });
});
