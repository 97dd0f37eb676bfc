/**
 * Passkeys end to end (issue 15, acceptance 4) in Chromium with its virtual authenticator (CDP
 * `WebAuthn.addVirtualAuthenticator`: CTAP2, internal, resident keys, user verification) against the built
 * server: dana enrols a key in the web UI, signs out, signs in with password + the key, and steps up with it
 * to activate a role whose policy says `mfa: { methods: [webauthn] }`; a TOTP step-up is refused for that
 * role; a cloned authenticator (the key's copy re-added with its old signature counter) is refused.
 * Then the CLI: `stint step-up --webauthn` prints a link, the browser confirms it with the key, the CLI
 * sees it done and activates the role.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import * as OTPAuth from "otpauth";
import type { CDPSession, Page } from "playwright-core";
import { beforeAll, describe, expect, it } from "vitest";
import { tokenOf, webFixture } from "./browser.js";
import { BIN, cli, start } from "./support.js";

const ADMIN_PASSWORD = "root key orchard 4417";
const DANA = { name: "dana", password: "cobalt meadow ferry lantern" };
const REASON = "rotate the root certificate";

let totp: OTPAuth.TOTP;
let lastStep = -1;
let recoveryCodes: string[] = [];

/**
 * A TOTP code of a step not used before (each step is accepted once, and the server accepts the steps
 * next to the current one): walks from the step before now to the step after, waiting only past that.
 */
async function freshCode(): Promise<string> {
  for (;;) {
    const current = Math.floor(Date.now() / 30_000);
    const step = Math.max(lastStep + 1, current - 1);
    if (step <= current + 1) {
      lastStep = step;
      return totp.generate({ timestamp: step * 30_000 + 1000 });
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/** One of dana's single-use recovery codes: a second factor that is not a passkey, with no wait. */
function recoveryCode(): string {
  const code = recoveryCodes.shift();
  if (!code) throw new Error("the test ran out of recovery codes");
  return code;
}

async function post(route: string, body: unknown, token?: string) {
  const res = await fetch(`${web.url}${route}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json().catch(() => ({}))) as Record<string, unknown> };
}
async function get(route: string, token: string) {
  const res = await fetch(`${web.url}${route}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json().catch(() => ({}))) as Record<string, unknown> };
}
const login = (name: string, password: string, otp?: string) => tokenOf(web.url, name, password, otp);
const codeOf = (res: { body: Record<string, unknown> }) => (res.body.error as { code?: string } | undefined)?.code;

async function auditEvents(adminToken: string, action: string) {
  const res = await get(`/v1/audit/events?action=${action}&limit=1000`, adminToken);
  return res.body.items as { action: string; outcome: string; actor: string; details?: Record<string, unknown> }[];
}

/** The sign-in form: password first; the second step is a code or the passkey. */
async function signInPassword(page: Page) {
  await page.goto(web.url);
  await page.getByLabel("User name").fill(DANA.name);
  await page.getByLabel(/^Password/).fill(DANA.password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

async function signOut(page: Page) {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("User name").waitFor();
}

const web = webFixture("passkeys", { adminPassword: ADMIN_PASSWORD, localhost: true });

beforeAll(async () => {
  const admin = await login("admin", ADMIN_PASSWORD);
  expect((await post("/v1/users", { name: DANA.name, password: DANA.password }, admin)).status).toBe(201);
  const applied = await post(
    "/v1/config/apply",
    {
      yaml: `apiVersion: stint/v1
policies:
  - name: passkey-only
    defaultDuration: 30m
    mfa: { required: true, maxAge: 10m, methods: [webauthn] }
    justification: { minLength: 10 }
targets:
  - name: stint
    kind: internal
roles:
  - name: prod-root
    description: Root on the production cluster
    target: stint
    risk: critical
    policy: passkey-only
eligibility:
  - role: prod-root
    users: [dana]
`,
    },
    admin,
  );
  expect(applied.status, JSON.stringify(applied.body)).toBe(200);
  // dana has an authenticator app too: TOTP is her other second factor.
  const dana = await login(DANA.name, DANA.password);
  const started = await post("/v1/me/mfa/totp", {}, dana);
  totp = new OTPAuth.TOTP({
    secret: OTPAuth.Secret.fromBase32(started.body.secret as string),
    digits: 6,
    period: 30,
    algorithm: "SHA1",
  });
  const confirmed = await post("/v1/me/mfa/totp/confirm", { code: await freshCode() }, dana);
  expect(confirmed.status).toBe(200);
  recoveryCodes = [...(confirmed.body.recoveryCodes as string[])];
}, 180_000);

describe("passkeys in the browser", () => {
  let page: Page;
  let cdp: CDPSession;
  let authenticatorId: string;

  it("enrols a key in the web UI, signs out, and signs in with password + the key", async () => {
    const context = await web.browser.newContext();
    page = await context.newPage();
    cdp = await context.newCDPSession(page);
    await cdp.send("WebAuthn.enable");
    ({ authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
      options: {
        protocol: "ctap2",
        transport: "internal",
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
      },
    }));

    // First sign-in with a second factor (a recovery code here; a fresh MFA lets her change factors).
    await signInPassword(page);
    await page.getByLabel("One-time code").fill(recoveryCode());
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "My access" }).waitFor();
    await page.getByRole("link", { name: "Account" }).click();
    await page.getByRole("heading", { name: "Passkeys" }).waitFor();
    await page.getByLabel("Passkey name").fill("virtual key");
    await page.getByRole("button", { name: "Add passkey" }).click();
    await page.getByText("Passkey “virtual key” added.").waitFor();
    await page.getByRole("table", { name: "Passkeys" }).getByText("virtual key").waitFor();
    const stored = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
    expect(stored.credentials).toHaveLength(1);

    await signOut(page);
    await signInPassword(page);
    await page.getByRole("button", { name: "Use passkey" }).click();
    await page.getByRole("heading", { name: "My access" }).waitFor();
    const admin = await login("admin", ADMIN_PASSWORD);
    const logins = await auditEvents(admin, "auth.login");
    expect(logins.some((e) => e.outcome === "success" && e.details?.mfa === "webauthn")).toBe(true);
    expect((await auditEvents(admin, "webauthn.registered")).some((e) => e.outcome === "success")).toBe(true);
  }, 120_000);

  it("refuses a TOTP step-up for a role whose policy requires WebAuthn, and activates after a passkey step-up", async () => {
    // The API: a TOTP-fresh session, even stepped up with TOTP again, is refused with its own code.
    const viaTotp = await login(DANA.name, DANA.password, await freshCode());
    const refused = await post("/v1/activation-requests", { role: "prod-root", reason: REASON }, viaTotp);
    expect([refused.status, codeOf(refused)]).toEqual([401, "WEBAUTHN_REQUIRED"]);
    expect((await post("/v1/auth/step-up", { otp: await freshCode() }, viaTotp)).status).toBe(200);
    const still = await post("/v1/activation-requests", { role: "prod-root", reason: REASON }, viaTotp);
    expect(codeOf(still)).toBe("WEBAUTHN_REQUIRED");

    // The browser: signed in with a code (not a passkey), the activate dialog asks for the passkey and then activates.
    await signOut(page);
    await signInPassword(page);
    await page.getByLabel("One-time code").fill(recoveryCode());
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "My access" }).waitFor();
    await page.getByRole("button", { name: "Activate prod-root" }).click();
    const dialog = page.getByRole("dialog", { name: "Activate prod-root" });
    await dialog.getByLabel("Reason").fill(REASON);
    await dialog.getByRole("button", { name: "Request access" }).click();
    await dialog.getByText(/needs a passkey check/).waitFor();
    await dialog.getByRole("button", { name: "Confirm with passkey and request" }).click();
    await dialog.getByText("active").first().waitFor({ timeout: 15_000 });
    const admin = await login("admin", ADMIN_PASSWORD);
    const stepUps = await auditEvents(admin, "auth.step_up");
    expect(stepUps.some((e) => e.outcome === "success" && e.details?.method === "webauthn")).toBe(true);
    expect(stepUps.some((e) => e.outcome === "success" && e.details?.method === "totp")).toBe(true);
    const activated = await auditEvents(admin, "request.activated");
    expect(activated.some((e) => e.actor === "dana")).toBe(true);
    await dialog.getByRole("button", { name: "Close" }).last().click();
    await page.getByRole("button", { name: "Deactivate prod-root" }).click();
    await page.getByRole("button", { name: "Deactivate prod-root" }).waitFor({ state: "detached", timeout: 15_000 });
  }, 120_000);

  it("refuses a cloned authenticator (its signature counter going back)", async () => {
    const [copy] = (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials;
    expect(copy).toBeDefined();
    // The genuine key signs once more: the server's counter moves past the copy's.
    await signOut(page);
    await signInPassword(page);
    await page.getByRole("button", { name: "Use passkey" }).click();
    await page.getByRole("heading", { name: "My access" }).waitFor();
    const [now] = (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials;
    expect(now!.signCount).toBeGreaterThan(copy!.signCount);
    // The copy, with its old counter, takes the key's place.
    await cdp.send("WebAuthn.removeCredential", { authenticatorId, credentialId: copy!.credentialId });
    await cdp.send("WebAuthn.addCredential", { authenticatorId, credential: copy! });
    await signOut(page);
    await signInPassword(page);
    await page.getByRole("button", { name: "Use passkey" }).click();
    await page
      .getByRole("alert")
      .getByText(/signature counter went back/)
      .waitFor();
    await expect(page.getByRole("heading", { name: "My access" }).count()).resolves.toBe(0);
    const admin = await login("admin", ADMIN_PASSWORD);
    const clones = await auditEvents(admin, "webauthn.clone_detected");
    expect(clones).toHaveLength(1);
    expect(clones[0]!.details).toMatchObject({ stored: now!.signCount, presented: copy!.signCount + 1 });
    // Put the genuine key back for what follows.
    await cdp.send("WebAuthn.removeCredential", { authenticatorId, credentialId: copy!.credentialId });
    await cdp.send("WebAuthn.addCredential", {
      authenticatorId,
      credential: { ...copy!, signCount: now!.signCount + 1 },
    });
  }, 120_000);

  it("the CLI hands its passkey step-up to the browser, waits for it, then activates the role", async () => {
    const configDir = mkdtempSync(path.join(tmpdir(), "stint-cli-"));
    const env = { STINT_CONFIG_DIR: configDir, STINT_SERVER: web.url };
    try {
      const signedIn = await cli(["login", "--user", DANA.name, "--password-stdin", "--otp", recoveryCode()], {
        env,
        input: `${DANA.password}\n`,
      });
      expect(signedIn.code, signedIn.stderr).toBe(0);
      // Without a terminal the CLI says what to run instead of waiting.
      const refused = await cli(["activate", "prod-root", "--reason", REASON], { env });
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toContain("WEBAUTHN_REQUIRED");
      expect(refused.stderr).toContain("stint step-up --webauthn");

      const stepUp = start(process.execPath, [BIN, "step-up", "--webauthn", "--timeout", "2m"], { env });
      const exited = new Promise<number | null>((resolve) => stepUp.child.once("exit", (code) => resolve(code)));
      const [link] = await stepUp.waitFor(/http:\/\/localhost:\d+\/step-up\/[0-9a-f-]{36}/, 30_000);
      const [, matchCode] = await stepUp.waitFor(/must show the code ([A-Z0-9]{4}-[A-Z0-9]{4})/, 30_000);
      // The browser opens the link (a new load: it signs in first, with password + passkey).
      await page.goto(link!);
      await page.getByLabel("User name").fill(DANA.name);
      await page.getByLabel(/^Password/).fill(DANA.password);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("button", { name: "Use passkey" }).click();
      await page.getByRole("heading", { name: "Confirm a terminal step-up" }).waitFor();
      expect(await page.getByLabel("Match code").innerText()).toBe(matchCode);
      await page.getByRole("button", { name: "Confirm with passkey" }).click();
      await page.getByText("Done: your terminal is confirmed.").waitFor();
      expect(await exited).toBe(0);
      expect(stepUp.output()).toMatch(/passkey/);

      const activated = await cli(["activate", "prod-root", "--reason", REASON, "--json"], { env });
      expect(activated.code, activated.stderr).toBe(0);
      expect(JSON.parse(activated.stdout)).toMatchObject({ state: "active" });
      const admin = await login("admin", ADMIN_PASSWORD);
      const handoffs = await auditEvents(admin, "auth.step_up");
      expect(handoffs.some((e) => e.outcome === "success" && e.details?.handoff !== undefined)).toBe(true);
    } finally {
      rmSync(configDir, { recursive: true, force: true });
    }
  }, 180_000);
});
