/**
 * Issue 17 acceptance 2, in a real browser (playwright-core driving Debian's Chromium) against the built
 * server: with 5,000 audit events, filtering the Audit page by an actor whose events are all older than the
 * newest 1,000 finds every one of them (the server filters, pages and counts); the page downloads less than
 * 100 KB of JSON to do it (response bodies measured); the export buttons download exactly the filtered events
 * (JSON lines and CSV). The 5,000 events are written through the audit service into the server's data
 * directory before it starts (one transaction each batch, not 5,000 HTTP calls). Any 4xx/5xx or console
 * error fails the test.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MIGRATIONS_DIR, openAppStore } from "../../src/db/index.js";
import { systemClock } from "../../src/lib/clock.js";
import { createAuditLog } from "../../src/modules/audit/audit.service.js";
import type { AuditInput } from "../../src/modules/audit/audit.types.js";
import type { Actor } from "../../src/modules/authz/authz.types.js";
import { loadKeyring } from "../../src/modules/keys/keys.service.js";
import { apiAs, Guard, launchChromium, signInPage } from "./browser.js";
import { startWebServer, type RunningProcess } from "./support.js";

const ADMIN_PASSWORD = "audit-web-root-password";
const TOTAL = 5000;
const CAROL_EVENTS = 13;

let work: string;
let url: string;
let server: RunningProcess;
let browser: Browser;

const person = (name: string): Actor => ({
  kind: "principal",
  id: randomUUID(),
  name,
  principalKind: "user",
  roles: ["user"],
});

/** Writes carol's 13 events, then 4,987 by others, into the data directory the server will use. */
async function seed(dataDir: string) {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const masterKey = randomBytes(32);
  writeFileSync(path.join(dataDir, "master.key"), masterKey.toString("base64"), { mode: 0o600 });
  const store = await openAppStore({ dataDir: path.join(dataDir, "db"), lockOwner: "web-audit seed" });
  try {
    await store.migrate(MIGRATIONS_DIR);
    const keyring = await loadKeyring({ store, masterKey, clock: systemClock });
    const audit = createAuditLog({ store, keyring, clock: systemClock, checkpointEvery: 1000 });
    const context = { correlationId: "web-audit-seed", sourceIp: "192.0.2.9", userAgent: "seed" };
    const carol: AuditInput[] = Array.from({ length: CAROL_EVENTS }, (_, i) => ({
      action: "request.approved",
      outcome: "success",
      subject: `request:carol-${i}`,
      reason: `approved change ${i}`,
      details: { role: "db-admin", n: i },
    }));
    await store.transaction((tx) => audit.append(tx, person("carol"), context, carol));
    const others = ["dave", "erin", "frank"].map(person);
    const rest = TOTAL - CAROL_EVENTS;
    for (let from = 0; from < rest; from += 1000) {
      await store.transaction(async (tx) => {
        for (const [k, who] of others.entries()) {
          const batch: AuditInput[] = [];
          for (let i = from; i < Math.min(rest, from + 1000); i++)
            if (i % others.length === k)
              batch.push({
                action: "secret.read",
                outcome: "success",
                subject: `secret:app/${i % 50}`,
                details: { n: i, note: "filler event with a few words of details to weigh like a real one" },
              });
          await audit.append(tx, who, context, batch);
        }
      });
    }
    await audit.catchUp(100);
  } finally {
    await store.close();
  }
}

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), "stint-web-audit-"));
  await seed(path.join(work, "data"));
  ({ server, url } = await startWebServer({ work, env: { STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD } }));
  browser = await launchChromium();
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await server?.kill("SIGTERM");
  if (work) rmSync(work, { recursive: true, force: true });
}, 30_000);

async function adminGet<T>(route: string): Promise<T> {
  const res = await (await apiAs(url, "admin", ADMIN_PASSWORD))("GET", route);
  expect(res.status, route).toBe(200);
  return res.body as T;
}

describe("the audit explorer over 5,000 events", () => {
  it("finds all of an old actor's events, downloads < 100 KB of JSON, and exports exactly what it found", async () => {
    // The premise: carol's events are all older than the newest 1,000.
    const newest = await adminGet<{ items: { actor: string; seq: number }[] }>(
      "/v1/audit/events?order=desc&limit=1000",
    );
    expect(newest.items).toHaveLength(1000);
    expect(newest.items.some((e) => e.actor === "carol")).toBe(false);
    const carols = await adminGet<{ items: { seq: number }[] }>("/v1/audit/events?actor=carol&limit=1000");
    expect(carols.items).toHaveLength(CAROL_EVENTS);

    const guard = new Guard(() => browser);
    const context = await guard.context(undefined, { acceptDownloads: true });
    const bodies: Promise<number>[] = [];
    context.on("response", (response) => {
      const type = response.headers()["content-type"] ?? "";
      if (/json/.test(type))
        bodies.push(
          response.body().then(
            (b) => b.length,
            () => 0,
          ),
        );
    });
    const page = await signInPage(context, url, "admin", ADMIN_PASSWORD);
    await page.evaluate(
      `window.history.pushState(null, "", "/audit"); window.dispatchEvent(new PopStateEvent("popstate"));`,
    );
    await page.getByRole("heading", { name: "Audit", level: 1 }).waitFor();
    await page.getByText(/^Chain verified/).waitFor({ timeout: 60_000 });
    // The unfiltered first page counts everything on the server.
    await expect
      .poll(async () => page.getByTestId("audit-count").innerText(), { timeout: 30_000 })
      .toMatch(/^Events 1–50 of 5,0\d\d matching\.$/);

    await page.getByLabel("Actor").fill("carol");
    await page.getByRole("button", { name: "Search" }).click();
    await expect
      .poll(async () => page.getByTestId("audit-count").innerText(), { timeout: 30_000 })
      .toBe(`Events 1–${CAROL_EVENTS} of ${CAROL_EVENTS} matching.`);
    const rows = page.locator('[data-testid^="audit-"]:not([data-testid="audit-count"])');
    expect(await rows.count()).toBe(CAROL_EVENTS);
    const shownSeqs = (await rows.evaluateAll((els) => els.map((el) => el.getAttribute("data-testid")!))).map((id) =>
      Number(id.slice("audit-".length)),
    );
    expect(shownSeqs.sort((a, b) => a - b)).toEqual(carols.items.map((e) => e.seq));

    const jsonBytes = (await Promise.all(bodies)).reduce((a, b) => a + b, 0);
    console.log(`audit page: ${jsonBytes} bytes of JSON over ${bodies.length} responses`);
    expect(jsonBytes).toBeGreaterThan(0);
    expect(jsonBytes).toBeLessThan(100 * 1024);

    // The exports download exactly the filtered events.
    const [jsonl] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: "Export JSON lines" }).click(),
    ]);
    expect(jsonl.suggestedFilename()).toMatch(/^stint-audit-[\d-]+\.jsonl$/);
    const lines = readFileSync((await jsonl.path())!, "utf8")
      .trim()
      .split("\n");
    expect(lines.map((line) => (JSON.parse(line) as { seq: number; actor: string }).seq)).toEqual(
      carols.items.map((e) => e.seq),
    );
    const [csv] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: "Export CSV" }).click(),
    ]);
    const csvLines = readFileSync((await csv.path())!, "utf8")
      .trimEnd()
      .split("\n");
    expect(csvLines[0]).toMatch(/^seq,time,actor,/);
    expect(csvLines.slice(1).map((line) => Number(line.split(",")[0]))).toEqual(carols.items.map((e) => e.seq));
    expect(csvLines.slice(1).every((line) => line.split(",")[2] === "carol")).toBe(true);

    await guard.close();
  });
});
