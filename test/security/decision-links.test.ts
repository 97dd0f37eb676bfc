/**
 * Issue 12, finding 14: the Approve/Deny links of a real notification open a page that exists
 * (`/requests/<id>`, not a 404), carry their one-time token only in the URL fragment (which no
 * browser sends to a server, so no request log, proxy log or Referer ever holds it), and let the
 * approver decide there after signing in. The server's own log never contains the token, and its
 * request log redacts token-like query parameters anyway (an old link, a hand-made URL).
 * Needs the built web UI (`npm run build`): the page is the real one, in Chromium.
 */
import { mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { passwordFor, testServer, type TestServer } from "../../src/testing/server.js";
import { actAs, seedRole, seedUser } from "../../src/testing/pim.js";
import { freePort, ROOT } from "../e2e/support.js";

const CHROMIUM = process.env.STINT_CHROMIUM ?? "/usr/bin/chromium";
const SECRET = "webhook-secret-for-decision-link-tests";

let server: TestServer;
let receiver: Server;
let browser: Browser;
let url: string;
let work: string;
const logLines: string[] = [];
const received: { links?: { label: string; url: string }[]; event: string }[] = [];

beforeAll(async () => {
  if (!existsSync(path.join(ROOT, "dist/web/index.html"))) throw new Error("dist/web is missing: run `npm run build`");
  receiver = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      received.push(JSON.parse(body) as (typeof received)[number]);
      res.end("ok");
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  const hookPort = (receiver.address() as { port: number }).port;
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  work = mkdtempSync(path.join(tmpdir(), "stint-links-"));
  const file = path.join(work, "stint.yaml");
  writeFileSync(
    file,
    `publicUrl: ${url}\nnotifications:\n  channels:\n    - { name: ops, kind: webhook, url: "http://127.0.0.1:${hookPort}/hook", secret: "${SECRET}" }\n`,
  );
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(chunk.toString());
      done();
    },
  });
  server = await testServer("pglite", {
    env: { STINT_CONFIG_FILE: file },
    logLevel: "trace",
    logDestination: destination as unknown as import("pino").DestinationStream,
  });
  await server.app.listen({ host: "127.0.0.1", port });
  await seedUser(server, "carol");
  for (const requester of ["alice", "bob", "dave"]) await seedUser(server, requester, { manager: "carol" });
  await seedRole(server, {
    name: "orders-db",
    policy: {
      mfa: { required: false, maxAge: "10m" },
      justification: { minLength: 5 },
      approval: { stages: [{ approvers: { manager: true }, count: 1 }] },
    },
    eligibleUsers: ["alice", "bob", "dave"],
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.cleanup();
  await new Promise((r) => receiver?.close(r));
  if (work) rmSync(work, { recursive: true, force: true });
});

async function submitAndNotify(requester: string, reason: string) {
  const before = received.length;
  const submitted = await actAs(server, requester)("POST", "/v1/activation-requests", { role: "orders-db", reason });
  expect(submitted.status, JSON.stringify(submitted.body)).toBe(201);
  const id = submitted.body.id as string;
  for (let i = 0; i < 50 && !received.slice(before).some((n) => n.event === "request.submitted"); i++) {
    await server.outbox.runOnce();
    await new Promise((r) => setTimeout(r, 50));
  }
  const notification = received.slice(before).find((n) => n.event === "request.submitted")!;
  const link = (label: string) => notification.links!.find((l) => l.label === label)!.url;
  return { id, approve: link("Approve"), deny: link("Deny") };
}

describe("decision links in notifications (issue 12 finding 14)", () => {
  it("carry the token in the fragment of a /requests/<id> link, never in the query string", async () => {
    const { id, approve, deny } = await submitAndNotify("bob", "read the replica lag graphs");
    for (const link of [approve, deny]) {
      const parsed = new URL(link);
      expect(parsed.origin).toBe(url);
      expect(parsed.pathname).toBe(`/requests/${id}`);
      expect(parsed.search).toBe("");
      const fragment = new URLSearchParams(parsed.hash.slice(1));
      expect(fragment.get("token")?.length).toBeGreaterThan(20);
      expect(fragment.get("decide")).toBe(link === approve ? "approve" : "deny");
    }
    // The page exists on the server for every request id.
    const page = await fetch(`${url}/requests/${id}`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/text\/html/);
    expect(page.headers.get("referrer-policy")).toBe("no-referrer");
  });

  it("open a page where the approver signs in and approves with the link's token; no log line holds the token", async () => {
    const { id, approve } = await submitAndNotify("alice", "look into the slow order exports");
    const token = new URLSearchParams(new URL(approve).hash.slice(1)).get("token")!;
    const context = await browser.newContext();
    const page = await context.newPage();
    const sent: { url: string; body: string | null }[] = [];
    page.on("request", (request) => sent.push({ url: request.url(), body: request.postData() }));
    const response = await page.goto(approve);
    expect(response?.status()).toBe(200);
    // Signed out: the sign-in form, then the request itself (same path, fragment kept in memory only).
    await page.getByLabel("User name").fill("carol");
    await page.getByLabel(/^Password/).fill(passwordFor("carol"));
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "alice's request for orders-db" }).waitFor({ timeout: 20_000 });
    await page.getByText("look into the slow order exports").waitFor();
    // The token left the address bar (and the history entry) as soon as the page read it.
    expect(page.url()).toBe(`${url}/requests/${id}`);
    await page.getByLabel(/^Reason/).fill("the export job is known to be slow");
    await page.getByRole("button", { name: "Approve", exact: true }).click();
    await page.getByText(/You approved this request/).waitFor({ timeout: 20_000 });
    await context.close();

    const after = await actAs(server, "carol")("GET", `/v1/activation-requests/${id}`);
    expect(["approved", "provisioning", "active"]).toContain(after.body.state);
    // The decision used the link's one-time token: it was sent in a POST body and is now spent.
    const used = await server.store.db.selectFrom("used_decision_links").select("request_id").execute();
    expect(used.map((u) => u.request_id)).toContain(id);
    const decision = sent.find((s) => s.url.endsWith(`/v1/activation-requests/${id}/approvals`));
    expect(JSON.parse(decision!.body!)).toMatchObject({ linkToken: token });
    // No URL the browser asked for held the token; neither did any log line of the server.
    expect(sent.filter((s) => s.url.includes(token))).toEqual([]);
    expect(logLines.length).toBeGreaterThan(0);
    expect(logLines.filter((line) => line.includes(token))).toEqual([]);
    expect(logLines.some((line) => line.includes(`/requests/${id}`))).toBe(true);
  });

  it("the request log redacts token-like query parameters (an old-style or hand-made link)", async () => {
    const { id, deny } = await submitAndNotify("dave", "check the archive partitions");
    const token = new URLSearchParams(new URL(deny).hash.slice(1)).get("token")!;
    const before = logLines.length;
    for (const query of [`decide=deny&link=${token}`, `token=${token}`, `access_token=${token}`, `x=1&code=${token}`]) {
      const res = await fetch(`${url}/requests/${id}?${query}`);
      expect(res.status).toBe(200);
    }
    const lines = logLines.slice(before);
    expect(lines.some((line) => line.includes(`/requests/${id}?decide=deny&link=`))).toBe(true);
    expect(lines.filter((line) => line.includes(token))).toEqual([]);
  });
});
