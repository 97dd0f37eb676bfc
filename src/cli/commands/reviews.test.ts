/** `stint reviews` against a whole server in this process: the inbox, a decision, show, export and close. */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCliCaptured } from "../../testing/cli-run.js";
import { testServer, type TestServer } from "../../testing/server.js";

describe("stint reviews", () => {
  let server: TestServer;
  let dir: string;
  let env: Record<string, string>;
  let owner = "";
  let member = "";
  let admin = "";

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "stint-cli-reviews-"));
    server = await testServer("pglite");
    await server.app.listen({ port: 0, host: "127.0.0.1" });
    const { port } = server.app.server.address() as AddressInfo;
    env = { STINT_CONFIG_DIR: dir, HOME: dir, STINT_SERVER: `http://127.0.0.1:${port}` };
    owner = (await server.userWithRoles("owl", ["user"])).replace(/^Bearer /, "");
    member = (await server.userWithRoles("mel", ["user"])).replace(/^Bearer /, "");
    admin = server.adminAuth.replace(/^Bearer /, "");
    const apply = await server.app.inject({
      method: "POST",
      url: "/v1/config/apply",
      headers: { authorization: server.adminAuth },
      payload: {
        yaml: `
apiVersion: stint/v1
groups:
  - name: owners
    members: [owl]
policies:
  - name: self
    mfa: { required: false }
    maxDuration: 1h
targets:
  - name: app
    kind: internal
roles:
  - name: app-ops
    target: app
    policy: self
    risk: low
    owners: [owners]
eligibility:
  - role: app-ops
    users: [mel]
`,
      },
    });
    expect(apply.statusCode, apply.body).toBe(200);
  });

  afterAll(async () => {
    await server?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function run(argv: string[], token: string) {
    return runCliCaptured(argv, { env: { ...env, STINT_TOKEN: token } });
  }

  it("lists the owner's inbox, decides, shows, exports CSV and closes; the member cannot decide their own", async () => {
    const created = await server.app.inject({
      method: "POST",
      url: "/v1/reviews/campaigns",
      headers: { authorization: server.adminAuth },
      payload: { name: "ops-review", reviewers: { owners: true }, duration: "7d" },
    });
    expect(created.statusCode, created.body).toBe(201);
    const campaign = created.json<{ id: string; items: { id: string }[] }>();
    const itemId = campaign.items[0]!.id;

    const inbox = await run(["reviews", "list"], owner);
    expect(inbox.code, inbox.stderr).toBe(0);
    expect(inbox.stdout).toMatch(/^ID\s+ROLE\s+MEMBER\s+EVIDENCE\s+DUE\s+STATE/);
    expect(inbox.stdout).toMatch(new RegExp(`${itemId}\\s+app-ops\\s+mel\\s+never activated → remove`));
    expect((await run(["reviews", "list"], member)).stdout).toBe("Nothing waiting for your review.\n");

    const own = await run(["reviews", "decide", itemId, "keep", "--reason", "I need it"], member);
    expect(own.code).not.toBe(0);
    expect(own.stderr).toContain("SELF_REVIEW");
    const badChoice = await run(["reviews", "decide", itemId, "maybe", "--reason", "x"], owner);
    expect(badChoice.code).toBe(2);

    const decided = await run(["reviews", "decide", itemId, "keep", "--reason", "still on the ops rota"], owner);
    expect(decided.code, decided.stderr).toBe(0);
    expect(decided.stdout).toBe("eligibility:app-ops/mel: kept\n");

    const shown = await run(["reviews", "show", campaign.id], admin);
    expect(shown.stdout).toContain("ops-review (open): 1 of 1 decided");
    const csv = await run(["reviews", "export", campaign.id], admin);
    expect(csv.stdout.split("\n")[0]).toBe(
      "id,role,member,status,outcome,reviewers,closedBy,closedAt,decisionReason,recommendation,lastActivationAt,activationsInPeriod,lastSignInAt",
    );
    expect(csv.stdout).toContain(`"${itemId}","app-ops","mel","closed","kept","owl","owl"`);
    const campaigns = await run(["reviews", "list", "--campaigns"], member);
    expect(campaigns.code).toBe(5);

    const closed = await run(["reviews", "close", campaign.id], admin);
    expect(closed.code, closed.stderr).toBe(0);
    expect((await run(["reviews", "close", campaign.id], admin)).stderr).toContain("CAMPAIGN_CLOSED");
  }, 60_000);

  it("stint diff, apply and export round-trip the reviews: section", async () => {
    const exported = await run(["export"], admin);
    expect(exported.code, exported.stderr).toBe(0);
    const file = path.join(dir, "catalog.yaml");
    await writeFile(
      file,
      `${exported.stdout}reviews:\n  - name: ops-quarterly\n    every: 90d\n    duration: 14d\n    reviewers: { owners: true }\n`,
    );
    const diff = await run(["diff", "-f", file], admin);
    expect(diff.code, diff.stderr).toBe(0);
    expect(diff.stdout).toContain("ops-quarterly");
    expect(diff.stdout).toContain("Plan: 1 to create, 0 to change, 0 to delete.");
    const applied = await run(["apply", "-f", file], admin);
    expect(applied.code, applied.stderr).toBe(0);
    const again = await run(["export"], admin);
    expect(again.stdout).toContain(
      "reviews:\n  - name: ops-quarterly\n    every: 90d\n    duration: 14d\n    reviewers:\n      owners: true\n",
    );
    await writeFile(file, again.stdout);
    expect((await run(["diff", "-f", file], admin)).stdout).toContain("No changes.");
  }, 60_000);
});
