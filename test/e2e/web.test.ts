/**
 * The web UI in a real browser (playwright-core driving Debian's /usr/bin/chromium) against the built
 * server: alice requests a role, carol approves it in her own browser context, alice sees it active with
 * a countdown and deactivates it, and the audit explorer shows all of it. Plus: a form refuses invalid
 * input next to the field without sending anything; axe-core finds no serious or critical violation on
 * the main pages; screenshots at laptop and phone widths; the JavaScript each page loads, gzipped.
 */
import { mkdirSync, existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";
import type { BrowserContext, Page } from "playwright-core";
import { beforeAll, describe, expect, it } from "vitest";
import { apiAs, signInPage, webFixture } from "./browser.js";
import { ROOT } from "./support.js";

const ADMIN_PASSWORD = "web-ui-root-password";
const PASSWORDS = { alice: "tulip orbit canyon lantern", carol: "maple quartz harbor violet" };
/** Screenshots go here (not committed: test-output/ is ignored). */
export const SCREENSHOT_DIR = path.join(ROOT, "test-output", "screenshots");
const REASON = "investigate slow queries on the orders database";
const MAX_JS_GZIP = 500 * 1024;

function signIn(context: BrowserContext, user: string, password: string): Promise<Page> {
  return signInPage(context, web.url, user, password);
}

const web = webFixture("web", { adminPassword: ADMIN_PASSWORD });

beforeAll(async () => {
  const admin = await apiAs(web.url, "admin", ADMIN_PASSWORD);
  expect((await admin("POST", "/v1/users", { name: "carol", password: PASSWORDS.carol })).status).toBe(201);
  expect(
    (await admin("POST", "/v1/users", { name: "alice", password: PASSWORDS.alice, manager: "carol" })).status,
  ).toBe(201);
  const applied = await admin("POST", "/v1/config/apply", {
    yaml: `apiVersion: stint/v1
policies:
  - name: reviewed
    defaultDuration: 1h
    maxDuration: 4h
    mfa: { required: false }
    justification: { minLength: 20 }
    approval:
      stages:
        - approvers: { users: [carol] }
          count: 1
targets:
  - name: stint
    kind: internal
roles:
  - name: prod-db-reader
    description: Read-only access to the orders database
    target: stint
    risk: high
    policy: reviewed
eligibility:
  - role: prod-db-reader
    users: [alice]
`,
  });
  expect(applied.status, JSON.stringify(applied.body)).toBe(200);
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
}, 180_000);

describe("the web UI", () => {
  it("alice requests, carol approves in her own browser, alice sees the countdown and deactivates; the audit explorer shows it", async () => {
    const aliceContext = await web.browser.newContext();
    const carolContext = await web.browser.newContext();
    const alice = await signIn(aliceContext, "alice", PASSWORDS.alice);
    await alice.getByRole("button", { name: "Activate prod-db-reader" }).click();
    const dialog = alice.getByRole("dialog", { name: "Activate prod-db-reader" });
    await dialog.getByLabel("Reason").fill(REASON);
    await dialog.getByRole("button", { name: "Request access" }).click();
    await dialog.getByText("pending").waitFor();
    await dialog.getByRole("button", { name: "Close" }).last().click();

    const carol = await signIn(carolContext, "carol", PASSWORDS.carol);
    await carol.getByRole("link", { name: "Approvals" }).click();
    await carol.getByRole("heading", { name: "Approvals" }).waitFor();
    const row = carol.locator('[data-testid^="request-"]', { hasText: "prod-db-reader" });
    await expect(row.getByText("alice")).toBeTruthy();
    await row.getByRole("button", { name: "Approve alice's request for prod-db-reader" }).click();
    const approve = carol.getByRole("dialog");
    await approve.getByLabel("Reason (optional)").fill("looked at the ticket, fine");
    await approve.getByRole("button", { name: "Approve", exact: true }).click();
    await row.waitFor({ state: "detached", timeout: 15_000 });

    // alice's page picks the activation up by itself (it refreshes) and counts down.
    const countdown = alice.getByTestId("countdown-prod-db-reader");
    await countdown.waitFor({ timeout: 20_000 });
    const first = await countdown.innerText();
    expect(first).toMatch(/^(\d+h )?\d+m \d\ds left$/);
    await alice.waitForTimeout(2200);
    expect(await countdown.innerText()).not.toBe(first);
    await alice.screenshot({ path: path.join(SCREENSHOT_DIR, "my-access-active-desktop.png"), fullPage: true });
    // The README's picture (docs/images/web-my-access.jpg) is a copy of this one, made once.
    await alice.screenshot({
      path: path.join(SCREENSHOT_DIR, "my-access-active-desktop.jpg"),
      type: "jpeg",
      quality: 70,
    });
    await alice.getByRole("button", { name: "Deactivate prod-db-reader" }).click();
    await countdown.waitFor({ state: "detached", timeout: 15_000 });

    const adminContext = await web.browser.newContext();
    const admin = await signIn(adminContext, "admin", ADMIN_PASSWORD);
    await admin.getByRole("link", { name: "Audit" }).click();
    await admin.getByRole("heading", { name: "Audit" }).waitFor();
    await admin.getByText(/Chain verified/).waitFor({ timeout: 15_000 });
    for (const action of ["request.submitted", "request.approved", "request.activated", "request.deactivated"])
      await admin.getByText(action, { exact: true }).first().waitFor({ timeout: 15_000 });
    await Promise.all([aliceContext.close(), carolContext.close(), adminContext.close()]);
  });

  it("a form given invalid input shows the API's error next to the field and sends nothing", async () => {
    const context = await web.browser.newContext();
    const page = await signIn(context, "alice", PASSWORDS.alice);
    const sent: string[] = [];
    page.on("request", (request) => {
      if (request.method() !== "GET") sent.push(`${request.method()} ${new URL(request.url()).pathname}`);
    });
    await page.getByRole("button", { name: "Activate prod-db-reader" }).click();
    const dialog = page.getByRole("dialog", { name: "Activate prod-db-reader" });
    const reason = dialog.getByLabel("Reason");
    await reason.fill("   ");
    await dialog.getByRole("button", { name: "Request access" }).click();
    // The contract's own message, attached to the field (aria-describedby → the error text).
    const described = await reason.getAttribute("aria-describedby");
    expect(described).toBeTruthy();
    const errorText = await page
      .locator(`[id="${described!.split(" ").find((id) => id.includes("error"))}"]`)
      .innerText();
    expect(errorText).toMatch(/Too small|at least|>=1/i);
    await expect(reason.getAttribute("aria-invalid")).resolves.toBe("true");
    expect(sent.filter((s) => s.includes("/v1/activation-requests"))).toEqual([]);

    // Too short for the policy (20 characters, known from GET /v1/me/roles): said next to the same field, nothing sent.
    // (Refusals only the server can make are in web-flows.test.ts.)
    await reason.fill("too short reason");
    await dialog.getByRole("button", { name: "Request access" }).click();
    await dialog
      .getByText(/justification|at least 20|characters/i)
      .first()
      .waitFor();
    const admin = await apiAs(web.url, "admin", ADMIN_PASSWORD);
    const requests = await admin("GET", "/v1/activation-requests?scope=all&state=pending");
    expect((requests.body.items as unknown[]).length).toBe(0);
    await context.close();

    // An administrator's form: a role name the API's schema refuses.
    const adminContext = await web.browser.newContext();
    const adminPage = await signIn(adminContext, "admin", ADMIN_PASSWORD);
    const adminSent: string[] = [];
    adminPage.on("request", (request) => {
      if (request.method() !== "GET") adminSent.push(`${request.method()} ${new URL(request.url()).pathname}`);
    });
    await openPage(adminPage, "/admin");
    await adminPage.getByRole("tab", { name: "Roles" }).click();
    await adminPage.getByRole("button", { name: "New role" }).click();
    const roleDialog = adminPage.getByRole("dialog", { name: "New role" });
    const nameField = roleDialog.getByLabel(/^Name/);
    await nameField.fill("Bad Name!");
    await roleDialog.getByRole("button", { name: "Create role" }).click();
    await roleDialog.getByText(/must start with a letter and use only a-z/).waitFor();
    await expect(nameField.getAttribute("aria-invalid")).resolves.toBe("true");
    expect(adminSent.filter((s) => s.includes("/v1/roles"))).toEqual([]);
    expect(((await admin("GET", "/v1/roles")).body.items as { name: string }[]).map((r) => r.name)).toEqual([
      "prod-db-reader",
    ]);
    await adminContext.close();
  });

  const PAGES = ["/", "/approvals", "/requests", "/sessions", "/vault", "/admin", "/audit", "/dashboards"];

  it("axe-core finds no serious or critical violation on the sign-in page and each main page", async () => {
    // Our CSP forbids inline scripts, which is how axe is put into the page.
    const context = await web.browser.newContext({ bypassCSP: true });
    const signInPage = await context.newPage();
    await signInPage.goto(web.url);
    const found: Record<string, string[]> = { "/ (sign-in)": await seriousViolations(signInPage) };
    await signInPage.close();
    const page = await signIn(context, "admin", ADMIN_PASSWORD);
    for (const route of PAGES) {
      await openPage(page, route);
      found[route] = await seriousViolations(page);
    }
    expect(found).toEqual(Object.fromEntries(Object.keys(found).map((k) => [k, []])));
    await context.close();
  });

  it("writes screenshots of the main pages at laptop and phone widths", async () => {
    for (const [label, viewport] of [
      ["desktop", { width: 1280, height: 800 }],
      ["phone", { width: 375, height: 812 }],
    ] as const) {
      const context = await web.browser.newContext({ viewport });
      const page = await signIn(context, "admin", ADMIN_PASSWORD);
      for (const route of PAGES) {
        await openPage(page, route);
        const name = route === "/" ? "my-access" : route.slice(1);
        const file = path.join(SCREENSHOT_DIR, `${name}-${label}.png`);
        await page.screenshot({ path: file, fullPage: true });
        expect(existsSync(file)).toBe(true);
        // Nothing wider than the screen: usable without sideways scrolling of the page itself.
        const overflow = (await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")) as number;
        expect(overflow, `${route} at ${label}`).toBeLessThanOrEqual(1);
      }
      await context.close();
    }
  });

  it("serves the bundle with caching headers, and no page loads more than 500 KB of JavaScript gzipped", async () => {
    const index = await fetch(web.url);
    expect(index.headers.get("cache-control")).toBe("no-cache");
    expect(index.headers.get("content-security-policy")).toContain("default-src 'self'");
    const html = await index.text();
    const asset = /\/assets\/[^"]+\.js/.exec(html)![0];
    const cached = await fetch(`${web.url}${asset}`);
    expect(cached.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");

    const context = await web.browser.newContext();
    const page = await signIn(context, "admin", ADMIN_PASSWORD);
    const sizes: Record<string, number> = {};
    for (const route of PAGES) {
      // A fresh page per route: everything it needs, as a first visit would load it.
      const fresh = await context.newPage();
      const scripts = new Map<string, number>();
      fresh.on("response", async (response) => {
        if (response.request().resourceType() !== "script") return;
        const body = await response.body().catch(() => Buffer.alloc(0));
        scripts.set(response.url(), gzipSync(body).length);
      });
      await fresh.goto(`${web.url}${route}`);
      // Signed out in a new page (tokens live in memory): sign in, then the page loads its own chunk.
      await fresh.getByLabel("User name").fill("admin");
      await fresh.getByLabel(/^Password/).fill(ADMIN_PASSWORD);
      await fresh.getByRole("button", { name: "Sign in" }).click();
      await fresh.waitForLoadState("networkidle");
      sizes[route] = [...scripts.values()].reduce((a, b) => a + b, 0);
      await fresh.close();
    }
    console.log(
      "JavaScript per page, gzipped: " +
        Object.entries(sizes)
          .map(([route, bytes]) => `${route} ${(bytes / 1024).toFixed(1)} KB`)
          .join(", "),
    );
    writeFileSync(path.join(SCREENSHOT_DIR, "..", "bundle-sizes.json"), JSON.stringify(sizes, null, 2));
    for (const [route, bytes] of Object.entries(sizes)) {
      expect(bytes, route).toBeGreaterThan(50 * 1024);
      expect(bytes, route).toBeLessThan(MAX_JS_GZIP);
    }
    await page.close();
    await context.close();
  });
});

async function openPage(page: Page, route: string) {
  const label = {
    "/": "My access",
    "/approvals": "Approvals",
    "/requests": "Requests",
    "/sessions": "Sessions",
    "/vault": "Vault",
    "/admin": "Administration",
    "/audit": "Audit",
    "/dashboards": "Dashboards",
  }[route]!;
  // In-app navigation (a reload would sign out: tokens live in memory); the links may be folded away on a phone.
  await page.evaluate(
    `window.history.pushState(null, "", ${JSON.stringify(route)}); window.dispatchEvent(new PopStateEvent("popstate"));`,
  );
  await page.getByRole("heading", { name: label, level: 1 }).waitFor();
  await page.waitForLoadState("networkidle");
  // Pages that load several sources say so until all are in.
  await page
    .getByText("Loading…")
    .first()
    .waitFor({ state: "detached", timeout: 10_000 })
    .catch(() => undefined);
}

async function seriousViolations(page: Page): Promise<string[]> {
  await page.addScriptTag({ path: path.join(ROOT, "node_modules/axe-core/axe.min.js") });
  const result = (await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(options: unknown): Promise<unknown> } }).axe;
    return axe.run({ runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
  })) as {
    violations: { id: string; impact: string | null; nodes: { target: string[]; failureSummary?: string }[] }[];
  };
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map(
      (v) =>
        `${v.id} (${v.impact}): ${v.nodes
          .map((n) => `${n.target.join(" ")} — ${(n.failureSummary ?? "").split("\n").slice(1, 2).join("").trim()}`)
          .join(", ")}`,
    );
}
