/**
 * A break-glass activation's review item worked in the reviewer inbox in a real browser (issue 16, acceptance 2;
 * playwright-core driving /usr/bin/chromium against the built server): the person who broke the glass is refused
 * (SELF_REVIEW, said in words); another security reviewer acknowledges it with a finding from the keyboard alone;
 * the Evidence page then shows the activation with that finding and who acknowledged it, and so does the API's
 * report. Campaign items are kept in bulk from the keyboard and the campaign's progress follows; axe-core finds no
 * serious violation on the Reviews and Evidence pages. Any unexpected 4xx/5xx or console error fails the test.
 */
import path from "node:path";
import type { Page } from "playwright-core";
import { beforeAll, describe, expect, it } from "vitest";
import type { EvidenceReportDto } from "../../src/contract/evidence.js";
import { apiAs, Guard, signInPage, webFixture } from "./browser.js";
import { ROOT } from "./support.js";

const ADMIN_PASSWORD = "reviews-web-root-password";
const PASSWORDS = { sid: "tulip orbit canyon lantern", sue: "maple quartz harbor violet" };
const FINDING = "failover by hand during INC-4242; commands match the incident log";

let requestId: string;
const guard = new Guard(() => web.browser);

async function signIn(user: keyof typeof PASSWORDS): Promise<Page> {
  // bypassCSP: our CSP forbids inline scripts, which is how axe is put into the page.
  return signInPage(await guard.context(undefined, { bypassCSP: true }), web.url, user, PASSWORDS[user]);
}

async function openPage(page: Page, label: string, heading: string) {
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: label }).click();
  await page.getByRole("heading", { name: heading, level: 1 }).waitFor();
}

type Api = Awaited<ReturnType<typeof apiAs>>;

/** Makes a user with an approving role: at once when alone, else held and approved by `approver`. */
async function makeApprover(admin: Api, name: string, password: string, role: string, approver?: Api): Promise<Api> {
  const res = await admin("POST", "/v1/users", { name, password, platformRoles: [role] });
  expect(res.status, JSON.stringify(res.body)).toBe(approver ? 202 : 201);
  if (approver) {
    const { changeRequest } = res.body as { changeRequest: { id: string } };
    const approved = await approver("POST", `/v1/change-requests/${changeRequest.id}/approve`, {});
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
  }
  return apiAs(web.url, name, password);
}

const web = webFixture("reviews-web", { adminPassword: ADMIN_PASSWORD });

beforeAll(async () => {
  const admin = await apiAs(web.url, "admin", ADMIN_PASSWORD);
  // The first security user is made at once (nobody else could approve: fourEyes.alone: apply); each later grant of
  // an approving role waits for another approver (finding 81), and sid approves it.
  const sid = await makeApprover(admin, "sid", PASSWORDS.sid, "security");
  await makeApprover(admin, "sue", PASSWORDS.sue, "security", sid);
  for (const name of ["ann", "ben"]) {
    const res = await admin("POST", "/v1/users", { name, password: "amber willow copper meadow" });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
  }
  const applied = await admin("POST", "/v1/config/apply", {
    yaml: `apiVersion: stint/v1
groups:
  - { name: reviewers, members: [sue] }
policies:
  - name: self
    mfa: { required: false }
    maxDuration: 1h
  - name: glass
    mfa: { required: false }
    maxDuration: 1h
    breakGlass: true
targets:
  - { name: stint, kind: internal }
roles:
  - { name: emergency, target: stint, policy: glass, risk: medium }
  - { name: reports, target: stint, policy: self, risk: low }
eligibility:
  - { role: emergency, users: [sid] }
  - { role: reports, users: [ann, ben] }
`,
  });
  expect(applied.status, JSON.stringify(applied.body)).toBe(200);
  // A break-glass role counts as critical (the risk floor), so four-eyes holds the file for a second person.
  const held = (applied.body as { changeRequest?: { id: string } }).changeRequest;
  expect(held, JSON.stringify(applied.body)).toBeDefined();
  const ada = await makeApprover(admin, "ada", "cobalt meadow lantern orbit", "admin", sid);
  const approved = await ada("POST", `/v1/change-requests/${held!.id}/approve`, {});
  expect(approved.status, JSON.stringify(approved.body)).toBe(200);
  const campaign = await admin("POST", "/v1/reviews/campaigns", {
    name: "reports-recert",
    scope: { roles: ["reports"] },
    reviewers: { groups: ["reviewers"] },
    duration: "7d",
  });
  expect(campaign.status, JSON.stringify(campaign.body)).toBe(201);
  const glass = await sid("POST", "/v1/activation-requests", {
    role: "emergency",
    duration: "30m",
    reason: "primary database down, failover by hand",
  });
  expect((glass.body as { state: string }).state, JSON.stringify(glass.body)).toBe("active");
  requestId = (glass.body as { id: string }).id;
}, 180_000);

describe("the reviewer inbox in a browser", () => {
  it("refuses the person who broke the glass, in words", async () => {
    const page = await signIn("sid");
    await openPage(page, "Reviews", "Reviews");
    const card = page.getByRole("region", { name: `Break-glass activation (request:${requestId}) by sid` });
    await card.getByRole("button", { name: "Acknowledge…" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByLabel("Finding").fill("it was me and it was fine");
    guard.expect(`POST /v1/reviews/items/${await itemIdOf(page)}/decision 403`);
    await dialog.getByRole("button", { name: "Acknowledge" }).click();
    await expect
      .poll(async () => (await page.getByRole("alert").allInnerTexts()).join(" | "), { timeout: 10_000 })
      .toMatch(/Nobody reviews their own access/);
    // Still open, and still in the inbox.
    await page.getByRole("dialog").waitFor({ state: "detached" });
    expect(await card.count()).toBe(1);
  });

  it("another reviewer acknowledges it with a finding from the keyboard; the evidence report shows it", async () => {
    const page = await signIn("sue");
    await openPage(page, "Reviews", "Reviews");
    const card = page.getByRole("region", { name: `Break-glass activation (request:${requestId}) by sid` });
    await card.getByText("Justification: primary database down, failover by hand").waitFor();
    // Keyboard only: focus the button, Enter opens the dialog (focus in the text area), Ctrl+Enter submits.
    await card.getByRole("button", { name: "Acknowledge…" }).focus();
    await page.keyboard.press("Enter");
    const finding = page.getByRole("dialog").getByLabel("Finding");
    await finding.waitFor();
    // Evaluated in the page (typed through globalThis, so that this file needs no DOM types).
    const focused = () =>
      finding.evaluate(
        (el) => el === (globalThis as unknown as { document: { activeElement: unknown } }).document.activeElement,
      );
    await expect.poll(focused).toBe(true);
    await page.keyboard.type(FINDING);
    await page.keyboard.press("Control+Enter");
    await page.getByRole("status").getByText("1 item acknowledged.").waitFor();
    await expect.poll(() => card.count()).toBe(0);

    await openPage(page, "Evidence", "Evidence report");
    await page.getByLabel("Role").fill("emergency");
    await page.getByRole("button", { name: "Show report" }).click();
    const row = page.getByTestId(`activation-${requestId}`);
    await row.waitFor();
    const text = await row.innerText();
    expect(text).toContain("primary database down, failover by hand");
    expect(text).toContain(`break-glass; review acknowledged by sue: ${FINDING}`);
    const shown = await page.getByTestId("report-sha256").innerText();
    // Printable: in print media the navigation and the scope form are gone, the report stays.
    await page.emulateMedia({ media: "print" });
    expect(await page.getByRole("navigation", { name: "Main" }).isVisible()).toBe(false);
    expect(await page.getByRole("button", { name: "Show report" }).isVisible()).toBe(false);
    expect(await row.isVisible()).toBe(true);
    await page.emulateMedia({ media: "screen" });

    const auditor = await apiAs(web.url, "sue", PASSWORDS.sue);
    const from = new Date(Date.now() - 86_400_000).toISOString();
    const to = new Date(Date.now() + 86_400_000).toISOString();
    const report = (await auditor("GET", `/v1/evidence?from=${from}&to=${to}&role=emergency`))
      .body as EvidenceReportDto;
    expect(report.activations).toHaveLength(1);
    expect(report.activations[0]).toMatchObject({
      requestId,
      requester: "sid",
      approval: "break-glass",
      review: { status: "closed", outcome: "acknowledged", finding: FINDING, closedBy: "sue" },
    });
    expect(shown).toMatch(/^[0-9a-f]{64}$/);
    await guard.close();
  });
});

describe("campaign items in the inbox", () => {
  it("are kept in bulk from the keyboard, the campaign's progress follows; the pages pass axe", async () => {
    const page = await signIn("sue");
    await openPage(page, "Reviews", "Reviews");
    const table = page.getByRole("table", { name: "Access to recertify" });
    await table.getByRole("row", { name: /ann/ }).waitFor();
    expect(await table.getByRole("row").count()).toBe(3);
    expect(await seriousViolations(page)).toEqual([]);
    await table.getByRole("checkbox", { name: "Select all" }).focus();
    await page.keyboard.press("Space");
    const keep = page.getByRole("button", { name: "Keep selected (2)" });
    await keep.focus();
    await page.keyboard.press("Enter");
    await page.getByRole("dialog").getByLabel("Reason").waitFor();
    await page.keyboard.type("both still run the quarterly reports");
    await page.keyboard.press("Control+Enter");
    await page.getByRole("status").getByText("2 items kept.").waitFor();
    await page.getByText("No access waits for your review.").waitFor();
    await page.getByText(/2 of 2 decided/).waitFor();

    await openPage(page, "Evidence", "Evidence report");
    await page.getByRole("button", { name: "Show report" }).click();
    await page.getByTestId("evidence-report").waitFor();
    expect(await seriousViolations(page)).toEqual([]);
    await guard.close();
  });
});

async function seriousViolations(page: Page): Promise<string[]> {
  // Off any link: a hovered navigation link is not what the page looks like.
  await page.mouse.move(5, 890);
  await page.addScriptTag({ path: path.join(ROOT, "node_modules/axe-core/axe.min.js") });
  const result = (await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(options: unknown): Promise<unknown> } }).axe;
    return axe.run({ runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
  })) as { violations: { id: string; impact: string | null; nodes: { target: string[] }[] }[] };
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

async function itemIdOf(page: Page): Promise<string> {
  const testId = await page
    .getByRole("region", { name: `Break-glass activation (request:${requestId}) by sid` })
    .getAttribute("data-testid");
  return testId!.slice("item-".length);
}
