/**
 * Class: PostgreSQL query logs lost or cut short when a session is ended (issue 12, finding 8 —
 * PostgreSQL part; acceptance 4). The SSH cases are in recording-evasion.test.ts.
 *
 * A session ended by an administrator's kill, a revoke or the activation's expiry while a statement
 * is streaming its result must keep a complete query log: the statement that was running is in it
 * (marked interrupted), the blob is closed (never left .partial), and its SHA-256 is the one the
 * audit log's `session.ended` names and the API serves. 20 repetitions across the three causes, one
 * after another. Real server, real proxy, real cluster (TLS + SCRAM), node-postgres.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRecording } from "../../src/contract/recording.js";
import { pgProxyHarness, type PgProxyHarness } from "../../src/testing/pg-proxy-harness.js";
import { ADMIN_PASSWORD } from "../../src/testing/server.js";

const REPETITIONS = 20;
const CAUSES = ["kill", "revoke", "expiry"] as const;
const STREAM = "SELECT g, repeat('x', 500) AS pad, pg_sleep(0.001) FROM generate_series(1, 1000000) AS g";

interface SessionItem {
  id: string;
  user: string;
  live: boolean;
  endReason: string | null;
}

describe("PostgreSQL query logs survive kill, revoke and expiry mid-output (finding 8, acceptance 4)", () => {
  let pgh: PgProxyHarness;

  beforeAll(async () => {
    pgh = await pgProxyHarness({ recording: "required" });
  });

  afterAll(async () => {
    await pgh?.close();
  });

  async function until<T>(what: string, probe: () => Promise<T | undefined | null | false>, ms = 20_000) {
    const deadline = Date.now() + ms;
    for (;;) {
      const value = await probe();
      if (value) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(25);
    }
  }

  async function sessions(): Promise<SessionItem[]> {
    const res = await pgh.h.admin("GET", "/v1/sessions?limit=1000");
    return (res.body.items as SessionItem[]).filter((s) => s.user === pgh.user);
  }

  async function endedEvent(id: string) {
    const res = await pgh.h.admin("GET", "/v1/audit/events?limit=1000&action=session.ended&order=desc");
    const items = res.body.items as { subject: string | null; details: Record<string, unknown> }[];
    return items.find((e) => e.subject === `session:${id}`);
  }

  it(`${REPETITIONS} sessions ended mid-output keep complete, verifiable query logs with the running statement`, async () => {
    for (let round = 0; round < REPETITIONS; round++) {
      const cause = CAUSES[round % CAUSES.length]!;
      const token = await pgh.token();
      const before = new Set((await sessions()).map((s) => s.id));
      const client = new pg.Client(pgh.clientConfig(token));
      const errors: Error[] = [];
      client.on("error", (error) => errors.push(error));
      await client.connect();
      await client.query("SELECT 'warm up' AS note");
      const session = await until("the new session", async () =>
        (await sessions()).find((s) => !before.has(s.id) && s.live),
      );

      // A result streaming row by row; end the session once the client has some of it.
      let rows = 0;
      const streaming = client.query(new pg.Query(STREAM));
      streaming.on("row", () => (rows += 1));
      const failed = new Promise<Error>((resolve) => streaming.on("error", resolve));
      await until("rows at the client", async () => rows >= 50);

      if (cause === "kill") {
        const res = await pgh.h.admin("POST", `/v1/sessions/${session.id}/kill`, { reason: "round " + round });
        expect(res.status, JSON.stringify(res.body)).toBe(200);
      } else if (cause === "revoke") {
        const res = await pgh.h.admin("POST", `/v1/activation-requests/${pgh.requestId()}/revoke`, {
          reason: "change window closed early",
        });
        expect(res.status, JSON.stringify(res.body)).toBe(200);
        pgh.forgetActivation();
      } else {
        await pgh.h.expireAll();
        pgh.forgetActivation();
      }
      const error = (await failed) as Error & { code?: string };
      expect(error.code, `${cause}: ${error.message}`).toBe("57P01");
      await client.end().catch(() => undefined);

      const ended = await until(`the end of round ${round} (${cause})`, async () =>
        (await sessions()).find((s) => s.id === session.id && !s.live),
      );
      expect(ended.endReason, cause).toMatch(cause === "kill" ? /killed/ : /activation_ended|revoked|expired/);
      const event = await until("the session.ended event", () => endedEvent(session.id));
      const recorded = event.details.recording as { key: string; sha256: string; bytes: number } | null;
      expect(recorded, `${cause}: session ended without a recording`).not.toBeNull();
      const file = path.join(pgh.h.server.config.blobDir, recorded!.key);
      expect(existsSync(`${file}.partial`), "left .partial").toBe(false);
      const bytes = readFileSync(file);
      expect(createHash("sha256").update(bytes).digest("hex")).toBe(recorded!.sha256);
      const served = await pgh.h.server.app.inject({
        method: "GET",
        url: `/v1/sessions/${session.id}/recording`,
        // Signed in afresh: the manual clock may have moved past the admin's token.
        headers: { authorization: await pgh.h.server.login(pgh.h.server.config.bootstrapAdminName, ADMIN_PASSWORD) },
      });
      expect(served.statusCode).toBe(200);
      expect(createHash("sha256").update(served.rawPayload).digest("hex")).toBe(recorded!.sha256);

      const recording = parseRecording(bytes.toString("utf8"));
      if (recording.kind !== "postgres") throw new Error("not a query log");
      const statements = recording.queries.map((q) => q.statement);
      expect(statements[0]).toBe("SELECT 'warm up' AS note");
      const last = recording.queries.at(-1)!;
      // The statement that was streaming when the session ended is logged, marked interrupted.
      expect(last, `${cause}: ${JSON.stringify(recording.queries)}`).toMatchObject({
        statement: STREAM,
        interrupted: true,
        command: null,
      });
      expect(last.error).toMatch(/^interrupted: /);
    }
  }, 180_000);
});
