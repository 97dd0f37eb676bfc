/**
 * Redeeming an invite in the web UI (finding 89), in a real browser against the built server: the sign-in page's
 * "I have an invite code" takes the user name, the one-time code (typed: never in the address bar) and the new
 * password twice, then signs the user in. A wrong code is refused with the server's sentence and signs nobody in;
 * the right code works once, after which the password the user chose is theirs and the code is spent.
 */
import type { Page } from "playwright-core";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { apiAs, Guard, webFixture } from "./browser.js";

const ADMIN_PASSWORD = "invite-web-root-password";
const DANA_PASSWORD = "she-chose-this-herself-7";

const web = webFixture("web-invite", { adminPassword: ADMIN_PASSWORD });
let guard: Guard;
let code: string;

async function fillInvite(page: Page, user: string, inviteCode: string, password: string, again = password) {
  await page.goto(web.url);
  await page.getByRole("button", { name: "I have an invite code" }).click();
  const form = page.getByRole("form", { name: "Accept an invite" });
  await form.getByLabel("User name").fill(user);
  await form.getByLabel("Invite code").fill(inviteCode);
  await form.getByLabel(/^New password(?!, again)/).fill(password);
  await form.getByLabel("New password, again").fill(again);
  await form.getByRole("button", { name: "Set my password and sign in" }).click();
}

describe("web: an invited user chooses their own password", () => {
  beforeAll(async () => {
    const admin = await apiAs(web.url, "admin", ADMIN_PASSWORD);
    const created = await admin("POST", "/v1/users", { name: "dana", email: "dana@example.com", invite: true });
    expect(created.status).toBe(201);
    code = (created.body.invite as { code: string }).code;
    expect(code.length).toBeGreaterThan(20);
    guard = new Guard(() => web.browser);
  });
  afterEach(() => guard.close());

  it("a wrong code and differing passwords are refused on the page, and nobody is signed in", async () => {
    const page = await (await guard.context()).newPage();
    await fillInvite(page, "dana", code, DANA_PASSWORD, `${DANA_PASSWORD}x`);
    await expect.poll(() => page.getByRole("alert").textContent()).toContain("The two passwords differ.");

    guard.expect("POST /v1/invites/redeem 401");
    await fillInvite(page, "dana", `${code.slice(0, -2)}zz`, DANA_PASSWORD);
    await expect.poll(async () => (await page.getByRole("alert").textContent()) ?? "").toMatch(/invite/i);
    expect(await page.getByRole("heading", { name: "My access" }).count()).toBe(0);
    expect(page.url()).not.toContain(code);
    const signIn = await fetch(`${web.url}/v1/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username: "dana", password: DANA_PASSWORD }),
    });
    expect(signIn.status).toBe(401);
  });

  it("the right code sets the password dana chose and signs her in; the code is then spent", async () => {
    const page = await (await guard.context()).newPage();
    await fillInvite(page, "dana", code, DANA_PASSWORD);
    await page.getByRole("heading", { name: "My access" }).waitFor();
    expect(page.url()).not.toContain(code);
    // dana signs in with the password she chose (the API says so too), and the code does not work again.
    expect((await (await apiAs(web.url, "dana", DANA_PASSWORD))("GET", "/v1/me")).status).toBe(200);
    const again = await fetch(`${web.url}/v1/invites/redeem`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username: "dana", code, password: "someone-else-password-9" }),
    });
    expect(again.status).not.toBe(200);
    expect((await (await apiAs(web.url, "dana", DANA_PASSWORD))("GET", "/v1/me")).status).toBe(200);
  });
});
