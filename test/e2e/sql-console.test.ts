/**
 * The web SQL console (issue 17, acceptance 5, its database part): queries typed in the page run THROUGH
 * Stint's PostgreSQL proxy as a session of the user's active role, so the proxy's gate, query log, query
 * policy and kill apply unchanged. One in-process server (listening, for Chromium), the proxy on a free
 * port, and the machine's PostgreSQL with a database whose session login OWNS the table: without the role's
 * read-only query policy a DELETE would go through.
 *
 * Shown here: a console query is in that session's query log and `stint sessions play` prints it; a DELETE
 * typed in the console is refused with 42501 naming the rule and the table is unchanged (read directly);
 * a revoke ends the console (the next query answers SQL_CONSOLE_ENDED saying so); the attacks the routes
 * must stop (someone else's console id, no active role, oversized text, caching, compression); and in
 * Chromium, "Open SQL console" on My access, a query typed, its rows seen.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/lib/logger.js";
import { createPgProxy, type PgProxy } from "../../src/proxies/pg/pg-proxy.js";
import { runCliCaptured } from "../../src/testing/cli-run.js";
import { selfSignedCertificate } from "../../src/testing/self-signed.js";
import { ADMIN_PASSWORD, passwordFor } from "../../src/testing/server.js";
import { selfServicePolicy, targetsHarness, type TargetsHarness } from "../../src/testing/targets-harness.js";
import { until, untilValue } from "../../src/testing/until.js";
import { WEB_DIR } from "../../src/http/web.routes.js";
import { createSqlConsoleService } from "../../src/modules/sql-console/sql-console.service.js";
import { Guard, launchChromium, signInPage } from "./browser.js";
import { injectFetch } from "./inject-fetch.js";

const HEX = randomBytes(4).toString("hex");
const DATABASE = `sqlc_${HEX}`;
const LOGIN = `sqlc_login_${HEX}`;
const GROUP = `sqlc_group_${HEX}`;
const USER = `rita${HEX}`;
const OTHER = `otto${HEX}`;
const ROLE = "orders-db-readonly";
const MACHINE_PG = { host: "127.0.0.1", port: 5432 };

interface Reply {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: Record<string, unknown> & { error?: { code: string; message: string } };
}

let h: TargetsHarness;
let proxy: PgProxy;
let adminDb: pg.Client;
let work: string;
let url: string;
let requestId: string;

async function call(
  user: string,
  method: "GET" | "POST" | "DELETE",
  route: string,
  payload?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const res = await h.server.app.inject({
    method,
    url: route,
    headers: { authorization: await h.server.login(user, passwordFor(user)), ...headers },
    ...(payload !== undefined ? { payload: payload as object } : {}),
  });
  return {
    status: res.statusCode,
    headers: res.headers,
    body: res.body ? (res.json() as Reply["body"]) : {},
  };
}

async function openConsole(user = USER): Promise<{ id: string; sessionId: string }> {
  const res = await call(user, "POST", "/v1/sql-console/sessions", { role: ROLE });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body as unknown as { id: string; sessionId: string };
}

function query(id: string, sql: string, user = USER, headers: Record<string, string> = {}) {
  return call(user, "POST", `/v1/sql-console/sessions/${id}/queries`, { sql }, headers);
}

async function accounts(): Promise<string> {
  const { rows } = await adminDb.query<{ data: string }>(
    "SELECT string_agg(format('%s|%s', id, owner), ',' ORDER BY id) AS data FROM accounts",
  );
  return rows[0]!.data;
}

/** axe-core's violations inside the open dialog, one line each. */
async function axeViolations(page: Page): Promise<string[]> {
  if (!((await page.evaluate('"axe" in globalThis')) as boolean))
    await page.addScriptTag({ path: path.join(process.cwd(), "node_modules/axe-core/axe.min.js") });
  const options = {
    runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"] },
    resultTypes: ["violations"],
  };
  const result = (await page.evaluate(
    `axe.run([...document.querySelectorAll('[role="dialog"]')].pop(), ${JSON.stringify(options)})`,
  )) as { violations: { id: string; impact: string | null; nodes: { target: string[] }[] }[] };
  return result.violations.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join("; ")}`);
}

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), "stint-sql-console-"));
  const admin = new pg.Client({ ...MACHINE_PG, user: "postgres", database: "postgres" });
  await admin.connect();
  await admin.query(`CREATE ROLE ${GROUP} NOLOGIN`);
  await admin.query(`CREATE ROLE ${LOGIN} LOGIN PASSWORD 'unused-${HEX}'`);
  await admin.query(`CREATE DATABASE ${DATABASE} OWNER ${LOGIN}`);
  await admin.end();
  adminDb = new pg.Client({ ...MACHINE_PG, user: "postgres", database: DATABASE });
  await adminDb.connect();
  await adminDb.query(`
    SET ROLE ${LOGIN};
    CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL);
    INSERT INTO accounts VALUES (1, 'alice'), (2, 'bob'), (3, 'carol');
    RESET ROLE;`);

  h = await targetsHarness();
  proxy = createPgProxy({ gate: h.server.sessions.gate, logger: createLogger({ level: "silent" }), port: 0 });
  const bound = await proxy.listen();
  h.server.sessions.setProxyAddress("postgres", { host: "127.0.0.1", port: bound.port });
  await h.createUser(USER);
  await h.createUser(OTHER);
  await h.apply(`
apiVersion: stint/v1
policies:${selfServicePolicy("read-only-self")}
    session: { recording: required, queries: { allow: [select] } }
targets:
  - name: orders-db
    kind: postgres
    address: postgres://postgres@127.0.0.1:5432/${DATABASE}?sslmode=disable
    credential: { secret: targets/orders-db/admin }
    identity: { map: { ${USER}: ${LOGIN}, ${OTHER}: ${LOGIN} } }
    options:
      session: { login: ${LOGIN}, secret: targets/orders-db/session }
roles:
  - name: ${ROLE}
    target: orders-db
    entitlement: { role: ${GROUP} }
    policy: read-only-self
    risk: low
eligibility:
  - role: ${ROLE}
    users: [${USER}, ${OTHER}]
`);
  // The machine's server trusts local connections: the passwords are never checked, only required.
  expect((await h.admin("PUT", "/v1/targets/orders-db/credential", { secret: `admin-${HEX}` })).status).toBe(200);
  const put = await h.admin("PUT", `/v1/secrets/${encodeURIComponent("targets/orders-db/session")}`, {
    kind: "password",
    value: `unused-${HEX}`,
    platformRoles: ["admin"],
  });
  expect(put.status, JSON.stringify(put.body)).toBe(200);
  const request = await h.activate(USER, ROLE, "1h");
  expect(request.state, JSON.stringify(request)).toBe("active");
  requestId = String(request.id);
  await h.server.app.listen({ host: "127.0.0.1", port: 0 });
  const address = h.server.app.server.address();
  url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
}, 90_000);

afterAll(async () => {
  await h?.server.cleanup();
  await proxy?.close();
  await adminDb?.end().catch(() => undefined);
  const admin = new pg.Client({ ...MACHINE_PG, user: "postgres", database: "postgres" });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`).catch(() => undefined);
  for (const role of [LOGIN, GROUP]) await admin.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
  await admin.end();
  rmSync(work, { recursive: true, force: true });
});

describe("the web SQL console runs through the PostgreSQL proxy", () => {
  it("a console query is in that session's query log, and `stint sessions play` prints it", async () => {
    const opened = await openConsole();
    const res = await query(opened.id, "SELECT owner FROM accounts ORDER BY id");
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({
      error: null,
      results: [
        {
          command: "SELECT",
          rowCount: 3,
          columns: [{ name: "owner" }],
          rows: [["alice"], ["bob"], ["carol"]],
          truncated: false,
        },
      ],
    });
    // The session is the proxy's, audited as any other, and its opening names the console.
    const session = await h.admin("GET", `/v1/sessions/${opened.sessionId}`);
    expect(session.body).toMatchObject({ kind: "postgres", user: USER, role: ROLE, target: "orders-db", live: true });
    expect((await call(USER, "DELETE", `/v1/sql-console/sessions/${opened.id}`)).status).toBe(204);
    await until("the session has ended and its recording is available", async () => {
      const s = await h.admin("GET", `/v1/sessions/${opened.sessionId}`);
      return Boolean(s.body.endedAt) && (s.body.recording as { available?: boolean } | null)?.available === true;
    });
    const played = await runCliCaptured(["sessions", "play", opened.sessionId], {
      env: {
        STINT_CONFIG_DIR: work,
        HOME: work,
        STINT_SERVER: "http://127.0.0.1:8420",
        STINT_TOKEN: (await h.server.login(h.server.config.bootstrapAdminName, ADMIN_PASSWORD)).replace(/^Bearer /, ""),
      },
      fetch: injectFetch(() => h.server.app),
    });
    expect(played.code, played.stderr).toBe(0);
    expect(played.stdout).toContain("SELECT owner FROM accounts ORDER BY id");
    expect(played.stdout).toMatch(/SELECT 3 rows/);
    const events = await h.server.audit.read({ limit: 1000 });
    const actions = events.filter((e) => e.subject === `session:${opened.sessionId}`).map((e) => e.action);
    expect(actions).toEqual(
      expect.arrayContaining(["session.started", "sql_console.opened", "sql_console.closed", "session.ended"]),
    );
  });

  it("under a read-only query policy a DELETE typed in the console is refused with 42501 and the table is unchanged", async () => {
    const before = await accounts();
    // Positive control: the session login could delete, straight to the server.
    const direct = new pg.Client({ ...MACHINE_PG, user: LOGIN, database: DATABASE });
    await direct.connect();
    await direct.query("BEGIN");
    expect((await direct.query("DELETE FROM accounts WHERE id = 1")).rowCount).toBe(1);
    await direct.query("ROLLBACK");
    await direct.end();

    const opened = await openConsole();
    for (const sql of ["DELETE FROM accounts WHERE id = 1", "SELECT 1; DELETE FROM accounts", "delete from accounts"]) {
      const res = await query(opened.id, sql);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      const error = res.body.error as unknown as { sqlstate: string; message: string };
      expect(error.sqlstate, sql).toBe("42501");
      expect(error.message).toMatch(/^refused by Stint query policy \(rule [a-z_]+\): /);
    }
    expect(await accounts()).toBe(before);
    // The console still works after a refusal, and reads pass.
    const after = await query(opened.id, "SELECT count(*) AS n FROM accounts");
    expect(after.body).toMatchObject({ error: null, results: [{ rows: [["3"]] }] });
    // A server error has its SQLSTATE and message, and the statements before it keep their results.
    const failed = await query(opened.id, "SELECT 1 AS one; SELECT 1/0");
    expect(failed.body).toMatchObject({
      results: [{ command: "SELECT", rows: [["1"]] }],
      error: { sqlstate: "22012", message: "division by zero" },
    });
    const refused = (await h.server.audit.read({ limit: 1000 })).filter(
      (e) => e.action === "session.query_refused" && e.subject === `session:${opened.sessionId}`,
    );
    expect(refused.length).toBeGreaterThanOrEqual(3);
    expect((await call(USER, "DELETE", `/v1/sql-console/sessions/${opened.id}`)).status).toBe(204);
  });

  it("attacks: another user's console id, no active role, oversized text, caching and compression, unauthenticated", async () => {
    const opened = await openConsole();
    // Someone else's console answers as if there were none, and is left as it was.
    const theirs = await query(opened.id, "SELECT 1", OTHER);
    expect(theirs.status).toBe(404);
    expect(theirs.body.error?.code).toBe("NOT_FOUND");
    expect((await call(OTHER, "DELETE", `/v1/sql-console/sessions/${opened.id}`)).status).toBe(404);
    expect((await call(OTHER, "GET", "/v1/sql-console/sessions")).body).toEqual({ items: [] });
    expect((await query(opened.id, "SELECT 1")).status).toBe(200);
    // Without an active activation of the role, no console (OTHER is eligible, not active).
    const inactive = await call(OTHER, "POST", "/v1/sql-console/sessions", { role: ROLE });
    expect(inactive.status).toBe(409);
    expect(inactive.body.error?.code).toBe("NOT_ACTIVE");
    // Oversized text is refused with its own code before anything reaches the proxy.
    const big = await query(opened.id, `SELECT '${"x".repeat(70 * 1024)}'`);
    expect(big.status).toBe(413);
    expect(big.body.error?.code).toBe("SQL_QUERY_TOO_LARGE");
    expect(big.body.error?.message).toMatch(/at most 65536/);
    // Answers are never cached, and never compressed (rows may hold secrets next to chosen text).
    const large = await query(opened.id, "SELECT repeat('secret', 2000) AS s", USER, {
      "accept-encoding": "gzip, deflate, br",
    });
    expect(large.status).toBe(200);
    expect(large.headers["cache-control"]).toBe("no-store");
    expect(large.headers["content-encoding"]).toBeUndefined();
    // At most 1,000 rows are kept; the result says it was cut, and the command tag's count stays true.
    const many = await query(opened.id, "SELECT g FROM generate_series(1, 5000) g");
    const result = (many.body.results as { rows: unknown[]; truncated: boolean; rowCount: number }[])[0]!;
    expect(result.rows.length).toBe(1000);
    expect(result.truncated).toBe(true);
    expect(result.rowCount).toBe(5000);
    // Three consoles per user at most: the fourth is refused until one closes.
    const more = [await openConsole(), await openConsole()];
    const fourth = await call(USER, "POST", "/v1/sql-console/sessions", { role: ROLE });
    expect(fourth.status).toBe(429);
    expect(fourth.body.error?.code).toBe("SQL_CONSOLE_LIMIT");
    for (const c of more) expect((await call(USER, "DELETE", `/v1/sql-console/sessions/${c.id}`)).status).toBe(204);
    // Malformed ids and bodies are refused; no sign-in, no console.
    expect((await call(USER, "POST", "/v1/sql-console/sessions/not-a-uuid/queries", { sql: "SELECT 1" })).status).toBe(
      400,
    );
    expect((await call(USER, "POST", `/v1/sql-console/sessions/${opened.id}/queries`, { sql: "" })).status).toBe(400);
    const anonymous = await h.server.app.inject({
      method: "POST",
      url: `/v1/sql-console/sessions/${opened.id}/queries`,
      payload: { sql: "SELECT 1" },
    });
    expect(anonymous.statusCode).toBe(401);
    expect((await call(USER, "DELETE", `/v1/sql-console/sessions/${opened.id}`)).status).toBe(204);
    const closed = await query(opened.id, "SELECT 1");
    expect(closed.status).toBe(410);
    expect(closed.body.error?.code).toBe("SQL_CONSOLE_ENDED");
  });

  it("in Chromium: Open SQL console on My access, type a query, see the rows", async () => {
    if (!existsSync(path.join(WEB_DIR, "index.html"))) throw new Error("dist/web is missing: run `npx vite build web`");
    let browser: Browser | undefined;
    const guard = new Guard(() => browser!);
    try {
      browser = await launchChromium();
      // CSP bypassed only so that the test can add axe-core to the page.
      const page = await signInPage(await guard.context(undefined, { bypassCSP: true }), url, USER, passwordFor(USER));
      await page.getByRole("button", { name: `Open SQL console for ${ROLE}` }).click();
      const dialog = page.getByRole("dialog", { name: `SQL console: ${ROLE}` });
      await dialog.getByText(/as session/).waitFor();
      await dialog.getByLabel("SQL").fill("SELECT id, owner FROM accounts ORDER BY id");
      await dialog.getByRole("button", { name: "Run" }).click();
      const table = dialog.getByRole("table", { name: "Result 1" });
      await table.waitFor();
      expect(await table.getByRole("columnheader").allInnerTexts()).toEqual(["id", "owner"]);
      expect(await table.locator("tbody tr").allInnerTexts()).toEqual(["1\talice", "2\tbob", "3\tcarol"]);
      // A refused statement shows its SQLSTATE and the rule.
      await dialog.getByLabel("SQL").fill("DELETE FROM accounts");
      await dialog.getByRole("button", { name: "Run" }).click();
      await dialog.getByText("ERROR 42501").waitFor();
      await dialog.getByText(/refused by Stint query policy/).waitFor();
      // Rows and an error on screen: axe finds nothing in the dialog (WCAG 2.x A/AA and best practices).
      await dialog.getByLabel("SQL").fill("SELECT id, owner FROM accounts ORDER BY id; SELECT 1/0");
      await dialog.getByRole("button", { name: "Run" }).click();
      await table.waitFor();
      await dialog.getByText("ERROR 22012").waitFor();
      expect(await axeViolations(page)).toEqual([]);
      await dialog.getByRole("button", { name: "Close" }).first().click();
      await dialog.waitFor({ state: "detached" });
      await until(
        "the console is closed (none listed)",
        async () => ((await call(USER, "GET", "/v1/sql-console/sessions")).body.items as unknown[]).length === 0,
      );
      await guard.close();
    } finally {
      await browser?.close();
    }
  }, 60_000);

  it("a proxy with a TLS certificate: the console speaks TLS pinned to that certificate; another one is refused", async () => {
    const made = [await selfSignedCertificate(), await selfSignedCertificate()];
    const secure = createPgProxy({
      gate: h.server.sessions.gate,
      logger: createLogger({ level: "silent" }),
      port: 0,
      tls: made[0]!,
    });
    const { port } = await secure.listen();
    const consoleWith = (pem: string) =>
      createSqlConsoleService({
        sessions: {
          issueDatabaseToken: (actor, ctx, input) => h.server.sessions.issueDatabaseToken(actor, ctx, input),
          localProxyAddress: () => ({ host: "127.0.0.1", port }),
          awaitSessionOf: (token, opened) => h.server.sessions.awaitSessionOf(token, opened),
        },
        audit: h.server.audit,
        clock: h.clock,
        logger: createLogger({ level: "silent" }),
        proxyTlsCert: async () => pem,
      });
    const actor = await h.server.identity.authenticate(await h.server.login(USER, passwordFor(USER)));
    const ctx = { correlationId: "sql-console-tls", sourceIp: "127.0.0.1", userAgent: null };
    const pinned = consoleWith(made[0]!.cert);
    const other = consoleWith(made[1]!.cert);
    try {
      const opened = await pinned.open(actor, ctx, { role: ROLE });
      const res = await pinned.query(actor, opened.id, "SELECT count(*) FROM accounts");
      expect(res).toMatchObject({ error: null, results: [{ rows: [["3"]] }] });
      // The proxy speaks TLS only (a plaintext startup is refused), so that answer came over TLS; a proxy
      // presenting any other certificate gets no token.
      await expect(other.open(actor, ctx, { role: ROLE })).rejects.toMatchObject({ code: "UNAVAILABLE" });
      expect(secure.liveSessions()).toBe(1);
    } finally {
      await pinned.stop();
      await other.stop();
      await secure.close();
    }
  });

  it("a revoke ends the console: the next query answers SQL_CONSOLE_ENDED saying why", async () => {
    const opened = await openConsole();
    expect((await query(opened.id, "SELECT 1")).status).toBe(200);
    const revoked = await h.admin("POST", `/v1/activation-requests/${requestId}/revoke`, {
      reason: "the incident is over",
    });
    expect(revoked.status, JSON.stringify(revoked.body)).toBe(200);
    const ended = await untilValue("the console's end (410)", async () => {
      const res = await query(opened.id, "SELECT 1");
      return res.status === 410 ? res : null;
    });
    expect(ended.body.error?.code).toBe("SQL_CONSOLE_ENDED");
    expect(ended.body.error?.message).toMatch(/revoked/);
    expect(await accounts()).toBe("1|alice,2|bob,3|carol");
    // And no new one opens.
    const again = await call(USER, "POST", "/v1/sql-console/sessions", { role: ROLE });
    expect(again.body.error?.code).toBe("NOT_ACTIVE");
  });
});
