import { afterEach, describe, expect, it } from "vitest";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { manualClock } from "../../lib/clock.js";
import { testServer, type TestServer } from "../../testing/server.js";
import { actAs, seedRole, seedUser } from "../../testing/pim.js";
import { verifyWebhookSignature } from "../notify/index.js";
import { createDecisionLinks } from "./decision-links.js";
import { randomUUID } from "node:crypto";

const SECRET = "webhook-secret-for-tests-0123456789";

describe("request notifications", () => {
  let server: TestServer | undefined;
  let receiver: Server | undefined;
  afterEach(async () => {
    await server?.cleanup();
    await new Promise((r) => (receiver ? receiver.close(r) : r(undefined)));
    server = undefined;
    receiver = undefined;
  });

  it("tells approvers of a new request and the requester of the outcome, through the outbox", async () => {
    const clock = manualClock("2026-03-02T10:00:00Z");
    const received: { body: string; headers: IncomingMessage["headers"]; at: Date }[] = [];
    receiver = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        received.push({ body, headers: req.headers, at: clock.now() });
        res.end("ok");
      });
    });
    await new Promise<void>((r) => receiver!.listen(0, "127.0.0.1", r));
    const port = (receiver.address() as { port: number }).port;
    const dir = mkdtempSync(path.join(tmpdir(), "stint-notify-"));
    const file = path.join(dir, "stint.yaml");
    writeFileSync(
      file,
      `publicUrl: https://stint.example.com\nnotifications:\n  channels:\n    - { name: ops, kind: webhook, url: "http://127.0.0.1:${port}/hook", secret: "${SECRET}" }\n`,
    );
    server = await testServer("pglite", { clock, env: { STINT_CONFIG_FILE: file } });
    await seedUser(server, "carol");
    await seedUser(server, "alice", { manager: "carol" });
    await seedRole(server, {
      name: "db",
      policy: {
        mfa: { required: false, maxAge: "10m" },
        justification: { minLength: 5 },
        approval: { stages: [{ approvers: { manager: true }, count: 1 }] },
      },
      eligibleUsers: ["alice"],
    });
    const id = (
      await actAs(server, "alice")("POST", "/v1/activation-requests", { role: "db", reason: "look at the replica lag" })
    ).body.id as string;
    await server.outbox.runOnce();
    // The deny link's one-time token works once, for that action only, and only for a named approver who is signed in.
    const links = (JSON.parse(received[0]!.body) as { links: { label: string; url: string }[] }).links;
    const tokenOf = (label: string) =>
      new URLSearchParams(new URL(links.find((l) => l.label === label)!.url).hash.slice(1)).get("token")!;
    const carol = actAs(server, "carol");
    const wrongAction = await carol("POST", `/v1/activation-requests/${id}/approvals`, { linkToken: tokenOf("Deny") });
    expect(wrongAction.body.error?.code).toBe("VALIDATION_FAILED");
    const self = await actAs(server, "alice")("POST", `/v1/activation-requests/${id}/denials`, {
      reason: "nope",
      linkToken: tokenOf("Deny"),
    });
    expect(self.body.error?.code).toBe("SELF_APPROVAL");
    const denied = await carol("POST", `/v1/activation-requests/${id}/denials`, {
      reason: "use the read replica dashboard",
      linkToken: tokenOf("Deny"),
    });
    expect(denied.body.state).toBe("denied");
    const used = await server.store.db.selectFrom("used_decision_links").select("request_id").execute();
    expect(used).toEqual([{ request_id: id }]);
    await server.outbox.runOnce();

    await seedRole(server, {
      name: "quick",
      policy: { mfa: { required: false, maxAge: "10m" }, justification: { minLength: 5 }, approval: { stages: [] } },
      eligibleUsers: ["alice"],
    });
    await actAs(server, "alice")("POST", "/v1/activation-requests", {
      role: "quick",
      duration: "30m",
      reason: "look at the replica lag",
    });
    await server.outbox.runOnce(); // activated
    clock.advance(20 * 60_000 - 1);
    await server.scheduler.runOnce();
    clock.advance(1);
    await server.scheduler.runOnce();
    await server.scheduler.runOnce();
    await server.outbox.runOnce();

    const bodies = received.map(
      (r) =>
        JSON.parse(r.body) as { event: string; title: string; text: string; links: { label: string; url: string }[] },
    );
    expect(bodies.map((b) => b.event)).toEqual([
      "request.submitted",
      "request.denied",
      "request.activated",
      "request.expiring",
    ]);
    expect(bodies[3]).toMatchObject({ title: "quick for alice ends soon" });
    expect(bodies[0]).toMatchObject({ title: "alice asks to activate db" });
    expect(bodies[0]!.links.map((l) => l.url.replace(/&token=[^&]+$/, ""))).toEqual([
      `https://stint.example.com/requests/${id}#decide=approve`,
      `https://stint.example.com/requests/${id}#decide=deny`,
    ]);
    expect(bodies[1]).toMatchObject({
      title: "db for alice was denied by carol",
      text: "Reason: use the read replica dashboard",
    });
    for (const r of received) {
      expect(verifyWebhookSignature(SECRET, String(r.headers["stint-signature"]), r.body, r.at)).toBe(true);
    }
  });
});

describe("the approvers' notification says what approving asks of their own MFA", () => {
  it("for a critical role by default (15m), for a policy's approval.mfa, and not at all where nothing is asked", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "stint-notify-mfa-"));
    const file = path.join(dir, "stint.yaml");
    // A channel nobody listens to: the notifications stay in the outbox, where this test reads them.
    writeFileSync(
      file,
      `notifications:\n  channels:\n    - { name: ops, kind: webhook, url: "http://127.0.0.1:9/hook", secret: "${SECRET}" }\n`,
    );
    const server = await testServer("pglite", { env: { STINT_CONFIG_FILE: file } });
    try {
      await seedUser(server, "carol");
      await seedUser(server, "alice", { manager: "carol" });
      const policy = (mfa?: object) => ({
        mfa: { required: false },
        approval: { stages: [{ approvers: { manager: true } }], ...(mfa ? { mfa } : {}) },
      });
      await seedRole(server, { name: "ledger", risk: "critical", policy: policy(), eligibleUsers: ["alice"] });
      await seedRole(server, {
        name: "vault",
        risk: "low",
        policy: policy({ maxAge: "5m", methods: ["webauthn"] }),
        eligibleUsers: ["alice"],
      });
      await seedRole(server, { name: "wiki", risk: "medium", policy: policy(), eligibleUsers: ["alice"] });
      for (const role of ["ledger", "vault", "wiki"])
        await actAs(server, "alice")("POST", "/v1/activation-requests", { role, reason: "quarter-end checks" });
      const rows = await server.store.db.selectFrom("outbox").select("payload").execute();
      const textOf = (role: string) =>
        rows
          .map((r) => JSON.stringify(r.payload))
          .filter((payload) => payload.includes(`alice asks to activate ${role}`))
          .join("\n");
      expect(textOf("ledger")).toContain(
        "Approving needs your own MFA within the last 15m: the page asks for a one-time code or a passkey",
      );
      expect(textOf("vault")).toContain("Approving needs a passkey check of your own within the last 5m");
      expect(textOf("wiki")).not.toBe("");
      expect(textOf("wiki")).not.toContain("Approving needs");
    } finally {
      await server.cleanup();
    }
  });
});

describe("decision links", () => {
  it("are one-time, bound to one request and one action, and expire", async () => {
    const clock = manualClock("2026-03-02T10:00:00Z");
    const server = await testServer("pglite", { clock });
    try {
      await seedUser(server, "carol");
      await seedUser(server, "alice", { manager: "carol" });
      await seedRole(server, {
        name: "db",
        policy: {
          mfa: { required: false, maxAge: "10m" },
          justification: { minLength: 5 },
          approval: { stages: [{ approvers: { manager: true }, count: 1 }] },
        },
        eligibleUsers: ["alice"],
      });
      const alice = actAs(server, "alice");
      const first = (await alice("POST", "/v1/activation-requests", { role: "db", reason: "look at the replica lag" }))
        .body.id as string;
      const links = createDecisionLinks({ keyring: server.keyring, clock });
      const carolId = (
        await server.store.db
          .selectFrom("principals")
          .select("id")
          .where("name", "=", "carol")
          .executeTakeFirstOrThrow()
      ).id;
      const consume = (token: string, id: string, action: "approve" | "deny") =>
        server.store.transaction((tx) => links.consume(tx, token, id, action, carolId));
      const token = await links.sign(first, "approve");
      await expect(consume(token, first, "deny")).rejects.toMatchObject({ code: "VALIDATION_FAILED" });
      await expect(consume(token, randomUUID(), "approve")).rejects.toMatchObject({ code: "VALIDATION_FAILED" });
      await consume(token, first, "approve");
      await expect(consume(token, first, "approve")).rejects.toMatchObject({ code: "VALIDATION_FAILED" });
      const later = await links.sign(first, "approve");
      clock.advance(24 * 3_600_000 + 1000);
      await expect(consume(later, first, "approve")).rejects.toMatchObject({ code: "VALIDATION_FAILED" });
    } finally {
      await server.cleanup();
    }
  });
});
