/**
 * Administration forms and the duration field in a real browser (Debian's Chromium, built server), as an
 * administrator and a requester use them (issue 17 item 10):
 * - a policy's approval stages are edited as stages whose approvers are picked from the directory (users,
 *   groups, the manager), with no JSON to write; what the form saved is what the API returns;
 * - an eligibility names a user picked from the directory: a name that does not exist cannot be chosen;
 * - the activate dialog takes any duration within the policy (45m, not only presets) and refuses one over
 *   the policy's maximum in words, before sending anything.
 */
import type { Page } from "playwright-core";
import { beforeAll, describe, expect, it } from "vitest";
import { signInPage, tokenOf, webFixture } from "./browser.js";

const ADMIN_PASSWORD = "pebble-lantern-orchid-7";
const PASSWORDS = { carol: "quartz-meadow-falcon-2", alice: "amber-harbor-willow-5" };
const REASON = "rotate the orders database replica password";

let adminToken: string;

async function api(method: string, route: string, body?: unknown, token = adminToken) {
  const res = await fetch(`${web.url}${route}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json().catch(() => ({}))) as Record<string, unknown> };
}

async function signIn(user: string, password: string): Promise<Page> {
  const page = await signInPage(
    await web.browser.newContext({ viewport: { width: 1440, height: 900 } }),
    web.url,
    user,
    password,
  );
  page.on("pageerror", (e) => {
    throw e;
  });
  return page;
}

const web = webFixture("web-admin", { adminPassword: ADMIN_PASSWORD });

beforeAll(async () => {
  adminToken = await tokenOf(web.url, "admin", ADMIN_PASSWORD);
  expect((await api("POST", "/v1/users", { name: "carol", password: PASSWORDS.carol })).status).toBe(201);
  expect((await api("POST", "/v1/users", { name: "alice", password: PASSWORDS.alice })).status).toBe(201);
  expect((await api("POST", "/v1/groups", { name: "dba-leads" })).status).toBe(201);
  const applied = await api("POST", "/v1/config/apply", {
    yaml: `apiVersion: stint/v1
policies:
  - name: self-4h
    defaultDuration: 1h
    maxDuration: 4h
    mfa: { required: false }
targets:
  - name: stint
    kind: internal
  - name: legacy-db
    kind: postgres
    address: postgres://stint_admin@db.example.internal:5432/app?sslmode=disable
roles:
  - { name: orders-reader, target: stint, risk: low, policy: self-4h }
  - { name: orders-writer, target: stint, risk: low, policy: self-4h }
eligibility:
  - { role: orders-writer, users: [alice] }
`,
  });
  expect(applied.status, JSON.stringify(applied.body)).toBe(200);
}, 180_000);

describe("administration forms pick from the directory", () => {
  it("the Targets tab says what a target's definition weakens, in the API's words", async () => {
    const target = await api("GET", "/v1/targets/legacy-db");
    expect(target.status).toBe(200);
    const warnings = target.body.warnings as string[];
    expect(warnings.some((w) => w.startsWith("sslmode=disable"))).toBe(true);
    const page = await signIn("admin", ADMIN_PASSWORD);
    await page.getByRole("link", { name: "Administration" }).click();
    await page.getByRole("tab", { name: "Targets" }).click();
    const legacy = page.getByRole("row", { name: /legacy-db/ });
    for (const warning of warnings) await legacy.getByText(warning, { exact: true }).waitFor();
    // A target that weakens nothing shows no warning.
    await expect(
      page
        .getByRole("row", { name: /^stint internal/ })
        .getByText("weakened")
        .count(),
    ).resolves.toBe(0);
    await page.context().close();
  });

  it("a policy's approval stage gets its approvers from pickers, and the API has exactly those", async () => {
    const page = await signIn("admin", ADMIN_PASSWORD);
    await page.getByRole("link", { name: "Administration" }).click();
    await page.getByRole("tab", { name: "Policies" }).click();
    await page.getByRole("button", { name: "New policy" }).click();
    const dialog = page.getByRole("dialog", { name: "New policy" });
    await dialog.getByLabel("Name").fill("two-eyes");
    await dialog.getByRole("button", { name: "Add stage" }).click();
    const stage = dialog.getByRole("group", { name: "Approval stage 1" });
    // The new stage starts with the manager; pick carol and the dba-leads group as well.
    await stage.getByLabel("Stage 1 approvers: users").click();
    await stage.getByLabel("Stage 1 approvers: users").fill("car");
    await page.getByRole("option", { name: /^carol/ }).click();
    await stage.getByLabel("Stage 1 approvers: groups").click();
    await page.getByRole("option", { name: /^dba-leads · 0 members/ }).click();
    // A name the directory does not have is not offered.
    await stage.getByLabel("Stage 1 approvers: users").fill("mallory");
    await page.getByText("No such user").waitFor();
    await stage.getByLabel("Stage 1 approvers: users").fill("");
    await stage.getByLabel("Decide within").fill("4h");
    await dialog.getByRole("button", { name: "Create policy" }).click();
    await dialog.waitFor({ state: "detached" });

    const policy = await api("GET", "/v1/policies/two-eyes");
    expect(policy.status).toBe(200);
    const stages = (policy.body.spec as { approval: { stages: unknown[] } }).approval.stages;
    expect(stages).toEqual([
      expect.objectContaining({
        name: "stage 1",
        approvers: { users: ["carol"], groups: ["dba-leads"], manager: true },
        count: 1,
        timeout: "4h",
        onTimeout: "deny",
      }),
    ]);
    await page.context().close();
  }, 90_000);

  it("an eligibility's user is picked from the directory", async () => {
    const page = await signIn("admin", ADMIN_PASSWORD);
    await page.getByRole("link", { name: "Administration" }).click();
    await page.getByRole("tab", { name: "Eligibility" }).click();
    await page.getByRole("button", { name: "New eligibility" }).click();
    const dialog = page.getByRole("dialog", { name: "New eligibility" });
    await dialog.getByLabel("Role").click();
    await page.getByRole("option", { name: "orders-reader" }).click();
    await dialog.getByLabel("User", { exact: true }).click();
    await dialog.getByLabel("User", { exact: true }).fill("nobody-here");
    await page.getByText("No such user").waitFor();
    await dialog.getByLabel("User", { exact: true }).fill("ali");
    await page.getByRole("option", { name: /^alice/ }).click();
    await dialog.getByRole("button", { name: "Create eligibility" }).click();
    await dialog.waitFor({ state: "detached" });
    const list = await api("GET", "/v1/eligibilities");
    const items = list.body.items as { role: string; principal: string | null }[];
    expect(items.filter((e) => e.role === "orders-reader").map((e) => e.principal)).toEqual(["alice"]);
    await page.context().close();
  }, 90_000);
});

describe("the catalog dialogs check, save and show refusals where they belong", () => {
  it("refuses before sending, puts the server's conflict at its field, and saves an edit to the item", async () => {
    const page = await signIn("admin", ADMIN_PASSWORD);
    const sent: string[] = [];
    page.on("request", (r) => {
      if (r.method() !== "GET") sent.push(`${r.method()} ${new URL(r.url()).pathname}`);
    });
    await page.getByRole("link", { name: "Administration" }).click();

    // Checked in the browser: a role without a target, a target whose labels are not JSON; nothing is sent.
    await page.getByRole("tab", { name: "Roles" }).click();
    await page.getByRole("button", { name: "New role" }).click();
    const role = page.getByRole("dialog", { name: "New role" });
    await role.getByLabel(/^Name/).fill("orders-admin");
    await role.getByRole("button", { name: "Create role" }).click();
    await role.getByText("Choose a target.").waitFor();
    await role.getByRole("button", { name: "Cancel" }).click();
    await page.getByRole("tab", { name: "Targets" }).click();
    await page.getByRole("button", { name: "New target" }).click();
    const target = page.getByRole("dialog", { name: "New target" });
    await target.getByLabel("Name", { exact: true }).fill("legacy-db");
    await target.getByLabel("Labels (JSON)").fill("{ not json");
    await target.getByRole("button", { name: "Create target" }).click();
    await target.getByText(/must be valid JSON/).waitFor();
    expect(sent).toEqual([]);

    // Only the server knows the name is taken: its refusal goes to the Name field, and the dialog stays.
    await target.getByLabel("Labels (JSON)").fill("{}");
    await target.getByLabel("Address").fill("postgres://stint_admin@db.example.internal:5432/app");
    await target.getByRole("button", { name: "Create target" }).click();
    await target.getByText("A target named legacy-db already exists.").waitFor();
    await expect(target.getByLabel("Name", { exact: true }).getAttribute("aria-invalid")).resolves.toBe("true");
    expect(sent).toEqual(["POST /v1/targets"]);
    await target.getByRole("button", { name: "Cancel" }).click();

    // An edit is a PUT to the item (an eligibility by its id), under the dialog's own title.
    await page.getByRole("tab", { name: "Eligibility" }).click();
    await page.getByRole("button", { name: "Edit eligibility of user alice for orders-writer" }).click();
    const edit = page.getByRole("dialog", { name: "Edit eligibility for orders-writer" });
    await edit.getByLabel("Reason").fill("covers the orders rota");
    await edit.getByRole("button", { name: "Save eligibility" }).click();
    await edit.waitFor({ state: "detached" });
    const items = (await api("GET", "/v1/eligibilities")).body.items as { id: string; role: string; reason: string }[];
    const saved = items.find((e) => e.role === "orders-writer")!;
    expect(saved.reason).toBe("covers the orders rota");
    expect(sent.slice(1)).toEqual([`PUT /v1/eligibilities/${saved.id}`]);
    await page.context().close();
  }, 90_000);
});

describe("the activate dialog's duration", () => {
  it("takes any duration within the policy, and refuses one over its maximum in words without sending", async () => {
    const page = await signIn("alice", PASSWORDS.alice);
    const sent: string[] = [];
    page.on("request", (r) => {
      if (r.method() === "POST" && r.url().endsWith("/v1/activation-requests")) sent.push(r.postData() ?? "");
    });
    await page.getByRole("button", { name: "Activate orders-writer" }).click();
    const dialog = page.getByRole("dialog", { name: "Activate orders-writer" });
    await dialog.getByText("Any duration up to 4h, like 45m or 3h.").waitFor();
    await dialog.getByLabel("Duration").fill("9h");
    await dialog.getByLabel("Reason").fill(REASON);
    await dialog.getByRole("button", { name: /^(Activate|Request)/ }).click();
    await dialog.getByText("This role can be held for at most 4h; ask for that or less.").waitFor();
    expect(sent).toEqual([]);
    await dialog.getByLabel("Duration").fill("45m");
    await dialog.getByRole("button", { name: /^(Activate|Request)/ }).click();
    await expect.poll(() => sent.length).toBe(1);
    expect(JSON.parse(sent[0]!)).toMatchObject({ role: "orders-writer", duration: "45m" });
    const mine = await api(
      "GET",
      "/v1/activation-requests?scope=mine",
      undefined,
      await tokenOf(web.url, "alice", PASSWORDS.alice),
    );
    expect((mine.body.items as { duration: string }[])[0]).toMatchObject({ duration: "45m" });
    await page.context().close();
  }, 90_000);
});
