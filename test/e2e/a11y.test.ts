/**
 * Accessibility and phone widths in a real browser (playwright-core driving Debian's /usr/bin/chromium) against
 * the built server, with data on every page (issue 17 items 8 and 9, acceptance 4): an active role and pending
 * ones, requests to approve, a live and an ended session, audit events, vault secrets, groups, rows in every
 * administration tab, an access review, alerts. At 1440×900 and 390×844, every page (the sign-in page's invite
 * form too, empty and refusing), tab and dialog is checked by axe-core (WCAG 2.0–2.2 A and AA rules plus best
 * practices; zero violations of any impact); each dialog has a Close button, keeps focus inside while open and,
 * closed with Escape, gives it back to the button that opened it; at 390 px every table button and tab is on the
 * screen and no badge or tab label is cut short.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { randomUUID } from "node:crypto";
import pg from "pg";
import { chromium, type Browser, type Locator, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPgDatabase } from "../../src/testing/engines.js";
import { ROOT, startWebServer, type RunningProcess } from "./support.js";

const CHROMIUM = process.env.STINT_CHROMIUM ?? "/usr/bin/chromium";
const ADMIN_PASSWORD = "a11y-web-root-password";
const ALICE_PASSWORD = "tulip orbit canyon lantern";
const CAROL_PASSWORD = "maple quartz harbor violet";
const REASON = "investigate slow queries on the orders database";
const WIDTHS = [
  { label: "1440", width: 1440, height: 900 },
  { label: "390", width: 390, height: 844 },
] as const;

let work: string;
let url: string;
let server: RunningProcess;
let browser: Browser;
let database: { url: string; drop: () => Promise<void> };

type Body = Record<string, unknown>;
type Call = (method: string, route: string, body?: unknown) => Promise<{ status: number; body: Body }>;

async function apiAs(user: string, password: string): Promise<Call> {
  const res = await fetch(`${url}/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: user, password }),
  });
  const { accessToken } = (await res.json()) as { accessToken: string };
  return async (method, route, body) => {
    const r = await fetch(`${url}${route}`, {
      method,
      headers: { authorization: `Bearer ${accessToken}`, ...(body ? { "content-type": "application/json" } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: r.status, body: (await r.json().catch(() => ({}))) as Body };
  };
}

async function must(call: Promise<{ status: number; body: Body }>, what: string): Promise<Body> {
  const r = await call;
  expect(r.status, `${what}: ${JSON.stringify(r.body)}`).toBeLessThan(300);
  return r.body;
}

const CONFIG = `apiVersion: stint/v1
policies:
  - name: selfserve
    defaultDuration: 1h
    maxDuration: 8h
    mfa: { required: false }
    justification: { minLength: 10 }
    maxExtensions: 2
  - name: reviewed
    defaultDuration: 1h
    maxDuration: 4h
    mfa: { required: false }
    justification: { minLength: 20, ticketRequired: true, ticketPattern: "^OPS-[0-9]+$" }
    approval:
      stages:
        - approvers: { users: [admin] }
          count: 1
targets:
  - name: orders-db
    kind: internal
    labels: { env: prod }
  - name: web-hosts
    kind: internal
roles:
  - name: orders-reader
    description: Read-only access to the orders database
    target: orders-db
    risk: medium
    policy: selfserve
  - name: orders-admin
    description: Full access to the orders database
    target: orders-db
    risk: critical
    policy: reviewed
  - name: web-operator
    target: web-hosts
    risk: high
    policy: reviewed
  - name: web-viewer
    target: web-hosts
    risk: low
    policy: selfserve
  - name: web-logs
    target: web-hosts
    risk: low
    policy: reviewed
eligibility:
  - role: orders-reader
    users: [admin, alice]
  - role: orders-admin
    users: [admin, alice]
  - role: web-operator
    users: [admin, alice]
  - role: web-viewer
    users: [admin]
  - role: web-logs
    users: [alice]
`;

let liveSessionId = "";

/** The live session stays live: the sweep ends one that its node stopped touching (node_lost). */
async function touchLiveSession(): Promise<void> {
  const db = new pg.Client({ connectionString: database.url });
  await db.connect();
  await db.query("update sessions set seen_at = now(), ended_at = null, end_reason = null where id = $1", [
    liveSessionId,
  ]);
  await db.end();
}

/** Sessions go straight into the database: brokering a real one needs the proxies, which add nothing here. */
async function seedSessions(activationId: string): Promise<void> {
  const db = new pg.Client({ connectionString: database.url });
  await db.connect();
  try {
    const { rows } = await db.query<{ principal_id: string; role_id: string; target_id: string }>(
      `select r.requester_id as principal_id, r.role_id, ro.target_id from activation_requests r join roles ro on ro.id = r.role_id
        where r.id = $1`,
      [activationId],
    );
    const row = rows[0]!;
    const insert = `insert into sessions (id, kind, principal_id, request_id, role_id, target_id, login, client_address,
      node, started_at, ended_at, end_reason, seen_at, bytes_up, bytes_down)
      values ($1, $2, $3, $4, $5, $6, $7, '127.0.0.1', 'a11y', $8, $9, $10, now(), 1200, 34000)`;
    const base = [row.principal_id, activationId, row.role_id, row.target_id];
    liveSessionId = randomUUID();
    await db.query(insert, [liveSessionId, "postgres", ...base, "stint_admin", new Date(), null, null]);
    const hourAgo = new Date(Date.now() - 3_600_000);
    await db.query(insert, [randomUUID(), "ssh", ...base, "ops", hourAgo, new Date(), "client_closed"]);
  } finally {
    await db.end();
  }
}

beforeAll(async () => {
  const t0 = Date.now();
  work = mkdtempSync(path.join(tmpdir(), "stint-a11y-"));
  // The browser starts while the server does.
  const launched = chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  database = await createPgDatabase();
  ({ server, url } = await startWebServer({
    work,
    env: {
      STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
      STINT_DATABASE_URL: database.url,
      // The catalog is applied by one administrator (four-eyes change requests are not what this test is about).
      STINT_FOUR_EYES_TIERS: "none",
    },
  }));
  const serverMs = Date.now() - t0;
  const admin = await apiAs("admin", ADMIN_PASSWORD);
  await must(admin("POST", "/v1/users", { name: "alice", password: ALICE_PASSWORD, manager: "admin" }), "create alice");
  // Nobody makes themselves eligible: a second administrator applies the catalog.
  await must(
    admin("POST", "/v1/users", { name: "carol", password: CAROL_PASSWORD, platformRoles: ["admin"] }),
    "create carol",
  );
  const carol = await apiAs("carol", CAROL_PASSWORD);
  await must(carol("POST", "/v1/config/apply", { yaml: CONFIG }), "apply config");
  // Groups for My access's "Your groups" badges.
  for (const group of ["database-administrators", "on-call"]) {
    await must(carol("POST", "/v1/groups", { name: group }), `group ${group}`);
    await must(carol("POST", `/v1/groups/${group}/members`, { principal: "admin" }), `admin in ${group}`);
  }
  const alice = await apiAs("alice", ALICE_PASSWORD);
  // Active for admin (self-service), pending for admin to decide (alice's), pending of admin's own (alice decides nothing).
  const active = await must(
    admin("POST", "/v1/activation-requests", { role: "orders-reader", reason: REASON, duration: "2h" }),
    "activate orders-reader",
  );
  const critical = await must(
    alice("POST", "/v1/activation-requests", { role: "orders-admin", reason: REASON, ticket: "OPS-1234" }),
    "alice asks for orders-admin",
  );
  // One request's own page (where a notification's link leads), with its approve and deny buttons.
  OPTIONAL.push({ path: `/requests/${critical.id as string}`, heading: "alice's request for orders-admin" });
  await must(
    alice("POST", "/v1/activation-requests", { role: "web-operator", reason: REASON, ticket: "OPS-1235" }),
    "alice asks for web-operator",
  );
  await must(
    alice("POST", "/v1/activation-requests", { role: "web-logs", reason: REASON, ticket: "OPS-1236" }),
    "alice asks for web-logs (low risk: approved in bulk)",
  );
  await must(alice("POST", "/v1/activation-requests", { role: "orders-reader", reason: REASON }), "alice active");
  await seedSessions(active.id as string);
  await must(
    admin("PUT", "/v1/secrets/orders-db%2Fapp", {
      value: "s3cret-app-password",
      description: "Application login",
      roles: ["orders-reader"],
      checkout: { exclusive: true },
    }),
    "secret",
  ).catch(() =>
    must(
      admin("PUT", "/v1/secrets/orders-db%2Fapp", {
        value: "s3cret-app-password",
        description: "Application login",
        roles: ["orders-reader"],
      }),
      "secret",
    ),
  );
  await must(
    admin("PUT", "/v1/secrets/orders-db%2Froot", {
      value: "root-password-emergency",
      description: "Emergency account",
      platformRoles: ["admin"],
      breakGlass: true,
    }),
    "break-glass secret",
  );
  // An access review with rows for the Reviews page (admin reviews alice's access as her manager).
  await must(
    admin("POST", "/v1/reviews/campaigns", {
      name: "orders-q4",
      scope: { roles: ["orders-admin", "orders-reader", "web-operator"] },
      reviewers: { manager: true },
      duration: "14d",
    }),
    "review campaign",
  );
  browser = await launched;
  console.log(`a11y setup: server ${serverMs} ms, seeding ${Date.now() - t0 - serverMs} ms`);
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await server?.kill("SIGTERM");
  await database?.drop().catch(() => undefined);
  if (work) rmSync(work, { recursive: true, force: true });
}, 30_000);

/** A page of the app, the tabs to look at on it, and the buttons that open its dialogs. */
interface Visit {
  path: string;
  heading: string;
  tabs?: { tab: string; dialogs?: DialogSpec[] }[];
  dialogs?: DialogSpec[];
}

/** The button that opens a dialog; or that, with a checkbox to tick first, or a button in it opening a second. */
type DialogSpec = RegExp | { open: RegExp; tick?: RegExp; inner?: RegExp };

const VISITS: Visit[] = [
  { path: "/", heading: "My access", dialogs: [/^Activate web-viewer$/, /^Extend$/] },
  {
    path: "/approvals",
    heading: "Approvals",
    dialogs: [
      /^Approve alice/,
      /^Deny alice/,
      { tick: /^Select alice's request for web-logs/, open: /^Approve selected/ },
    ],
  },
  {
    path: "/requests",
    heading: "Requests",
    // The active request's detail, and the revoke dialog it opens over itself.
    dialogs: [{ open: /^Details of alice's request for orders-reader/, inner: /^Revoke alice's orders-reader/ }],
  },
  { path: "/sessions", heading: "Sessions", dialogs: [/^Details of session/, /^Kill session/, /^Open session/] },
  { path: "/vault", heading: "Vault", dialogs: [/^Check out /, /^Reveal /] },
  {
    path: "/admin",
    heading: "Administration",
    tabs: [
      { tab: "Targets", dialogs: [/^New target$/, /^Edit target orders-db$/, /^Delete target web-hosts$/] },
      { tab: "Roles", dialogs: [/^New role$/, /^Edit role orders-admin$/] },
      { tab: "Policies", dialogs: [/^New policy$/] },
      { tab: "Eligibility", dialogs: [/^New eligibility$/] },
      { tab: "Configuration as code" },
    ],
  },
  { path: "/audit", heading: "Audit", dialogs: [/^Details of event /] },
  { path: "/dashboards", heading: "Dashboards", tabs: [{ tab: "Executive" }, { tab: "On-call" }, { tab: "Health" }] },
  { path: "/account", heading: "Account" },
];

/** Pages other work adds: looked at too when the app has them (a link in the navigation); and one request's page. */
const OPTIONAL: Visit[] = [
  { path: "/reviews", heading: "Reviews", dialogs: [/^Keep…$/, /^Remove…$/] },
  { path: "/alerts", heading: "Alerts", dialogs: [/ activated /] },
  { path: "/evidence", heading: "Evidence" },
  { path: "/live", heading: "Live sessions" },
];

async function signIn(page: Page): Promise<void> {
  await page.goto(url);
  await page.getByLabel("User name").fill("admin");
  await page.getByLabel(/^Password/).fill(ADMIN_PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "My access", level: 1 }).waitFor();
}

/** Requests each page has in flight (faster than waiting for Playwright's 500 ms of network silence). */
const inFlight = new WeakMap<Page, Set<unknown>>();

function trackRequests(page: Page): void {
  const pending = new Set<unknown>();
  inFlight.set(page, pending);
  page.on("request", (r) => pending.add(r));
  page.on("requestfinished", (r) => pending.delete(r));
  page.on("requestfailed", (r) => pending.delete(r));
}

async function quiet(page: Page): Promise<void> {
  const pending = inFlight.get(page)!;
  const until = Date.now() + 10_000;
  for (let calm = 0; calm < 2 && Date.now() < until;) {
    await page.waitForTimeout(40);
    calm = pending.size === 0 ? calm + 1 : 0;
  }
}

async function settle(page: Page): Promise<void> {
  await quiet(page);
  await page
    .getByText("Loading…")
    .first()
    .waitFor({ state: "detached", timeout: 10_000 })
    .catch(() => undefined);
  await page
    .locator(".mantine-Loader-root")
    .first()
    .waitFor({ state: "detached", timeout: 10_000 })
    .catch(() => undefined);
  // The context asks for reduced motion, so Mantine's transitions are instant; one frame for the last paint.
  await page.evaluate("new Promise((resolve) => requestAnimationFrame(resolve))");
}

async function openPage(page: Page, visit: Visit): Promise<void> {
  // In-app navigation (a reload would sign out: tokens live in memory); the links may be folded away on a phone.
  await page.evaluate(
    `window.history.pushState(null, "", ${JSON.stringify(visit.path)}); window.dispatchEvent(new PopStateEvent("popstate"));`,
  );
  await page.getByRole("heading", { name: visit.heading, level: 1 }).waitFor({ timeout: 10_000 });
  await settle(page);
}

interface AxeResult {
  violations: {
    id: string;
    impact: string | null;
    help: string;
    nodes: { target: string[]; failureSummary?: string }[];
  }[];
}

/** Time spent in axe, by scope (printed: the test's cost is mostly here). */
const axeTime = { page: { ms: 0, runs: 0 }, dialog: { ms: 0, runs: 0 } };
/**
 * Every violation axe finds, one readable line each ("color-contrast (serious) …: selector — why"); on the whole
 * document, or only in the open dialog (the page under it is inert, and was checked on its own).
 */
async function axeViolations(page: Page, scope: "page" | "dialog" = "page"): Promise<string[]> {
  const t0 = Date.now();
  const loaded = (await page.evaluate('"axe" in globalThis')) as boolean;
  if (!loaded) await page.addScriptTag({ path: path.join(ROOT, "node_modules/axe-core/axe.min.js") });
  // (Browser code as text: this project's TypeScript has no DOM types outside web/.)
  const options = {
    runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"] },
    // Only violations are read: axe need not collect the (many) passing nodes.
    resultTypes: ["violations"],
  };
  const context = scope === "dialog" ? "[...document.querySelectorAll('[role=\"dialog\"]')].pop()" : "document";
  const result = (await page.evaluate(`axe.run(${context}, ${JSON.stringify(options)})`)) as AxeResult;
  axeTime[scope].ms += Date.now() - t0;
  axeTime[scope].runs++;
  return result.violations.map(
    (v) =>
      `${v.id} (${v.impact}) ${v.help}: ${v.nodes
        .slice(0, 5)
        .map((n) => `${n.target.join(" ")} — ${(n.failureSummary ?? "").split("\n").slice(1).join(" ").trim()}`)
        .join("; ")}${v.nodes.length > 5 ? ` (+${v.nodes.length - 5} more)` : ""}`,
  );
}

/** At a phone's width: table buttons off the screen, badges and tabs cut short ("ME…", "Conf"). */
async function layoutProblems(page: Page): Promise<string[]> {
  return page.evaluate(`(() => {
    const problems = [];
    const width = window.innerWidth;
    const describe = (el) => (el.getAttribute("aria-label") ?? el.textContent ?? "").trim().slice(0, 60);
    for (const button of document.querySelectorAll("main table button, main table a")) {
      const box = button.getBoundingClientRect();
      if (box.width === 0) continue;
      if (box.left < 0 || box.right > width + 0.5)
        problems.push('table button "' + describe(button) + '" is off the screen (' + box.left + "–" + box.right + " of " + width + ")");
    }
    for (const tab of document.querySelectorAll("[role=tab]")) {
      const box = tab.getBoundingClientRect();
      if (box.left < 0 || box.right > width + 0.5)
        problems.push('tab "' + describe(tab) + '" is off the screen (' + box.left + "–" + box.right + " of " + width + ")");
    }
    for (const el of document.querySelectorAll(".mantine-Badge-label, [role=tab], [role=tab] .mantine-Tabs-tabLabel")) {
      if (el.scrollWidth > el.clientWidth + 0.5)
        problems.push('"' + describe(el) + '" is cut short (' + el.scrollWidth + " > " + el.clientWidth + ")");
    }
    return problems;
  })()`) as Promise<string[]>;
}

/** Opens the dialog, checks it, closes it with Escape: focus must be kept inside, then back on the opener. */
async function checkDialog(
  page: Page,
  opener: Locator,
  where: string,
  found: Record<string, string[]>,
  wholePageSeen: Set<string>,
  inner?: RegExp,
) {
  await opener.scrollIntoViewIfNeeded();
  const openerHandle = (await opener.elementHandle())!;
  await opener.click();
  const dialogs = await page.getByRole("dialog").count();
  await page
    .getByRole("dialog")
    .nth(dialogs > 0 ? dialogs - 1 : 0)
    .waitFor();
  // This dialog, whatever opens over it later.
  const dialog = page.getByRole("dialog").nth((await page.getByRole("dialog").count()) - 1);
  await settle(page);
  const name = (await dialog
    .getAttribute("aria-labelledby")
    .then((id) => (id ? page.locator(`[id="${id}"]`).textContent() : dialog.getAttribute("aria-label")))) as string;
  const key = `${where} dialog "${name}"`;
  // The dialog alone (the page under it is inert and was checked on its own), and the whole document once per
  // kind of dialog (Modal, Drawer) at each width, for the rules about the page as a whole (landmarks).
  const kind = (await dialog.evaluate((el) => el.className.includes("Drawer"))) ? "drawer" : "modal";
  found[key] = await axeViolations(page, wholePageSeen.has(kind) ? "dialog" : "page");
  wholePageSeen.add(kind);
  // The close button says what it is (axe's button-name says so too; this names the dialog).
  if (!(await dialog.getByRole("button", { name: "Close", exact: true }).count()))
    found[key].push("close-button: no button named Close in the dialog");
  // Focus is in the dialog when it opens and stays there: Shift+Tab from the first control wraps to the last.
  const inside = () => dialog.evaluate((el) => el.contains(el.ownerDocument.activeElement));
  if (!(await inside())) found[key].push("focus-trap: focus is not in the dialog once it opened");
  await page.keyboard.press("Shift+Tab");
  if (!(await inside())) found[key].push("focus-trap: Shift+Tab took focus out of the open dialog");
  if (inner) {
    const innerOpener = dialog.getByRole("button", { name: inner }).first();
    if ((await innerOpener.count()) === 0) found[key].push(`no button ${inner} in the dialog`);
    else await checkDialog(page, innerOpener, key, found, wholePageSeen);
    if (!(await dialog.isVisible())) {
      found[key].push("Escape in the dialog over it closed this one too");
      return;
    }
  }
  const handle = await dialog.elementHandle();
  const gone = () =>
    page
      .waitForFunction((el) => !el?.isConnected || !el.checkVisibility(), handle, { timeout: 10_000 })
      .then(
        () => true,
        () => false,
      );
  // Escape on a combobox whose list is open closes the list first (as it should): then a second Escape closes the
  // dialog. Anything else left open after Escape is a finding, named by where the focus was.
  const focusedCombobox = async () =>
    (await page.evaluate(
      'document.activeElement?.getAttribute("role") === "combobox" || document.activeElement?.hasAttribute("aria-haspopup") === true',
    )) as boolean;
  await page.keyboard.press("Escape");
  if (!(await gone()) && (await focusedCombobox())) await page.keyboard.press("Escape");
  if (!(await gone())) {
    const at = (await page.evaluate(
      '`${document.activeElement?.tagName} ${document.activeElement?.getAttribute("aria-label") ?? document.activeElement?.textContent?.slice(0, 40) ?? ""}`',
    )) as string;
    found[key].push(`escape: Escape left the dialog open (focus on ${at})`);
    return;
  }
  let focused = false;
  for (let tries = 0; !focused && tries < 10; tries++) {
    if (tries) await page.waitForTimeout(30);
    focused = await openerHandle.evaluate((el) => el.isConnected && el === el.ownerDocument.activeElement);
  }
  if (!focused) {
    const at = (await page.evaluate(
      '`${document.activeElement?.tagName} ${document.activeElement?.textContent?.slice(0, 40) ?? ""}`',
    )) as string;
    found[key].push(`focus-return: Escape left focus on ${at}, not on the button that opened the dialog`);
  }
}

/** Every page and dialog at one width; problems go into `found` under "<width> <page>…". */
async function checkWidth(viewport: (typeof WIDTHS)[number], found: Record<string, string[]>): Promise<void> {
  // Our CSP forbids inline scripts, which is how axe is put into the page.
  const context = await browser.newContext({ viewport, bypassCSP: true, reducedMotion: "reduce" });
  const page = await context.newPage();
  trackRequests(page);
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url);
  await settle(page);
  found[`${viewport.label} sign-in`] = await axeViolations(page);
  // The sign-in page's invite form, empty and then refusing (the two passwords differ), and back.
  await page.getByRole("button", { name: "I have an invite code" }).click();
  const invite = page.getByRole("form", { name: "Accept an invite" });
  await invite.waitFor();
  found[`${viewport.label} invite form`] = await axeViolations(page);
  await invite.getByLabel(/^User name/).fill("alice");
  await invite.getByLabel(/^Invite code/).fill("a-code-nobody-gave");
  await invite.getByLabel(/^New password(?!, again)/).fill(ALICE_PASSWORD);
  await invite.getByLabel(/^New password, again/).fill(`${ALICE_PASSWORD}x`);
  await invite.getByRole("button", { name: "Set my password and sign in" }).click();
  await invite.getByRole("alert").waitFor();
  found[`${viewport.label} invite form, refused`] = await axeViolations(page);
  await invite.getByRole("button", { name: "Back to sign-in" }).click();
  await signIn(page);
  const navigation = (await page.evaluate(
    '[...document.querySelectorAll("nav a[href]")].map((a) => a.getAttribute("href"))',
  )) as string[];
  const visits = [...VISITS, ...OPTIONAL.filter((v) => navigation.includes(v.path) || v.path.startsWith("/requests/"))];
  const wholePageSeen = new Set<string>();
  for (const visit of visits) {
    try {
      await openPage(page, visit);
    } catch (error) {
      const main =
        (await page
          .locator("main")
          .textContent()
          .catch(() => "")) ?? "";
      found[`${viewport.label} ${visit.path}`] = [`the page did not open: ${(error as Error).message.split("\n")[0]}`];
      found[`${viewport.label} ${visit.path}`]!.push(`it shows: ${main.slice(0, 300)}`);
      continue;
    }
    const tabs = visit.tabs ?? [{ tab: "", dialogs: visit.dialogs ?? [] }];
    for (const { tab, dialogs = [] } of tabs) {
      if (tab) {
        await page.getByRole("tab", { name: tab, exact: true }).click();
        await settle(page);
      }
      const where = `${viewport.label} ${visit.path}${tab ? ` (${tab})` : ""}`;
      found[where] = await axeViolations(page);
      if (viewport.width < 600) found[where].push(...(await layoutProblems(page)));
      for (const dialog of dialogs) {
        const spec = dialog instanceof RegExp ? { open: dialog } : dialog;
        if (spec.tick) await page.locator("main").getByRole("checkbox", { name: spec.tick }).first().check();
        const opener = page.locator("main").getByRole("button", { name: spec.open }).first();
        if ((await opener.count()) === 0) {
          found[`${where} opener ${spec.open}`] = ["no such button: the seed data did not reach the page"];
          continue;
        }
        await checkDialog(page, opener, where, found, wholePageSeen, spec.inner);
      }
    }
  }
  if (errors.length) found[`${viewport.label} page errors`] = errors;
  await context.close();
}

describe("accessibility at laptop and phone widths, with data present", () => {
  it(
    "axe-core finds no violation on any page or dialog at 1440 and 390 px; dialogs keep focus and Escape gives it back to the opener; at 390 px table actions and tabs stay on screen and nothing is cut short",
    { timeout: 240_000 },
    async () => {
      const found: Record<string, string[]> = {};
      const started = Date.now();
      await touchLiveSession();
      // Both widths at once, each in its own browser context (the two share nothing but the server's data).
      await Promise.all(WIDTHS.map((viewport) => checkWidth(viewport, found)));
      console.log(
        `a11y: ${Object.keys(found).length} views checked in ${Date.now() - started} ms (axe on pages: ${axeTime.page.runs} runs, ${axeTime.page.ms} ms; on dialogs alone: ${axeTime.dialog.runs} runs, ${axeTime.dialog.ms} ms)`,
      );
      const failing = Object.entries(found).filter(([, v]) => v.length > 0);
      if (failing.length) console.log(failing.map(([k, v]) => `${k}:\n  ${v.join("\n  ")}`).join("\n"));
      expect(Object.fromEntries(failing)).toEqual({});
    },
  );
});
