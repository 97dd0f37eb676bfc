/**
 * Finding 82 in a real browser (playwright-core driving Debian's Chromium): an approver whose session holds no
 * MFA approves a request for a critical role from the Approvals inbox. The server refuses it
 * (MFA_STEP_UP_REQUIRED, the one 4xx the page may meet); the dialog then asks for a one-time code; with it the
 * approval goes again and counts, and its audit event records how the approver proved it. And ahead of it: the inbox
 * shows what approving each request asks of the approver's MFA (a badge from the list's `approverMfa`), the dialog
 * offers the step-up before the server has to refuse, and once stepped up the other critical request's badge says
 * the MFA counts and it approves at once; a notification's Approve link page does the same. Needs `npm run build`.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { totpNow } from "../../src/testing/server.js";
import { apiAs, Guard, signInPage, webFixture } from "./browser.js";

const ADMIN_PASSWORD = "approver-mfa-web-root-password";
const PASSWORDS = {
  alice: "tulip orbit canyon lantern",
  carol: "maple quartz harbor violet",
  dave: "cobalt meadow ferry thistle",
  eve: "saffron glacier pivot ember",
};
const ROLE = "ledger-admin";
/** Dave's: two critical roles (his MFA within 15m by default) and a low one (none asked). */
const DAVES = ["treasury-admin", "vault-root", "wiki-editor"] as const;
/** Eve's: a critical role, decided from the page a notification's Approve link opens. */
const EVES = "payroll-admin";

let pendingId: string;
const davesIds: Record<string, string> = {};

const web = webFixture("web-approver-mfa", { adminPassword: ADMIN_PASSWORD });

beforeAll(async () => {
  const admin = await apiAs(web.url, "admin", ADMIN_PASSWORD);
  expect((await admin("POST", "/v1/users", { name: "carol", password: PASSWORDS.carol })).status).toBe(201);
  expect(
    (await admin("POST", "/v1/users", { name: "alice", password: PASSWORDS.alice, manager: "carol" })).status,
  ).toBe(201);
  for (const name of ["dave", "eve"] as const)
    expect((await admin("POST", "/v1/users", { name, password: PASSWORDS[name] })).status).toBe(201);
  // No approval.mfa: a critical role's approvers need their own MFA by default.
  const applied = await admin("POST", "/v1/config/apply", {
    yaml: `apiVersion: stint/v1
policies:
  - name: by-manager
    mfa: { required: false }
    approval:
      stages:
        - approvers: { manager: true }
  - name: by-dave
    mfa: { required: false }
    approval:
      stages:
        - approvers: { users: [dave] }
  - name: by-eve
    mfa: { required: false }
    approval:
      stages:
        - approvers: { users: [eve] }
targets:
  - name: stint
    kind: internal
roles:
  - name: ${ROLE}
    target: stint
    risk: critical
    policy: by-manager
${DAVES.map((role) => `  - name: ${role}\n    target: stint\n    risk: ${role === "wiki-editor" ? "low" : "critical"}\n    policy: by-dave\n`).join("")}  - name: ${EVES}
    target: stint
    risk: critical
    policy: by-eve
eligibility:
  - role: ${ROLE}
    users: [alice]
${[...DAVES, EVES].map((role) => `  - role: ${role}\n    users: [alice]\n`).join("")}`,
  });
  expect(applied.status, JSON.stringify(applied.body)).toBe(200);
  const alice = await apiAs(web.url, "alice", PASSWORDS.alice);
  const res = await alice("POST", "/v1/activation-requests", { role: ROLE, reason: "close the quarter's books" });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  pendingId = res.body.id as string;
  for (const role of [...DAVES, EVES]) {
    const submitted = await alice("POST", "/v1/activation-requests", { role, reason: "quarter-end checks" });
    expect(submitted.status, JSON.stringify(submitted.body)).toBe(201);
    davesIds[role] = submitted.body.id as string;
  }
}, 180_000);

/**
 * `who` signed in with the password alone (the session holds no MFA), then enrolling an authenticator in another
 * session (which does not refresh the browser's MFA time); the page then at `path`, by in-app navigation (a reload
 * would sign out: tokens live in memory). Returns the page and the authenticator's secret.
 */
async function approverAt(guard: Guard, who: "carol" | "dave" | "eve", path: string) {
  const page = await signInPage(await guard.context(), web.url, who, PASSWORDS[who]);
  const api = await apiAs(web.url, who, PASSWORDS[who]);
  const secret = String((await api("POST", "/v1/me/mfa/totp")).body.secret);
  expect((await api("POST", "/v1/me/mfa/totp/confirm", { code: totpNow(secret) })).status).toBe(200);
  await page.evaluate(
    `window.history.pushState(null, "", "${path}"); window.dispatchEvent(new PopStateEvent("popstate"));`,
  );
  return { page, secret };
}

/** The outcomes of the approval events about request `id`, each with whether it records the approver's MFA. */
async function approvalsOf(id: string) {
  const admin = await apiAs(web.url, "admin", ADMIN_PASSWORD);
  const events = await admin("GET", "/v1/audit/events?action=request.approved&limit=50");
  return (events.body.items as { subject: string; outcome: string; details: Record<string, unknown> }[])
    .filter((e) => e.subject === `request:${id}`)
    .map((e) => [e.outcome, e.details?.approverMfa ? "with MFA" : "without"]);
}

describe("an approver without a fresh MFA, in the web UI", () => {
  it("is asked for a one-time code in the approval dialog, and the approval then counts", async () => {
    const guard = new Guard(() => web.browser);
    guard.expect(`POST /v1/activation-requests/${pendingId}/approvals 401`);
    const { page, secret } = await approverAt(guard, "carol", "/approvals");
    const whose = `alice's request for ${ROLE}`;
    await page.getByRole("button", { name: `Approve ${whose}` }).click();
    const dialog = page.getByRole("dialog", { name: `Approve ${whose}` });
    await dialog.getByRole("button", { name: "Approve", exact: true }).click();
    await dialog.getByText(/Approving requests for this role needs a one-time code/).waitFor();

    // The next time step's code (the one just used for the enrolment is spent; a step either side is accepted).
    await dialog.getByLabel("One-time code").fill(totpNow(secret, Date.now() + 30_000));
    await dialog.getByRole("button", { name: "Confirm and approve" }).click();
    await page.getByRole("status").getByText(`You approved ${whose}.`).waitFor();

    const admin = await apiAs(web.url, "admin", ADMIN_PASSWORD);
    expect((await admin("GET", `/v1/activation-requests/${pendingId}`)).body.state).toBe("active");
    expect(await approvalsOf(pendingId)).toEqual(
      expect.arrayContaining([
        ["denied", "without"],
        ["success", "with MFA"],
      ]),
    );
    await guard.close();
  }, 120_000);

  it("sees ahead what approving asks of their MFA, steps up in the dialog before any refusal, then approves at once", async () => {
    const guard = new Guard(() => web.browser); // no refusal expected: the hint spares it
    const { page, secret } = await approverAt(guard, "dave", "/approvals");
    const card = (role: string) => page.getByRole("article", { name: `alice's request for ${role}` });
    const badge = (role: string) => card(role).getByTestId("approver-mfa");
    await badge("treasury-admin").getByText("Step up to approve (MFA within 15m)").waitFor();
    await badge("vault-root").getByText("Step up to approve (MFA within 15m)").waitFor();
    await card("wiki-editor").waitFor();
    expect(await badge("wiki-editor").count()).toBe(0); // a low role's approval asks nothing of the approver

    // The dialog offers the step-up at once: the code, then the approval, with no refused attempt first.
    await card("treasury-admin").getByRole("button", { name: "Approve alice's request for treasury-admin" }).click();
    const dialog = page.getByRole("dialog", { name: "Approve alice's request for treasury-admin" });
    await dialog.getByText(/needs a fresh MFA check of yours \(within the last 15m\)/).waitFor();
    await dialog.getByLabel("One-time code").fill(totpNow(secret, Date.now() + 30_000));
    await dialog.getByRole("button", { name: "Confirm and approve" }).click();
    await page.getByRole("status").getByText("You approved alice's request for treasury-admin.").waitFor();

    // Stepped up: the other critical request's badge says the MFA counts (the list asks again), and it approves at once.
    await badge("vault-root").getByText("Your MFA counts (15m)").waitFor({ timeout: 30_000 });
    await card("vault-root").getByRole("button", { name: "Approve alice's request for vault-root" }).click();
    const second = page.getByRole("dialog", { name: "Approve alice's request for vault-root" });
    expect(await second.getByLabel("One-time code").count()).toBe(0);
    await second.getByRole("button", { name: "Approve", exact: true }).click();
    await page.getByRole("status").getByText("You approved alice's request for vault-root.").waitFor();

    const admin = await apiAs(web.url, "admin", ADMIN_PASSWORD);
    for (const role of ["treasury-admin", "vault-root"]) {
      expect((await admin("GET", `/v1/activation-requests/${davesIds[role]}`)).body.state).toBe("active");
      expect(await approvalsOf(davesIds[role]!), role).toEqual([["success", "with MFA"]]);
    }
    await guard.close();
  }, 120_000);

  it("on a notification's Approve link page, sees the same and steps up before any refusal", async () => {
    const guard = new Guard(() => web.browser);
    // As a signed-in approver following the link.
    const { page, secret } = await approverAt(guard, "eve", `/requests/${davesIds[EVES]}`);
    await page.getByTestId("approver-mfa").getByText("Step up to approve (MFA within 15m)").waitFor();
    await page.getByText(/needs a fresh MFA check of yours \(within the last 15m\)/).waitFor();
    await page.getByLabel("One-time code").fill(totpNow(secret, Date.now() + 30_000));
    await page.getByRole("button", { name: "Confirm and approve" }).click();
    await page.getByRole("status").getByText("You approved this request.").waitFor();

    const admin = await apiAs(web.url, "admin", ADMIN_PASSWORD);
    expect((await admin("GET", `/v1/activation-requests/${davesIds[EVES]}`)).body.state).toBe("active");
    await guard.close();
  }, 120_000);
});
