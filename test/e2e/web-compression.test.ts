/**
 * Issue 17 acceptance 3, in a real browser (playwright-core driving Debian's Chromium, which accepts brotli
 * and gzip) against the built server: every JavaScript and CSS asset, and every JSON answer over 1 KiB, comes
 * compressed (Content-Encoding, and fewer bytes on the wire than decoded), except the answers that carry
 * secrets (BREACH: src/http/no-compress.ts); the same URLs asked without Accept-Encoding come as they are;
 * and each page's JavaScript on the wire (everything the page loaded, signing in included) is measured, the
 * largest under 250 KB.
 */
import { request as httpRequest } from "node:http";
import path from "node:path";
import type { Page, Response } from "playwright-core";
import { beforeAll, describe, expect, it } from "vitest";
import { COMPRESS_THRESHOLD_BYTES } from "../../src/http/app.js";
import { NEVER_COMPRESSED } from "../../src/http/no-compress.js";
import { apiAs, Guard, signInPage, webFixture } from "./browser.js";

const ADMIN_PASSWORD = "compression-web-root-password";
const JS_BUDGET = 250 * 1024;

/** NEVER_COMPRESSED's routes as patterns over request paths (":param" is one path segment). */
const secretRoutes = NEVER_COMPRESSED.map((entry) => {
  const [method, route] = entry.split(" ") as [string, string];
  return { method, pattern: new RegExp(`^${route.replace(/:[^/]+/g, "[^/]+")}$`) };
});
const carriesSecrets = (method: string, pathname: string) =>
  secretRoutes.some((r) => r.method === method && r.pattern.test(pathname));

interface Seen {
  method: string;
  url: string;
  pathname: string;
  kind: "js" | "css" | "json" | "other";
  encoding: string | undefined;
  /** Bytes on the wire (the encoded body). */
  wire: number;
  /** Bytes once decoded. */
  decoded: number;
  authorization: string | undefined;
}

function kindOf(response: Response): Seen["kind"] {
  const type = response.headers()["content-type"] ?? "";
  if (/javascript/.test(type)) return "js";
  if (/text\/css/.test(type)) return "css";
  if (/json/.test(type)) return "json";
  return "other";
}

/** Records every answer the page gets, with its encoded and decoded sizes. */
function watch(page: Page, seen: Promise<Seen | null>[]): () => void {
  let watching = true;
  page.on("response", (response) => {
    if (!watching) return;
    const request = response.request();
    const target = new URL(response.url());
    seen.push(
      (async () => ({
        method: request.method(),
        url: response.url(),
        pathname: target.pathname,
        kind: kindOf(response),
        encoding: response.headers()["content-encoding"],
        wire: (await request.sizes()).responseBodySize,
        decoded: (await response.body().catch(() => Buffer.alloc(0))).length,
        authorization: (await request.allHeaders()).authorization,
      }))().catch(() => null),
    );
  });
  return () => (watching = false);
}

/** A GET without Accept-Encoding (node:http adds none): the raw answer's encoding and length. */
function plainGet(target: string, authorization?: string): Promise<{ encoding: string | undefined; length: number }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(target, { headers: authorization ? { authorization } : {} }, (res) => {
      let length = 0;
      res.on("data", (chunk: Buffer) => (length += chunk.length));
      res.on("end", () => resolve({ encoding: res.headers["content-encoding"], length }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

const web = webFixture("web-compression", { adminPassword: ADMIN_PASSWORD });

beforeAll(async () => {
  // Data, so that lists are over the threshold: users, a catalog, requests.
  const admin = await apiAs(web.url, "admin", ADMIN_PASSWORD);
  for (let i = 0; i < 12; i++)
    expect(
      (await admin("POST", "/v1/users", { name: `user-${i}`, password: "tulip orbit canyon lantern" })).status,
    ).toBe(201);
  const applied = await admin("POST", "/v1/config/apply", {
    yaml: `apiVersion: stint/v1
policies:
  - name: quick
    mfa: { required: false }
targets:
  - name: stint
    kind: internal
roles:
${Array.from({ length: 8 }, (_, i) => `  - name: role-${i}\n    target: stint\n    risk: low\n    policy: quick\n`).join("")}
eligibility:
${Array.from({ length: 8 }, (_, i) => `  - role: role-${i}\n    users: [user-${i}]\n`).join("")}`,
  });
  expect(applied.status, JSON.stringify(applied.body)).toBe(200);
  // Activations (no approval needed): the request lists and dashboards have rows.
  for (let i = 0; i < 8; i++) {
    const user = await apiAs(web.url, `user-${i}`, "tulip orbit canyon lantern");
    const activated = await user("POST", "/v1/activation-requests", {
      role: `role-${i}`,
      reason: `checking how lists of requests travel, number ${i}`,
    });
    expect(activated.status, JSON.stringify(activated.body)).toBe(201);
  }
}, 180_000);

/** Per page, the JSON answers over 1 KiB that the fixture's data gives it (the test expects at least four). */
const LARGE_ANSWERS: Record<string, string[]> = {
  "/audit": ["/v1/audit/events"],
  "/dashboards": ["/v1/eligibilities", "/v1/activation-requests"],
  "/alerts": ["/v1/alerts"],
};

describe("compression on the wire", () => {
  it("assets and JSON over 1 KiB come compressed when accepted and plain otherwise; each page's JavaScript is measured", async () => {
    // The pages the admin's navigation offers.
    const first = await web.browser.newContext({ viewport: { width: 1440, height: 900 } });
    const probe = await signInPage(first, web.url, "admin", ADMIN_PASSWORD);
    const pages = await probe
      .getByRole("navigation")
      .getByRole("link")
      .evaluateAll((links) => links.map((a) => new URL(a.getAttribute("href") ?? "/", "http://x").pathname));
    await first.close();
    expect(pages).toContain("/dashboards");
    expect(pages).toContain("/audit");

    const all: Seen[] = [];
    const guard = new Guard(() => web.browser);
    const jsPerPage: Record<string, number> = {};
    for (const route of pages) {
      // A fresh context per page: what the page needs is fetched, nothing comes from another page's cache.
      const context = await guard.context();
      const seen: Promise<Seen | null>[] = [];
      let stop: () => void = () => undefined;
      context.once("page", (page) => (stop = watch(page, seen)));
      const page = await signInPage(context, web.url, "admin", ADMIN_PASSWORD);
      // The pages whose answers are over 1 KiB: wait for those answers by name rather than trust a quiet
      // network to mean they came (under load the audit page's events once had not, and in a clean-clone CI run
      // one of the others: a starved page may ask after the network has been quiet for half a second).
      const awaited = (LARGE_ANSWERS[route] ?? []).map((pathname) =>
        page.waitForResponse((r) => new URL(r.url()).pathname === pathname, { timeout: 60_000 }),
      );
      await page.evaluate(
        `window.history.pushState(null, "", ${JSON.stringify(route)}); window.dispatchEvent(new PopStateEvent("popstate"));`,
      );
      await page.getByRole("heading", { level: 1 }).first().waitFor();
      await page.waitForLoadState("networkidle");
      await Promise.all(awaited.map(async (answer) => (await answer).finished()));
      if (process.env.STINT_SCREENSHOTS && route === "/dashboards")
        await page.screenshot({ path: path.join(process.env.STINT_SCREENSHOTS, "dashboards.png"), fullPage: true });
      stop();
      const answers = (await Promise.all(seen)).filter((s): s is Seen => s !== null);
      jsPerPage[route] = answers.filter((s) => s.kind === "js").reduce((sum, s) => sum + s.wire, 0);
      all.push(...answers);
      await context.close();
    }
    console.log(
      "JavaScript on the wire per page (KB): " +
        Object.entries(jsPerPage)
          .map(([route, bytes]) => `${route} ${(bytes / 1024).toFixed(1)}`)
          .join(", "),
    );

    const assets = all.filter((s) => s.kind === "js" || s.kind === "css");
    expect(assets.some((s) => s.kind === "js")).toBe(true);
    expect(assets.some((s) => s.kind === "css")).toBe(true);
    for (const asset of assets) {
      expect(asset.encoding, asset.pathname).toMatch(/^(br|gzip)$/);
      // A file of a few dozen bytes may come out a byte longer; anything of size comes out smaller.
      if (asset.decoded > COMPRESS_THRESHOLD_BYTES) expect(asset.wire, asset.pathname).toBeLessThan(asset.decoded);
    }
    const bigJson = all.filter((s) => s.kind === "json" && s.decoded > COMPRESS_THRESHOLD_BYTES);
    console.log(
      "JSON answers over 1 KiB: " +
        [
          ...new Set(bigJson.map((s) => `${s.method} ${s.pathname} ${s.decoded}→${s.wire} ${s.encoding ?? "plain"}`)),
        ].join(", "),
    );
    expect(new Set(bigJson.map((s) => s.pathname)).size).toBeGreaterThanOrEqual(4);
    for (const answer of bigJson) {
      const name = `${answer.method} ${answer.pathname} (${answer.decoded} bytes)`;
      if (carriesSecrets(answer.method, answer.pathname)) {
        expect(answer.encoding, name).toBeUndefined();
        continue;
      }
      expect(answer.encoding, name).toMatch(/^(br|gzip)$/);
      expect(answer.wire, name).toBeLessThan(answer.decoded);
    }

    // Asked without Accept-Encoding, the same assets and JSON answers come as they are, whole.
    const distinct = new Map<string, Seen>();
    for (const s of [...assets, ...bigJson.filter((s) => s.method === "GET")]) distinct.set(s.url, s);
    for (const s of distinct.values()) {
      const plain = await plainGet(s.url, s.authorization);
      expect(plain.encoding, s.pathname).toBeUndefined();
      if (s.kind === "json") expect(plain.length, s.pathname).toBeGreaterThan(COMPRESS_THRESHOLD_BYTES);
      else expect(plain.length, s.pathname).toBe(s.decoded);
    }

    const [largest, bytes] = Object.entries(jsPerPage).sort((a, b) => b[1] - a[1])[0]!;
    expect(bytes, `the largest page, ${largest}, loads ${(bytes / 1024).toFixed(1)} KB of JavaScript`).toBeLessThan(
      JS_BUDGET,
    );
    await guard.close();
  });
});
