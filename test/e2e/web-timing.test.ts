/**
 * Request timing in a real browser (playwright-core driving /usr/bin/chromium) against the built server
 * (issue 16): the activate dialog takes a later start, refuses a past one in words under its field without
 * sending anything, and says the request is approved ahead; My access shows "Scheduled: starts …" with a Cancel
 * button, and the request page shows its start and, while pending, when it expires undecided.
 */
import type { Page } from "playwright-core";
import { beforeAll, describe, expect, it } from "vitest";
import { apiAs, signInPage, webFixture } from "./browser.js";

const ADMIN_PASSWORD = "web-timing-root-password";
const PASSWORDS = { alice: "tulip orbit canyon lantern", carol: "maple quartz harbor violet" };
const REASON = "rebuild the reporting indexes after the load";

/** A time as the browser's datetime-local input takes it, in UTC (the page runs in UTC here). */
const localInput = (at: Date) => at.toISOString().slice(0, 16);

const web = webFixture("web-timing", { adminPassword: ADMIN_PASSWORD });

beforeAll(async () => {
  const admin = await apiAs(web.url, "admin", ADMIN_PASSWORD);
  expect((await admin("POST", "/v1/users", { name: "carol", password: PASSWORDS.carol })).status).toBe(201);
  expect((await admin("POST", "/v1/users", { name: "alice", password: PASSWORDS.alice })).status).toBe(201);
  const applied = await admin("POST", "/v1/config/apply", {
    yaml: `apiVersion: stint/v1
policies:
  - name: planned
    defaultDuration: 2h
    maxDuration: 4h
    requestTtl: 3h
    mfa: { required: false }
    justification: { minLength: 10 }
    approval:
      stages:
        - approvers: { users: [carol] }
          count: 1
targets:
  - name: stint
    kind: internal
roles:
  - name: reporting-admin
    target: stint
    risk: low
    policy: planned
eligibility:
  - role: reporting-admin
    users: [alice]
`,
  });
  expect(applied.status, JSON.stringify(applied.body)).toBe(200);
}, 180_000);

async function signIn(user: string, password: string): Promise<Page> {
  const context = await web.browser.newContext({ viewport: { width: 1440, height: 900 }, timezoneId: "UTC" });
  const problems: string[] = [];
  context.on("page", (page) => page.on("pageerror", (error) => problems.push(error.message)));
  const page = await signInPage(context, web.url, user, password);
  expect(problems).toEqual([]);
  return page;
}

/** In-app navigation: a reload would sign out (tokens live in memory). */
async function navigate(page: Page, route: string) {
  await page.evaluate(
    `window.history.pushState(null, "", ${JSON.stringify(route)}); window.dispatchEvent(new PopStateEvent("popstate"));`,
  );
}

describe("request timing in the web UI", () => {
  it("asks for a later start, shows it scheduled on My access and the request page, and cancels it before it starts", async () => {
    const page = await signIn("alice", PASSWORDS.alice);
    const posted: unknown[] = [];
    page.on("request", (r) => {
      if (r.method() === "POST" && new URL(r.url()).pathname === "/v1/activation-requests")
        posted.push(r.postDataJSON());
    });
    await page.getByRole("button", { name: "Activate reporting-admin" }).click();
    const dialog = page.getByRole("dialog", { name: "Activate reporting-admin" });
    await dialog.getByLabel("Reason").fill(REASON);
    const start = dialog.getByLabel("Start (optional)");

    // A start that has passed: said under the field, nothing sent.
    await start.fill(localInput(new Date(Date.now() - 3600_000)));
    await dialog.getByRole("button", { name: "Request access" }).click();
    await dialog.getByText("That time has passed").waitFor();
    expect(posted).toEqual([]);

    // Two hours ahead (to the minute): sent as an ISO time, pending until carol decides.
    const startAt = new Date(Math.ceil((Date.now() + 2 * 3600_000) / 60_000) * 60_000);
    await start.fill(localInput(startAt));
    await dialog.getByRole("button", { name: "Request access" }).click();
    await dialog.getByText("pending").waitFor();
    expect(posted).toEqual([expect.objectContaining({ role: "reporting-admin", startAt: startAt.toISOString() })]);
    await dialog.getByRole("button", { name: "Close" }).last().click();
    await page.getByTestId("status-reporting-admin").getByText("Waiting for approval; to start").waitFor();

    const alice = await apiAs(web.url, "alice", PASSWORDS.alice);
    const mine = (await alice("GET", "/v1/activation-requests?scope=mine")).body.items as {
      id: string;
      state: string;
      pendingExpiresAt: string;
    }[];
    const id = mine[0]!.id;
    // The request page shows its start, and while pending when it expires undecided (requestTtl 3h).
    await navigate(page, `/requests/${id}`);
    const row = (label: string) => page.locator("tr", { has: page.locator("th", { hasText: label }) });
    await row("Starts").getByText("(scheduled)").waitFor();
    expect(await row("Starts").innerText()).toContain(new Date(startAt).toLocaleString("en-US", { timeZone: "UTC" }));
    expect(await row("Decide by").innerText()).toContain("(then it expires undecided)");

    const carol = await apiAs(web.url, "carol", PASSWORDS.carol);
    const approved = await carol("POST", `/v1/activation-requests/${id}/approvals`, {});
    expect(approved.body).toMatchObject({ state: "approved", activatedAt: null, startAt: startAt.toISOString() });

    await navigate(page, "/");
    const status = page.getByTestId("status-reporting-admin");
    await status.getByText("Scheduled: starts").waitFor();
    expect(await page.getByLabel("reporting-admin active").count()).toBe(0);
    await page.getByRole("button", { name: "Cancel request for reporting-admin" }).click();
    await page.getByRole("status").getByText("Your request for reporting-admin is cancelled.").waitFor();
    expect((await alice("GET", `/v1/activation-requests/${id}`)).body.state).toBe("cancelled");
  });
});
