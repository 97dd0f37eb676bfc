/**
 * Issue 17 acceptance 1, in a real browser (playwright-core driving Debian's Chromium) at phone width
 * (390×844): a manager whose platform role is `user` opens Approvals, sees the role's risk, the policy and
 * the requester's latest requests for that role, selects the low-risk request for bulk approval and approves
 * it. The test fails on any 4xx/5xx response in the network log and on any console error.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { apiAs, Guard, signInPage, webFixture } from "./browser.js";

const ADMIN_PASSWORD = "approver-web-root-password";
const PASSWORDS = { alice: "tulip orbit canyon lantern", carol: "maple quartz harbor violet" };
const ROLE = "wiki-editor";

let pendingId: string;
const earlierReasons = ["update the release notes page", "fix the broken onboarding links"];

const web = webFixture("web-approver", { adminPassword: ADMIN_PASSWORD });

beforeAll(async () => {
  const admin = await apiAs(web.url, "admin", ADMIN_PASSWORD);
  expect((await admin("POST", "/v1/users", { name: "carol", password: PASSWORDS.carol })).status).toBe(201);
  expect(
    (await admin("POST", "/v1/users", { name: "alice", password: PASSWORDS.alice, manager: "carol" })).status,
  ).toBe(201);
  const applied = await admin("POST", "/v1/config/apply", {
    yaml: `apiVersion: stint/v1
policies:
  - name: by-manager
    defaultDuration: 1h
    maxDuration: 4h
    mfa: { required: false }
    maxExtensions: 1
    approval:
      stages:
        - approvers: { manager: true }
targets:
  - name: stint
    kind: internal
roles:
  - name: ${ROLE}
    target: stint
    risk: low
    policy: by-manager
eligibility:
  - role: ${ROLE}
    users: [alice]
`,
  });
  expect(applied.status, JSON.stringify(applied.body)).toBe(200);
  const alice = await apiAs(web.url, "alice", PASSWORDS.alice);
  for (const reason of earlierReasons) {
    const res = await alice("POST", "/v1/activation-requests", { role: ROLE, reason });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect((await alice("POST", `/v1/activation-requests/${res.body.id as string}/cancel`)).status).toBe(200);
  }
  const res = await alice("POST", "/v1/activation-requests", { role: ROLE, reason: "publish the incident review" });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  pendingId = res.body.id as string;
}, 180_000);

describe("an approver whose platform role is user, at phone width", () => {
  it("sees the risk, the policy and alice's last activations, and approves; no request answers 4xx/5xx", async () => {
    const guard = new Guard(() => web.browser);
    const context = await guard.context({ width: 390, height: 844 });
    const asked: string[] = [];
    context.on("response", (response) => {
      const path = new URL(response.url()).pathname;
      if (path.startsWith("/v1/")) asked.push(`${response.request().method()} ${path}`);
    });
    const page = await signInPage(context, web.url, "carol", PASSWORDS.carol);
    // In-app navigation (a reload would sign out: tokens live in memory).
    await page.evaluate(
      `window.history.pushState(null, "", "/approvals"); window.dispatchEvent(new PopStateEvent("popstate"));`,
    );
    await page.getByRole("heading", { name: "Approvals", level: 1 }).waitFor();

    const card = page.getByRole("article", { name: `alice's request for ${ROLE}` });
    await card.getByText("low risk").waitFor();
    const history = card.getByTestId("requester-history");
    await history.waitFor();
    expect(await history.innerText()).toContain("2 earlier requests by alice for this role");
    for (const reason of earlierReasons) expect(await history.innerText()).toContain(reason);
    expect(await card.getByTestId("policy-line").innerText()).toContain("policy by-manager");
    expect(await card.getByText("History not visible to you").count()).toBe(0);

    // The risk is known, so the low-risk request can be approved in bulk; it shows within the phone's width.
    const select = card.getByRole("checkbox", { name: `Select alice's request for ${ROLE}` });
    expect(await select.isEnabled()).toBe(true);
    const approve = card.getByRole("button", { name: `Approve alice's request for ${ROLE}` });
    const box = (await approve.boundingBox())!;
    expect(box.x + box.width).toBeLessThanOrEqual(390);
    await select.check();
    await page.getByRole("button", { name: "Approve selected (1)" }).click();
    const dialog = page.getByRole("dialog", { name: "Approve 1 low-risk request" });
    await dialog.getByRole("button", { name: "Approve all" }).click();
    await page.getByRole("status").getByText("You approved 1 request.").waitFor();
    await page.getByText("Nothing is waiting for you.").waitFor();

    const admin = await apiAs(web.url, "admin", ADMIN_PASSWORD);
    const after = await admin("GET", `/v1/activation-requests/${pendingId}`);
    expect(after.body.state).not.toBe("pending");
    expect((after.body.decisions as { approver: string }[]).map((d) => d.approver)).toEqual(["carol"]);
    // The page read the context through the approver's own right (no catalog or request-list reads).
    expect(asked).toContain(`GET /v1/activation-requests/${pendingId}/context`);
    expect(asked.filter((a) => a.startsWith("GET /v1/roles"))).toEqual([]);
    await guard.close();
  });
});
