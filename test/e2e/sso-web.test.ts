/**
 * Single sign-on in a real browser (issue 15, acceptance 1): the built server and a real OpenID Provider
 * (oidc-provider on loopback); in Chromium, alice clicks "Sign in with Corp SSO", signs in on the provider's own
 * login and consent pages, and lands on My access showing the groups of the provider's claim. She activates a
 * role she is eligible for through one of those groups; the provider then drops that group, and her second sign-in
 * removes the membership and ends the activation that came through it, both in the audit log.
 */
import { mkdtempSync, rmSync, existsSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startOidcProvider, type TestProvider } from "../../src/testing/oidc-provider.js";
import { apiAs, launchChromium, type Call } from "./browser.js";
import { assertBuilt, freePort, ROOT, startWebServer, type RunningProcess } from "./support.js";

const ADMIN_PASSWORD = "sso web root passphrase 42";
/** Screenshots go here (not committed: test-output/ is ignored). */
const SCREENSHOT_DIR = path.join(ROOT, "test-output", "screenshots");
const REASON = "rotate the replica after incident 4242";

let work: string;
let url: string;
let server: RunningProcess;
let browser: Browser;
let idp: TestProvider;
let admin: Call;

/** Signs in through the provider's pages in a fresh browser context; the page on My access. */
async function ssoSignIn(login: string): Promise<Page> {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(url);
  await page.getByRole("button", { name: "Sign in with Corp SSO" }).click();
  await page.locator('input[name="login"]').fill(login);
  await page.locator('input[name="password"]').fill("any password");
  await page.getByRole("button", { name: "Sign-in" }).click();
  await page.getByRole("button", { name: "Continue" }).click();
  await page.getByRole("heading", { name: "My access" }).waitFor({ timeout: 30_000 });
  return page;
}

beforeAll(async () => {
  assertBuilt();
  if (!existsSync(path.join(ROOT, "dist/web/index.html"))) throw new Error("dist/web is missing: run `npm run build`");
  work = mkdtempSync(path.join(tmpdir(), "stint-sso-web-"));
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  idp = await startOidcProvider({ redirectUris: [`${url}/v1/auth/sso/corp/callback`] });
  idp.accounts.set("sub-alice", {
    preferred_username: "alice",
    email: "alice@example.com",
    email_verified: true,
    name: "Alice Example",
    groups: ["dba", "oncall"],
  });
  writeFileSync(path.join(work, "client-secret"), idp.clientSecret, { mode: 0o600 });
  writeFileSync(
    path.join(work, "stint.yaml"),
    `ssoProviders:
  - id: corp
    displayName: Corp SSO
    issuer: ${idp.issuer}
    clientId: ${idp.clientId}
    clientSecretFile: ${path.join(work, "client-secret")}
    scopes: [openid, email, profile, groups]
    groupsClaim: groups
    allowedEmailDomains: [example.com]
`,
  );
  ({ server } = await startWebServer({
    work,
    port,
    env: {
      STINT_CONFIG_FILE: path.join(work, "stint.yaml"),
      STINT_PUBLIC_URL: url,
      STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
    },
  }));
  admin = await apiAs(url, "admin", ADMIN_PASSWORD);
  browser = await launchChromium();
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await server?.kill("SIGTERM");
  await idp?.close();
  if (work) rmSync(work, { recursive: true, force: true });
}, 30_000);

describe("single sign-on in the web UI", () => {
  it("the sign-in page with its provider button has no serious or critical axe-core violation", async () => {
    // Our CSP forbids inline scripts, which is how axe is put into the page.
    const context = await browser.newContext({ bypassCSP: true });
    const page = await context.newPage();
    await page.goto(url);
    await page.getByRole("button", { name: "Sign in with Corp SSO" }).waitFor();
    await page.addScriptTag({ path: path.join(ROOT, "node_modules/axe-core/axe.min.js") });
    const result = (await page.evaluate(async () => {
      const axe = (globalThis as unknown as { axe: { run(options: unknown): Promise<unknown> } }).axe;
      return axe.run({ runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
    })) as { violations: { id: string; impact: string | null }[] };
    const serious = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
    expect(serious.map((v) => v.id)).toEqual([]);
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, "sso-sign-in.png") });
    await context.close();
  });

  it("signs in through the provider, shows the claim's groups; a dropped group ends what came through it", async () => {
    const first = await ssoSignIn("sub-alice");
    await first.getByTestId("group-dba").waitFor();
    await first.getByTestId("group-oncall").waitFor();
    await first.screenshot({ path: path.join(SCREENSHOT_DIR, "sso-my-access.png"), fullPage: true });

    // The groups exist now (source oidc): an administrator makes dba eligible for a self-service role.
    const applied = await admin("POST", "/v1/config/apply", {
      yaml: `apiVersion: stint/v1
policies:
  - name: sso-self
    mfa: { required: false }
    maxDuration: 8h
targets:
  - name: sso-internal
    kind: internal
roles:
  - name: dba-console
    target: sso-internal
    risk: medium
    policy: sso-self
eligibility:
  - role: dba-console
    groups: [dba]
`,
    });
    expect(applied.status, JSON.stringify(applied.body)).toBe(200);
    await first.reload();
    // A reload signs out (tokens live in memory): sign in again, still in both groups.
    await first.context().close();
    const page = await ssoSignIn("sub-alice");
    await page.getByRole("button", { name: "Activate dba-console" }).click();
    const dialog = page.getByRole("dialog", { name: "Activate dba-console" });
    await dialog.getByLabel("Reason").fill(REASON);
    await dialog.getByRole("button", { name: "Request access" }).click();
    await dialog.getByText("active").first().waitFor({ timeout: 15_000 });
    await dialog.getByRole("button", { name: "Close" }).last().click();
    await page.getByTestId("countdown-dba-console").waitFor({ timeout: 20_000 });
    await page.context().close();

    // The provider drops dba; the next sign-in takes alice out of it and ends the activation.
    idp.accounts.set("sub-alice", { ...idp.accounts.get("sub-alice")!, groups: ["oncall"] });
    const second = await ssoSignIn("sub-alice");
    await second.getByTestId("group-oncall").waitFor();
    expect(await second.getByTestId("group-dba").count()).toBe(0);
    await second.getByText("Nothing is active: you hold no standing privilege.").waitFor({ timeout: 15_000 });

    const groups = await admin("GET", "/v1/groups");
    const dba = (groups.body.items as { name: string; members: string[] }[]).find((g) => g.name === "dba");
    expect(dba?.members).toEqual([]);
    const audit = await admin("GET", "/v1/audit/events?limit=100");
    const events = audit.body.items as { action: string; subject: string | null; details: Record<string, unknown> }[];
    expect(
      events.some(
        (e) => e.action === "group.member_removed" && e.subject === "group:dba" && e.details.source === "oidc",
      ),
    ).toBe(true);
    expect(events.some((e) => e.action === "request.revoked")).toBe(true);
    expect(
      events.filter((e) => e.action === "auth.login" && e.details.method === "oidc").length,
    ).toBeGreaterThanOrEqual(3);
    await second.context().close();
  });
});
