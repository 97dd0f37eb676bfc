/**
 * Acceptance (issue 3, point 1): the seed scenario through the built CLI against the built server.
 * alice, eligible for prod-db-reader through the group sre (MFA, manager approval, max 2h), asks
 * for it with a reason and a ticket and waits; her own approval is refused; carol, her manager,
 * approves; `stint roles` shows it active with time left and the check API allows it; at expiry
 * (1 minute: short, yet long enough for the steps in between on a loaded machine) the check says not allowed; the audit export holds
 * the request, the refused self-approval, the approval, the activation and the expiry with their
 * actors and reasons.
 *
 * Setup goes through the CLI as an administrator would: users and groups with `stint users` and
 * `stint groups`, the policy, target, role and eligibility with `stint apply -f`.
 *
 * Needs the build (`npm test` runs `npm run build` before vitest).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import * as OTPAuth from "otpauth";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assertBuilt, BIN, cli, freePort, seedDataDir, start, type CliResult, type RunningProcess } from "./support.js";

const ADMIN_PASSWORD = "pim-scenario-root-password";
const REASON = "investigate slow queries on the orders database";
const TICKET = "INC-4711";
const APPROVAL_REASON = "matches INC-4711, go ahead";
/** A first start (initdb, migrations, bootstrap) can take 20 s and more on a loaded machine. */
const READY_TIMEOUT_MS = 90_000;

const CONFIG = `apiVersion: stint/v1
policies:
  - name: high-risk
    defaultDuration: 1h
    maxDuration: 2h
    mfa: { required: true, maxAge: 10m }
    justification: { minLength: 20, ticketPattern: "^(INC|CHG)-[0-9]+$" }
    approval:
      stages:
        - approvers: { manager: true }
          count: 1
          timeout: 30m
          onTimeout: escalate
          escalateTo: { groups: [sre-leads] }
    maxExtensions: 1
targets:
  - name: stint
    kind: internal
roles:
  - name: prod-db-reader
    target: stint
    risk: high
    policy: high-risk
    owners: [sre-leads]
eligibility:
  - role: prod-db-reader
    groups: [sre]
    until: 2027-11-24
`;

interface AuditLine {
  seq: number;
  actor: string;
  action: string;
  outcome: string;
  subject: string | null;
  reason: string | null;
  details: Record<string, unknown> | null;
}

interface RoleItem {
  role: string;
  state: string | null;
  requestId: string | null;
  expiresAt: string | null;
  eligibleUntil: string | null;
  policy: { maxDuration: string; approvalRequired: boolean; mfaRequired: boolean };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function totp(secret: string, timestamp: number): string {
  return new OTPAuth.TOTP({
    secret: OTPAuth.Secret.fromBase32(secret),
    digits: 6,
    period: 30,
    algorithm: "SHA1",
  }).generate({ timestamp });
}

/** The command line and its output, for assertion messages. */
function shown(args: string[], result: CliResult): string {
  return `stint ${args.join(" ")} → exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;
}

async function waitUntilReady(url: string, server: RunningProcess): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (server.child.exitCode !== null) throw new Error(`the server exited early:\n${server.output()}`);
    const ok = await fetch(`${url}/readyz`).then(
      async (res) => (await res.text(), res.ok),
      () => false,
    );
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`not ready within ${READY_TIMEOUT_MS} ms:\n${server.output()}`);
    await sleep(200);
  }
}

describe("PIM scenario through the CLI: request, approval, activation, check, expiry, audit", () => {
  let work: string;
  let url: string;
  let server: RunningProcess;
  const background: RunningProcess[] = [];

  /** `stint ARGS` as `user` (each user has their own config directory, so their own sign-in). */
  function as(user: string) {
    return (args: string[], input?: string) =>
      cli(args, {
        env: { STINT_CONFIG_DIR: path.join(work, `cli-${user}`), STINT_SERVER: url, STINT_TOKEN: "" },
        ...(input !== undefined ? { input } : {}),
      });
  }

  /** Runs the command and expects `code`; returns the result. */
  async function expectExit(run: ReturnType<typeof as>, args: string[], code: number, input?: string) {
    const result = await run(args, input);
    expect(result.code, shown(args, result)).toBe(code);
    return result;
  }

  beforeAll(async () => {
    assertBuilt();
    work = mkdtempSync(path.join(tmpdir(), "stint-pim-scenario-"));
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    await seedDataDir(path.join(work, "data"));
    server = start(process.execPath, [BIN, "server"], {
      env: {
        STINT_LISTEN: `127.0.0.1:${port}`,
        STINT_DATA_DIR: path.join(work, "data"),
        STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
        STINT_SCHEDULER_POLL: "200ms",
        STINT_LOG_LEVEL: "warn",
      },
    });
    await waitUntilReady(url, server);
  }, 180_000);

  afterAll(async () => {
    for (const running of background) await running.kill("SIGTERM");
    await server?.kill("SIGTERM");
    if (work) rmSync(work, { recursive: true, force: true });
  }, 30_000);

  it("alice activates prod-db-reader with carol's approval; it expires on time; every step is audited", async () => {
    const admin = as("admin");
    const alice = as("alice");
    const carol = as("carol");
    const bob = as("bob");
    const passwords = { alice: "tulip orbit canyon lantern", carol: "maple quartz harbor violet" };

    // 1. The administrator sets up people, groups and (as code) the policy, target, role and eligibility.
    await expectExit(admin, ["login", "--user", "admin", "--password-stdin"], 0, `${ADMIN_PASSWORD}\n`);
    await expectExit(admin, ["users", "create", "carol", "--password-stdin"], 0, `${passwords.carol}\n`);
    await expectExit(
      admin,
      ["users", "create", "alice", "--manager", "carol", "--password-stdin"],
      0,
      `${passwords.alice}\n`,
    );
    await expectExit(admin, ["users", "create", "bob", "--password-stdin"], 0, "saffron delta meadow pylon\n");
    await expectExit(admin, ["groups", "create", "sre"], 0);
    await expectExit(admin, ["groups", "create", "sre-leads"], 0);
    await expectExit(admin, ["groups", "add", "sre", "alice"], 0);
    await expectExit(admin, ["groups", "add", "sre", "bob"], 0);
    await expectExit(admin, ["groups", "add", "sre-leads", "carol"], 0);
    const file = path.join(work, "stint.yaml");
    writeFileSync(file, CONFIG);
    await expectExit(admin, ["apply", "-f", file], 0);
    expect((await expectExit(admin, ["diff", "-f", file], 0)).stdout).toContain("No changes.");

    // 2. alice enrols TOTP and signs in with a code, so her session's MFA is fresh.
    await expectExit(alice, ["login", "--user", "alice", "--password-stdin"], 0, `${passwords.alice}\n`);
    const { secret } = JSON.parse((await expectExit(alice, ["mfa", "enroll", "--json"], 0)).stdout) as {
      secret: string;
    };
    await expectExit(alice, ["mfa", "confirm", totp(secret, Date.now())], 0);
    await expectExit(alice, ["logout"], 0);
    // The next 30-second step: the enrolment used the current one, and a code works only once.
    await expectExit(
      alice,
      ["login", "--user", "alice", "--password-stdin", "--otp", totp(secret, Date.now() + 30_000)],
      0,
      `${passwords.alice}\n`,
    );
    await expectExit(carol, ["login", "--user", "carol", "--password-stdin"], 0, `${passwords.carol}\n`);
    await expectExit(bob, ["login", "--user", "bob", "--password-stdin"], 0, "saffron delta meadow pylon\n");

    // 3. `stint roles` shows the role, its policy in words, and that it is not active.
    const eligible = JSON.parse((await expectExit(alice, ["roles", "--json"], 0)).stdout) as { items: RoleItem[] };
    expect(eligible.items).toEqual([
      expect.objectContaining({
        role: "prod-db-reader",
        state: null,
        // `until: 2027-11-24` includes that whole day (UTC).
        eligibleUntil: "2027-11-25T00:00:00.000Z",
        policy: expect.objectContaining({ maxDuration: "2h", approvalRequired: true, mfaRequired: true }),
      }),
    ]);
    const rolesTable = (await expectExit(alice, ["roles"], 0)).stdout;
    expect(rolesTable).toMatch(/prod-db-reader\s+eligible\s+high\s+up to 2h \(default 1h\), 1 approval stage, MFA/);
    await expectExit(alice, ["check", "alice", "prod-db-reader"], 9);

    // 4. alice asks for one minute and waits (a separate process, as at her terminal).
    const activateArgs = [
      "activate",
      "prod-db-reader",
      "--for",
      "1m",
      "--reason",
      REASON,
      "--ticket",
      TICKET,
      "--wait",
      "--timeout",
      "5m",
    ];
    const waiting = start(process.execPath, [BIN, ...activateArgs], {
      env: { STINT_CONFIG_DIR: path.join(work, "cli-alice"), STINT_SERVER: url, STINT_TOKEN: "" },
    });
    background.push(waiting);
    const waited = new Promise<number | null>((resolve) => waiting.child.once("exit", (code) => resolve(code)));
    await waiting.waitFor(/waiting for approval: stage 1\/1 \(stage 1\): 0 of 1 approvals/, 60_000);
    const mine = JSON.parse((await expectExit(alice, ["requests", "--json"], 0)).stdout) as {
      items: { id: string; state: string; ticket: string; duration: string }[];
    };
    expect(mine.items).toHaveLength(1);
    const request = mine.items[0]!;
    expect(request).toMatchObject({ state: "pending", ticket: TICKET, duration: "1m" });
    const id = request.id;
    const short = id.replace(/-/g, "").slice(-8);

    // 5. Nobody approves their own request; bob, who is no approver, does not even see it.
    const self = await expectExit(alice, ["approve", id, "--reason", "I trust myself"], 5);
    expect(self.stderr).toContain("SELF_APPROVAL");
    await expectExit(bob, ["approve", id], 6);

    // 6. carol finds it waiting for her and approves it by its short id.
    const inbox = (await expectExit(carol, ["requests", "--pending"], 0)).stdout;
    expect(inbox).toMatch(new RegExp(`^${short}\\s+prod-db-reader\\s+alice\\s+pending\\s+\\S+\\s+1/1\\s`, "m"));
    const approvedAt = Date.now();
    const approved = await expectExit(carol, ["approve", short, "--reason", APPROVAL_REASON], 0);
    expect(approved.stdout).toMatch(/^Approved\. prod-db-reader is active until \S+Z \(\d+s left\)\.$/m);

    // 7. alice's wait ends: active, exit 0, with the expiry.
    expect(await waited, waiting.output()).toBe(0);
    expect(waiting.output()).toMatch(/prod-db-reader is active until \S+Z \(\d+s left\)\./);

    // 8. `stint roles` shows it active with time left; the check API allows it.
    const activeRoles = JSON.parse((await expectExit(alice, ["roles", "--json"], 0)).stdout) as {
      items: RoleItem[];
    };
    expect(activeRoles.items[0]).toMatchObject({ role: "prod-db-reader", state: "active", requestId: id });
    const expiresAt = Date.parse(activeRoles.items[0]!.expiresAt!);
    // The clock starts at the approval, not at the request: one minute from then.
    expect(expiresAt).toBeGreaterThanOrEqual(approvedAt + 60_000 - 2_000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 60_000);
    expect((await expectExit(alice, ["roles"], 0)).stdout).toMatch(/prod-db-reader\s+active, \d+s left\s+high/);
    const allowed = await expectExit(alice, ["check", "alice", "prod-db-reader"], 0);
    expect(allowed.stdout).toMatch(/^allowed: alice holds prod-db-reader until /);
    const asAdmin = JSON.parse((await expectExit(admin, ["check", "alice", "prod-db-reader", "--json"], 0)).stdout);
    expect(asAdmin).toMatchObject({ allowed: true, requestId: id, expiresAt: new Date(expiresAt).toISOString() });
    const token = JSON.parse((await expectExit(alice, ["token", "activation", "--json"], 0)).stdout) as {
      roles: { role: string }[];
      expiresAt: string;
    };
    expect(token.roles.map((role) => role.role)).toEqual(["prod-db-reader"]);
    expect(Date.parse(token.expiresAt)).toBeLessThanOrEqual(expiresAt);
    // A second request for a role that is active is answered clearly.
    const again = await expectExit(
      alice,
      ["activate", "prod-db-reader", "--for", "1m", "--reason", REASON, "--ticket", TICKET],
      7,
    );
    expect(again.stderr).toContain("REQUEST_ALREADY_OPEN");

    // 9. At expiry the check says not allowed (exit 5), and the request is expired by the system.
    let lastAllowedStart = 0;
    let deniedAt = 0;
    while (Date.now() < expiresAt + 30_000) {
      const startedAt = Date.now();
      const check = await alice(["check", "alice", "prod-db-reader"]);
      if (check.code === 0) lastAllowedStart = startedAt;
      else {
        expect(check.code, shown(["check", "alice", "prod-db-reader"], check)).toBe(9);
        expect(check.stdout).toMatch(/^not allowed: alice does not hold prod-db-reader/);
        deniedAt = Date.now();
        break;
      }
      // Each check is a CLI process: until 3 s before the expiry one sleep, then one a second up to the expiry.
      const left = expiresAt - Date.now();
      await sleep(left > 4_000 ? left - 3_000 : Math.min(1_000, Math.max(0, left)));
    }
    expect(deniedAt, "the check still allowed the role 30 s after its expiry").toBeGreaterThan(0);
    expect(deniedAt).toBeGreaterThanOrEqual(expiresAt);
    expect(lastAllowedStart).toBeLessThan(expiresAt);

    // The scheduler (polling every 200 ms) ends it within moments; wait generously on a loaded machine.
    let ended: { state: string; endedBy: string | null; endReason: string | null } | undefined;
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; await sleep(500)) {
      const list = JSON.parse((await expectExit(alice, ["requests", "--json"], 0)).stdout) as {
        items: { id: string; state: string; endedBy: string | null; endReason: string | null }[];
      };
      ended = list.items.find((item) => item.id === id);
      if (ended?.state === "expired") break;
    }
    expect(ended).toMatchObject({ state: "expired", endedBy: "system" });
    const after = JSON.parse((await expectExit(alice, ["roles", "--json"], 0)).stdout) as { items: RoleItem[] };
    expect(after.items[0]).toMatchObject({ role: "prod-db-reader", state: null, expiresAt: null });

    // 10. The audit export tells the whole story, with actors and reasons; the chain verifies.
    const exported = await expectExit(admin, ["audit", "export", "--format", "jsonl"], 0);
    const events = exported.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as AuditLine)
      .filter((event) => event.subject === `request:${id}`);
    const story = events.map((event) => `${event.action}:${event.outcome}:${event.actor}`);
    expect(story).toEqual([
      "request.submitted:success:alice",
      "request.approved:denied:alice",
      "request.approved:denied:bob",
      "request.approved:success:carol",
      "request.activated:success:carol",
      "request.expired:success:system:system",
    ]);
    const byAction = (action: string, outcome = "success") =>
      events.find((event) => event.action === action && event.outcome === outcome)!;
    expect(byAction("request.submitted")).toMatchObject({
      reason: REASON,
      details: expect.objectContaining({ role: "prod-db-reader", ticket: TICKET, duration: "1m" }),
    });
    expect(byAction("request.approved", "denied").reason).toMatch(/own request/);
    expect(byAction("request.approved")).toMatchObject({ reason: APPROVAL_REASON });
    expect(byAction("request.activated").details).toMatchObject({
      role: "prod-db-reader",
      requester: "alice",
      expiresAt: new Date(expiresAt).toISOString(),
    });
    expect(byAction("request.expired")).toMatchObject({
      reason: "the activation reached its end time",
      details: expect.objectContaining({ expiresAt: new Date(expiresAt).toISOString() }),
    });
    const lateByMs = byAction("request.expired").details!.lateByMs as number;
    expect(lateByMs).toBeGreaterThanOrEqual(0);
    expect(lateByMs).toBeLessThan(5_000);
    expect((await expectExit(admin, ["audit", "verify"], 0)).stdout).toMatch(/^OK: /);
  }, 420_000);
});
