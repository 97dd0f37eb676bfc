/**
 * Everyday flows in a real browser (playwright-core driving Debian's /usr/bin/chromium) against the built
 * server, asserted as a person sees them (issue 17 items 5 and 7):
 * - the activate dialog states the policy's rules before anything is typed (minimum reason length, ticket
 *   pattern) and says each error in words under its own field, the browser's and the server's alike;
 * - the deny dialog asks for its reason in words;
 * - a pending request is cancelled from My access (and the API says cancelled);
 * - a denied request says who denied it and why, on My access and with a cross at its stage;
 * - approve, deny, deactivate and cancel each end with a confirmation;
 * - an administrator's Approvals page says how many pending requests wait for other approvers, and where.
 * Every page fails the test on a 4xx/5xx response it did not expect, or on any console error.
 */
import type { Locator, Page } from "playwright-core";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { apiAs, Guard, signInPage, type Call, webFixture } from "./browser.js";

const ADMIN_PASSWORD = "web-flows-root-password";
const PASSWORDS = { alice: "tulip orbit canyon lantern", carol: "maple quartz harbor violet" };
const ROLE = "prod-db-reader";
const GOOD_REASON = "investigate slow queries on the orders database";

let guard: Guard;

async function signIn(user: string, password: string): Promise<Page> {
  return signInPage(await guard.context(), web.url, user, password);
}

async function openPage(page: Page, route: string, heading: string | RegExp) {
  // In-app navigation: a reload would sign out (tokens live in memory).
  await page.evaluate(
    `window.history.pushState(null, "", ${JSON.stringify(route)}); window.dispatchEvent(new PopStateEvent("popstate"));`,
  );
  await page.getByRole("heading", { name: heading, level: 1 }).waitFor();
}

/**
 * Opens the inbox's dialog `name` with its button: clicked again until the dialog shows. The inbox reloads its list
 * (polling, and after the page's first load): a click that lands as the list re-renders reaches a button that is
 * then replaced, and no dialog opens (a clean-clone CI run waited 30 s for one).
 */
async function openDialog(page: Page, name: string): Promise<Locator> {
  const dialog = page.getByRole("dialog", { name });
  for (let attempt = 0; attempt < 6; attempt++) {
    // A dialog slow to show is not clicked behind: only a page without it is clicked again.
    if (!(await dialog.isVisible())) await page.getByRole("button", { name }).click({ timeout: 10_000 });
    const shown = await dialog.waitFor({ timeout: 5_000 }).then(
      () => true,
      () => false,
    );
    if (shown) return dialog;
  }
  await dialog.waitFor();
  return dialog;
}

/** The texts a field points at with aria-describedby (its description and its error), by kind. */
async function describedBy(field: Locator): Promise<{ description: string; error: string }> {
  const ids = ((await field.getAttribute("aria-describedby")) ?? "").split(/\s+/).filter(Boolean);
  const out = { description: "", error: "" };
  for (const id of ids) {
    const text = await field.page().locator(`[id="${id}"]`).innerText();
    if (id.includes("error")) out.error = text;
    else if (id.includes("description")) out.description = text;
  }
  return out;
}

async function pendingOf(api: Call, role = ROLE): Promise<{ id: string; state: string }[]> {
  const list = await api("GET", `/v1/activation-requests?scope=all&role=${role}&state=pending`);
  return list.body.items as { id: string; state: string }[];
}

async function requestAsAlice(): Promise<string> {
  const alice = await apiAs(web.url, "alice", PASSWORDS.alice);
  const res = await alice("POST", "/v1/activation-requests", { role: ROLE, reason: GOOD_REASON, ticket: "INC-7" });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.id as string;
}

const web = webFixture("web-flows", { adminPassword: ADMIN_PASSWORD });

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
    justification: { minLength: 20, ticketRequired: true, ticketPattern: "INC-\\\\d+" }
    maxExtensions: 1
    approval:
      stages:
        - approvers: { users: [carol] }
          count: 1
targets:
  - name: stint
    kind: internal
roles:
  - name: ${ROLE}
    description: Read-only access to the orders database
    target: stint
    risk: high
    policy: reviewed
eligibility:
  - role: ${ROLE}
    users: [alice]
`,
  });
  expect(applied.status, JSON.stringify(applied.body)).toBe(200);
}, 180_000);

describe("web UI flows", () => {
  afterEach(async () => {
    await guard?.close();
  });

  it("the activate dialog shows the policy's rules up front and each error in words under its own field", async () => {
    guard = new Guard(() => web.browser);
    const admin = await apiAs(web.url, "admin", ADMIN_PASSWORD);
    const page = await signIn("alice", PASSWORDS.alice);
    const posted: string[] = [];
    page.on("request", (r) => {
      if (r.method() === "POST" && new URL(r.url()).pathname === "/v1/activation-requests") posted.push(r.url());
    });
    await page.getByRole("button", { name: `Activate ${ROLE}` }).click();
    const dialog = page.getByRole("dialog", { name: `Activate ${ROLE}` });
    const reason = dialog.getByLabel("Reason");
    const ticket = dialog.getByLabel(/^Ticket/);

    // Before anything is typed: the rules, each under its own field.
    expect((await describedBy(reason)).description).toContain("at least 20 characters");
    expect(await dialog.getByText("Ticket (required)").count()).toBe(1);
    expect((await describedBy(ticket)).description).toBe("A ticket reference matching INC-\\d+.");

    // Nothing typed: two errors in words, each at its field, nothing sent.
    await dialog.getByRole("button", { name: "Request access" }).click();
    await expect
      .poll(async () => (await describedBy(reason)).error)
      .toBe("Say why you need this role (at least 20 characters).");
    expect((await describedBy(ticket)).error).toBe("This role needs a ticket reference matching INC-\\d+.");
    expect(await reason.getAttribute("aria-invalid")).toBe("true");
    expect(await ticket.getAttribute("aria-invalid")).toBe("true");
    expect(await dialog.getByText(/Too small|expected string/).count()).toBe(0);

    // Too short: the length and the minimum, still nothing sent.
    await reason.fill("restart the job");
    await ticket.fill("INC-42");
    await dialog.getByRole("button", { name: "Request access" }).click();
    await expect
      .poll(async () => (await describedBy(reason)).error)
      .toBe("Your reason has 15 characters; this role needs at least 20. Say what you will do and why.");
    expect((await describedBy(ticket)).error).toBe("");
    expect(posted).toEqual([]);

    // A ticket only the server can judge (the pattern): its refusal lands under Ticket, not under Reason.
    guard.expect("POST /v1/activation-requests 400");
    await reason.fill(GOOD_REASON);
    await ticket.fill("inc-42");
    await dialog.getByRole("button", { name: "Request access" }).click();
    await expect.poll(async () => (await describedBy(ticket)).error).toMatch(/^The ticket "inc-42" does not look like/);
    expect((await describedBy(ticket)).error).toContain("INC-\\d+");
    expect((await describedBy(reason)).error).toBe("");
    expect(await reason.getAttribute("aria-invalid")).not.toBe("true");

    // A reason of filler words only the server judges: under Reason, and Ticket is clear.
    guard.expect("POST /v1/activation-requests 400");
    await reason.fill("fix debug access admin test work");
    await ticket.fill("INC-42");
    await dialog.getByRole("button", { name: "Request access" }).click();
    await expect.poll(async () => (await describedBy(reason)).error).toMatch(/too vague to be a reason/);
    expect((await describedBy(ticket)).error).toBe("");
    expect(posted).toHaveLength(2);
    expect(await pendingOf(admin)).toEqual([]);

    // What the page reads, as the API gives it (additive fields).
    const alice = await apiAs(web.url, "alice", PASSWORDS.alice);
    const roles = (await alice("GET", "/v1/me/roles")).body.items as {
      role: string;
      policy: Record<string, unknown>;
    }[];
    expect(roles.find((r) => r.role === ROLE)?.policy).toMatchObject({
      ticketRequired: true,
      ticketPattern: "INC-\\d+",
      reasonMinLength: 20,
    });
    const refused = await alice("POST", "/v1/activation-requests", { role: ROLE, reason: "fix", ticket: "inc-1" });
    expect(refused.status).toBe(400);
    const details = (refused.body.error as { code: string; details: { fields: Record<string, string> } }).details;
    expect(Object.keys(details.fields).sort()).toEqual(["reason", "ticket"]);
    expect(details.fields.reason).not.toMatch(/ticket/i);
    expect(details.fields.ticket).toMatch(/^The ticket "inc-1"/);
  });

  it("a pending request is cancelled from My access: a confirmation, and the API says cancelled", async () => {
    guard = new Guard(() => web.browser);
    const admin = await apiAs(web.url, "admin", ADMIN_PASSWORD);
    const page = await signIn("alice", PASSWORDS.alice);
    await page.getByRole("button", { name: `Activate ${ROLE}` }).click();
    const dialog = page.getByRole("dialog", { name: `Activate ${ROLE}` });
    await dialog.getByLabel("Reason").fill(GOOD_REASON);
    await dialog.getByLabel(/^Ticket/).fill("INC-42");
    await dialog.getByRole("button", { name: "Request access" }).click();
    await dialog.getByText("pending").waitFor();
    await dialog.getByRole("button", { name: "Close" }).last().click();
    const [pending] = await pendingOf(admin);
    expect(pending).toBeDefined();

    await page.getByTestId(`status-${ROLE}`).getByText("Waiting for approval").waitFor();
    await page.getByRole("button", { name: `Cancel request for ${ROLE}` }).click();
    await page.getByRole("status").getByText(`Your request for ${ROLE} is cancelled.`).waitFor();
    await page.getByRole("button", { name: `Activate ${ROLE}` }).waitFor();
    const after = await admin("GET", `/v1/activation-requests/${pending!.id}`);
    expect(after.body.state).toBe("cancelled");
    expect(after.body.endedBy).toBe("alice");
  });

  it("an admin's Approvals page says how many pending requests wait for other approvers, and links to Requests", async () => {
    guard = new Guard(() => web.browser);
    const id = await requestAsAlice();
    const page = await signIn("admin", ADMIN_PASSWORD);
    await openPage(page, "/approvals", "Approvals");
    await page.getByText("Nothing is waiting for you.").waitFor();
    const note = page.getByTestId("pending-elsewhere");
    await note.waitFor();
    expect(await note.innerText()).toBe("1 pending request waits for other approvers: see Requests.");
    await note.getByRole("link", { name: "Requests" }).click();
    await page.getByRole("heading", { name: "Requests", level: 1 }).waitFor();
    const alice = await apiAs(web.url, "alice", PASSWORDS.alice);
    expect((await alice("POST", `/v1/activation-requests/${id}/cancel`)).status).toBe(200);
  });

  it("carol denies in words and is told so; alice sees who denied it and why, with a cross at the stage", async () => {
    guard = new Guard(() => web.browser);
    const id = await requestAsAlice();
    const carol = await signIn("carol", PASSWORDS.carol);
    // The request's own page (where notification links lead) asks for a deny reason in words too.
    await openPage(carol, `/requests/${id}`, `alice's request for ${ROLE}`);
    const linkReason = carol.getByLabel("Reason (optional when approving)");
    expect((await describedBy(linkReason)).description).toBe("Required to deny: alice reads it.");
    await carol.getByRole("button", { name: "Deny", exact: true }).click();
    await expect
      .poll(async () => (await describedBy(linkReason)).error)
      .toBe("Say why you deny it: alice reads your reason.");

    await openPage(carol, "/approvals", "Approvals");
    const dialog = await openDialog(carol, `Deny alice's request for ${ROLE}`);
    const reason = dialog.getByLabel("Reason (required)");
    expect((await describedBy(reason)).description).toBe("Required: alice reads this.");
    await dialog.getByRole("button", { name: "Deny", exact: true }).click();
    await expect
      .poll(async () => (await describedBy(reason)).error)
      .toBe("Say why you deny it: alice reads your reason.");
    await reason.fill("not during the release freeze");
    await dialog.getByRole("button", { name: "Deny", exact: true }).click();
    await carol
      .getByRole("status")
      .getByText(`You denied alice's request for ${ROLE}; alice sees your reason.`)
      .waitFor();
    await dialog.waitFor({ state: "detached" });

    const alice = await signIn("alice", PASSWORDS.alice);
    const status = alice.getByTestId(`status-${ROLE}`);
    await status.getByText("Denied by carol: not during the release freeze").waitFor();
    expect(await status.innerText()).not.toMatch(/Not active/);

    await openPage(alice, `/requests/${id}`, `alice's request for ${ROLE}`);
    const stage = alice.locator(".mantine-Stepper-step", { hasText: "denied" });
    await stage.waitFor();
    expect(await stage.getByLabel("denied").innerText()).toBe("✕");
    expect(await stage.innerText()).toContain("Denied by carol: not during the release freeze");
    // No check mark on the denied stage (Mantine draws it as an svg).
    expect(await stage.locator(".mantine-Stepper-stepCompletedIcon svg").count()).toBe(0);
  });

  it("approve and deactivate each end with a confirmation", async () => {
    guard = new Guard(() => web.browser);
    const id = await requestAsAlice();
    const carol = await signIn("carol", PASSWORDS.carol);
    await openPage(carol, "/approvals", "Approvals");
    const dialog = await openDialog(carol, `Approve alice's request for ${ROLE}`);
    await dialog.getByRole("button", { name: "Approve", exact: true }).click();
    await carol.getByRole("status").getByText(`You approved alice's request for ${ROLE}.`).waitFor();
    await carol.getByText("Nothing is waiting for you.").waitFor();

    const alice = await signIn("alice", PASSWORDS.alice);
    // The approved stage carries Mantine's check mark (what the denied test looks for and must not find).
    await openPage(alice, `/requests/${id}`, `alice's request for ${ROLE}`);
    const stage = alice.locator(".mantine-Stepper-step").first();
    await stage.waitFor();
    expect(await stage.locator(".mantine-Stepper-stepCompletedIcon svg").count()).toBe(1);
    expect(await stage.innerText()).not.toContain("denied");
    await openPage(alice, "/", "My access");
    // Extending states the reason's rule too, and says an empty one in words.
    await alice.getByRole("button", { name: "Extend" }).click();
    const extend = alice.getByRole("dialog", { name: `Extend ${ROLE}` });
    const extendReason = extend.getByLabel("Reason");
    expect((await describedBy(extendReason)).description).toBe("Why you need more time, at least 20 characters.");
    await extend.getByRole("button", { name: "Extend", exact: true }).click();
    await expect
      .poll(async () => (await describedBy(extendReason)).error)
      .toBe("Say why you need more time (at least 20 characters).");
    await alice.keyboard.press("Escape");
    await extend.waitFor({ state: "detached" });
    await alice.getByRole("button", { name: `Deactivate ${ROLE}` }).click();
    await alice.getByRole("status").getByText(`${ROLE} is deactivated: you no longer hold it.`).waitFor();
    await alice.getByText("Nothing is active: you hold no standing privilege.").waitFor();
    const admin = await apiAs(web.url, "admin", ADMIN_PASSWORD);
    const check = await admin("GET", `/v1/check?principal=alice&role=${ROLE}`);
    expect(check.body.allowed).toBe(false);
  });
});
