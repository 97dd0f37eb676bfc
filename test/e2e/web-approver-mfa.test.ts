/**
 * Finding 82 in a real browser (playwright-core driving Debian's Chromium): an approver whose session holds no
 * MFA approves a request for a critical role from the Approvals inbox. The server refuses it
 * (MFA_STEP_UP_REQUIRED, the one 4xx the page may meet); the dialog then asks for a one-time code; with it the
 * approval goes again and counts, and its audit event records how the approver proved it. Needs `npm run build`.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { totpNow } from "../../src/testing/server.js";
import { apiAs, Guard, launchChromium, signInPage } from "./browser.js";
import { startWebServer, type RunningProcess } from "./support.js";

const ADMIN_PASSWORD = "approver-mfa-web-root-password";
const PASSWORDS = { alice: "tulip orbit canyon lantern", carol: "maple quartz harbor violet" };
const ROLE = "ledger-admin";

let work: string;
let url: string;
let server: RunningProcess;
let browser: Browser;
let pendingId: string;

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), "stint-web-approver-mfa-"));
  ({ server, url } = await startWebServer({ work, env: { STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD } }));
  const admin = await apiAs(url, "admin", ADMIN_PASSWORD);
  expect((await admin("POST", "/v1/users", { name: "carol", password: PASSWORDS.carol })).status).toBe(201);
  expect(
    (await admin("POST", "/v1/users", { name: "alice", password: PASSWORDS.alice, manager: "carol" })).status,
  ).toBe(201);
  // No approval.mfa: a critical role's approvers need their own MFA by default.
  const applied = await admin("POST", "/v1/config/apply", {
    yaml: `apiVersion: stint/v1
policies:
  - name: by-manager
    mfa: { required: false }
    approval:
      stages:
        - approvers: { manager: true }
targets:
  - name: stint
    kind: internal
roles:
  - name: ${ROLE}
    target: stint
    risk: critical
    policy: by-manager
eligibility:
  - role: ${ROLE}
    users: [alice]
`,
  });
  expect(applied.status, JSON.stringify(applied.body)).toBe(200);
  const alice = await apiAs(url, "alice", PASSWORDS.alice);
  const res = await alice("POST", "/v1/activation-requests", { role: ROLE, reason: "close the quarter's books" });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  pendingId = res.body.id as string;
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await server?.kill("SIGTERM");
  if (work) rmSync(work, { recursive: true, force: true });
}, 30_000);

describe("an approver without a fresh MFA, in the web UI", () => {
  it("is asked for a one-time code in the approval dialog, and the approval then counts", async () => {
    const guard = new Guard(() => browser);
    guard.expect(`POST /v1/activation-requests/${pendingId}/approvals 401`);
    const context = await guard.context();
    // Signed in with the password alone (no authenticator yet): the session holds no MFA.
    const page = await signInPage(context, url, "carol", PASSWORDS.carol);
    // Carol enrols an authenticator in another session (it does not refresh the browser's MFA time).
    const carol = await apiAs(url, "carol", PASSWORDS.carol);
    const secret = String((await carol("POST", "/v1/me/mfa/totp")).body.secret);
    expect((await carol("POST", "/v1/me/mfa/totp/confirm", { code: totpNow(secret) })).status).toBe(200);

    await page.evaluate(
      `window.history.pushState(null, "", "/approvals"); window.dispatchEvent(new PopStateEvent("popstate"));`,
    );
    const whose = `alice's request for ${ROLE}`;
    await page.getByRole("button", { name: `Approve ${whose}` }).click();
    const dialog = page.getByRole("dialog", { name: `Approve ${whose}` });
    await dialog.getByRole("button", { name: "Approve", exact: true }).click();
    await dialog.getByText(/Approving requests for this role needs a one-time code/).waitFor();

    // The next time step's code (the one just used for the enrolment is spent; a step either side is accepted).
    await dialog.getByLabel("One-time code").fill(totpNow(secret, Date.now() + 30_000));
    await dialog.getByRole("button", { name: "Confirm and approve" }).click();
    await page.getByRole("status").getByText(`You approved ${whose}.`).waitFor();

    const admin = await apiAs(url, "admin", ADMIN_PASSWORD);
    expect((await admin("GET", `/v1/activation-requests/${pendingId}`)).body.state).toBe("active");
    const events = await admin("GET", "/v1/audit/events?action=request.approved&limit=20");
    const ours = (events.body.items as { subject: string; outcome: string; details: Record<string, unknown> }[])
      .filter((e) => e.subject === `request:${pendingId}`)
      .map((e) => [e.outcome, e.details?.approverMfa ? "with MFA" : "without"]);
    expect(ours).toEqual(
      expect.arrayContaining([
        ["denied", "without"],
        ["success", "with MFA"],
      ]),
    );
    await guard.close();
  }, 120_000);
});
