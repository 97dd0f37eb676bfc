/**
 * Four-eyes and configuration as code in a real browser (playwright-core driving /usr/bin/chromium) against the built
 * server (issue 16 "visible in the web UI", issue 17 item 10):
 * - the Configuration-as-code tab applies only after the diff of the exact text was shown, and asks to confirm; a
 *   prune that deletes names each deletion and needs it acknowledged; the editor and the export have line numbers;
 *   the export can be copied and downloaded;
 * - an admin's file adding eligibility to a critical role is held (the page says so, nothing exists yet); the
 *   author sees no Approve, a second admin sees why it is held and the diff on the Change requests tab, approves,
 *   and only then the eligibility exists; with `fourEyes.approverMfa` covering the tier, the card says ahead what
 *   approving asks of the second admin's own MFA (the list's `approverMfa`) and Approve offers the step-up before
 *   the server has to refuse (no 401 at all);
 * - an eligibility form's save that widens at a four-eyes tier says it is held for a second admin (not an error).
 * Any 4xx/5xx answer or console error in the pages fails the test.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { totpNow } from "../../src/testing/server.js";
import { apiAs, Guard, launchChromium, signInPage, type Call } from "./browser.js";
import { startWebServer, type RunningProcess } from "./support.js";

const ADMIN_PASSWORD = "four-eyes-root-password";
const PASSWORDS = { admin2: "granite willow ember falcon", alice: "tulip orbit canyon lantern" };

const BASE = `apiVersion: stint/v1
policies:
  - name: strict
    maxDuration: 2h
targets:
  - name: vault-db
    kind: internal
roles:
  - name: crown-jewels
    target: vault-db
    policy: strict
    risk: critical
  - name: wiki-editor
    target: vault-db
    policy: strict
    risk: low
eligibility:
  - role: wiki-editor
    users: [bob]
`;

let work: string;
let url: string;
let server: RunningProcess;
let browser: Browser;
const guard = new Guard(() => browser);

async function signIn(user: string, password: string): Promise<Page> {
  const context = await guard.context(undefined, { acceptDownloads: true });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: url });
  return signInPage(context, url, user, password);
}

async function openAdminTab(page: Page, tab: string) {
  // In-app navigation: a reload would sign out (tokens live in memory).
  await page.evaluate(
    `window.history.pushState(null, "", "/admin"); window.dispatchEvent(new PopStateEvent("popstate"));`,
  );
  await page.getByRole("heading", { name: "Administration", level: 1 }).waitFor();
  await page.getByRole("tab", { name: tab }).click();
}

async function eligibleForCritical(api: Call): Promise<string[]> {
  const list = await api("GET", "/v1/eligibilities?role=crown-jewels");
  return (list.body.items as { principal: string | null; status: string }[])
    .filter((e) => e.status !== "removed")
    .map((e) => e.principal ?? "?");
}

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), "stint-four-eyes-web-"));
  // The approving admin's own MFA within 15m for critical change requests.
  const config = path.join(work, "stint.yaml");
  writeFileSync(config, "fourEyes:\n  approverMfa: { tiers: [critical], maxAge: 15m }\n");
  ({ server, url } = await startWebServer({
    work,
    env: { STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD, STINT_CONFIG_FILE: config },
  }));
  const admin = await apiAs(url, "admin", ADMIN_PASSWORD);
  expect((await admin("POST", "/v1/users", { name: "alice", password: PASSWORDS.alice })).status).toBe(201);
  expect((await admin("POST", "/v1/users", { name: "bob" })).status).toBe(201);
  expect((await admin("POST", "/v1/config/apply", { yaml: BASE })).body).toMatchObject({ applied: true });
  const second = await admin("POST", "/v1/users", {
    name: "admin2",
    password: PASSWORDS.admin2,
    platformRoles: ["admin"],
  });
  expect(second.status, JSON.stringify(second.body)).toBe(201);
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await server?.kill();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("four-eyes in the web UI", () => {
  it("config tab: line numbers, copy and download; apply needs the diff and a confirmation naming deletions", async () => {
    const page = await signIn("admin", ADMIN_PASSWORD);
    await openAdminTab(page, "Configuration as code");
    const current = page.getByRole("region", { name: "Current configuration (YAML)" });
    await current.waitFor();
    const exported = await current.innerText();
    // Line numbers beside the export: as many as it has lines.
    const gutter = current.locator("xpath=preceding-sibling::div[1]");
    const numbers = (await gutter.innerText()).trim().split(/\s+/);
    expect(numbers.length).toBe(exported.split("\n").length);
    expect(numbers.slice(0, 3)).toEqual(["1", "2", "3"]);

    await page.getByRole("button", { name: "Copy export" }).click();
    await page.getByText("Copied the export.").waitFor();
    expect(await page.evaluate("navigator.clipboard.readText()")).toBe(exported);
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: "Download stint.yaml" }).click(),
    ]);
    expect(download.suggestedFilename()).toBe("stint.yaml");
    expect(readFileSync((await download.path())!, "utf8")).toBe(exported);

    // A prune that deletes bob's eligibility: Apply waits for the diff, then names the deletion.
    const editor = page.getByLabel("Configuration to plan (YAML)");
    await editor.fill(
      `apiVersion: stint/v1\nprune: true\n${BASE.slice("apiVersion: stint/v1\n".length).replace("eligibility:\n  - role: wiki-editor\n    users: [bob]\n", "eligibility: []\n")}`,
    );
    const apply = page.getByRole("button", { name: "Apply…" });
    expect(await apply.isDisabled()).toBe(true);
    await page.getByRole("button", { name: "Show diff" }).click();
    await page.getByRole("table", { name: "Changes" }).getByText("wiki-editor/user:bob").waitFor();
    expect(await apply.isDisabled()).toBe(false);
    await apply.click();
    const dialog = page.getByRole("dialog", { name: "Apply these changes?" });
    await dialog.getByText("This deletes 1 thing").waitFor();
    const confirm = dialog.getByRole("button", { name: "Apply 1 change" });
    expect(await confirm.isDisabled()).toBe(true);
    await dialog.getByLabel("I mean to delete it").check();
    await confirm.click();
    await page.getByText("The configuration was applied.").waitFor();
    const admin = await apiAs(url, "admin", ADMIN_PASSWORD);
    const bob = await admin("GET", "/v1/eligibilities?role=wiki-editor");
    expect((bob.body.items as { status: string }[]).filter((e) => e.status !== "removed")).toEqual([]);

    // Editing after the diff asks for a new diff before Apply.
    await editor.fill(`${BASE}  - role: crown-jewels\n    users: [alice]\n`);
    expect(await apply.isDisabled()).toBe(true);
  });

  it("a critical widening is held; the author cannot approve; a second admin approves and only then it exists", async () => {
    const admin = await apiAs(url, "admin", ADMIN_PASSWORD);
    const page = await signIn("admin", ADMIN_PASSWORD);
    await openAdminTab(page, "Configuration as code");
    await page.getByRole("region", { name: "Current configuration (YAML)" }).waitFor();
    await page.getByLabel("Configuration to plan (YAML)").fill(`${BASE}  - role: crown-jewels\n    users: [alice]\n`);
    await page.getByRole("button", { name: "Show diff" }).click();
    await page.getByRole("table", { name: "Changes" }).getByText("crown-jewels/user:alice").waitFor();
    await page.getByRole("button", { name: "Apply…" }).click();
    await page
      .getByRole("dialog", { name: "Apply these changes?" })
      .getByRole("button", { name: /^Apply \d+ change/ })
      .click();
    await page.getByText("Held for a second admin (four-eyes)").waitFor();
    expect(await eligibleForCritical(admin)).toEqual([]);

    // The author sees it, without Approve (Withdraw instead).
    await openAdminTab(page, "Change requests");
    const own = page.getByRole("article", { name: "Change request by admin" });
    await own.getByText("You wrote this change: another admin must approve it.").waitFor();
    expect(await own.getByRole("button", { name: "Approve and apply" }).count()).toBe(0);
    expect(await own.getByRole("button", { name: "Withdraw" }).count()).toBe(1);
    expect(await own.getByTestId("approver-mfa").count()).toBe(0); // not theirs to approve: nothing asked

    // The second admin sees why it is held and the diff, and approves. Signed in with the password alone, then an
    // authenticator enrolled in another session: the browser's session holds no MFA.
    const second = await signIn("admin2", PASSWORDS.admin2);
    const admin2 = await apiAs(url, "admin2", PASSWORDS.admin2);
    const secret = String((await admin2("POST", "/v1/me/mfa/totp")).body.secret);
    expect((await admin2("POST", "/v1/me/mfa/totp/confirm", { code: totpNow(secret) })).status).toBe(200);
    await openAdminTab(second, "Change requests");
    const card = second.getByRole("article", { name: "Change request by admin" });
    await card.getByText("Why it is held").waitFor();
    await card.getByText(/eligibility crown-jewels\/user:alice \(critical\): new eligibility/).waitFor();
    await card.getByRole("table", { name: "Changes" }).getByText("crown-jewels/user:alice").waitFor();
    await card.getByTestId("approver-mfa").getByText("Step up to approve (MFA within 15m)").waitFor();
    await card.getByLabel("Reason (optional, audited)").fill("checked with the data owner");
    // Approve offers the step-up first (the guard fails on any 401): the code, then the approval goes.
    await card.getByRole("button", { name: "Approve and apply" }).click();
    await card
      .getByText(/Approving this change request needs a fresh MFA check of yours \(within the last 15m\)/)
      .waitFor();
    await card.getByLabel("One-time code").fill(totpNow(secret, Date.now() + 30_000));
    await card.getByRole("button", { name: "Confirm and apply" }).click();
    await second.getByText(/Approved and applied: \d+ change\(s\) by admin\./).waitFor();
    expect(await eligibleForCritical(admin)).toEqual(["alice"]);
    const listed = await admin("GET", "/v1/change-requests?status=applied");
    expect(listed.body.items).toMatchObject([{ decidedBy: "admin2", reason: "checked with the data owner" }]);
    // Approved once, with the MFA it asked for, and never refused on the way.
    const events = await admin("GET", "/v1/audit/events?action=change_request.approved&limit=20");
    expect(events.body.items).toMatchObject([
      { outcome: "success", details: { approverMfa: { method: "otp-or-sso" } } },
    ]);
    await guard.close();
  });

  it("an admin form's save that widens at a four-eyes tier says it is held, not an error; nothing exists yet", async () => {
    const admin = await apiAs(url, "admin", ADMIN_PASSWORD);
    const page = await signIn("admin", ADMIN_PASSWORD);
    await openAdminTab(page, "Eligibility");
    await page.getByRole("button", { name: "New eligibility" }).click();
    const dialog = page.getByRole("dialog", { name: "New eligibility" });
    await dialog.getByLabel("Role").click();
    await page.getByRole("option", { name: "crown-jewels" }).click();
    await dialog.getByLabel("User", { exact: true }).click();
    await dialog.getByLabel("User", { exact: true }).fill("bo");
    await page.getByRole("option", { name: /^bob/ }).click();
    await dialog.getByRole("button", { name: "Create eligibility" }).click();
    const held = dialog.getByRole("status");
    await held.getByText(/Held for a second admin's approval: change request [0-9a-f-]{36}/).waitFor();
    expect(await dialog.getByRole("alert").count()).toBe(0);
    expect(await dialog.getByRole("button", { name: "Create eligibility" }).count()).toBe(0);
    expect(await eligibleForCritical(admin)).toEqual(["alice"]);
    const pending = (await admin("GET", "/v1/change-requests?status=pending")).body.items as { id: string }[];
    expect(pending).toMatchObject([{ author: "admin", tier: "critical" }]);
    expect(await held.innerText()).toContain(pending[0]!.id);
    await dialog.getByRole("button", { name: "Done" }).click();
    await dialog.waitFor({ state: "detached" });
    await guard.close();
  });
});
