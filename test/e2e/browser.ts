/**
 * What the browser tests share: the built server and Chromium for a test file (`webFixture`), Debian's Chromium
 * launched as this machine needs it, an API client signed in as a user, signing in through the page, and a guard
 * that fails a test on any 4xx/5xx answer it did not expect or any console error.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from "playwright-core";
import { afterAll, beforeAll, expect } from "vitest";
import { freePort, startWebServer, type RunningProcess } from "./support.js";

export const CHROMIUM = process.env.STINT_CHROMIUM ?? "/usr/bin/chromium";

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}

export interface WebFixture {
  /** The file's work directory (the server's data; removed at the end). */
  work: string;
  url: string;
  server: RunningProcess;
  browser: Browser;
}

/**
 * For the calling test file: the built server (`startWebServer`) in a fresh work directory named after `name`,
 * its bootstrap administrator signing in with `adminPassword`, and Chromium; all there once this `beforeAll` has
 * run (a file's own `beforeAll`, registered after this call, runs after it), closed, killed and removed after
 * the file. `localhost`: the server is addressed as http://localhost:<port>, its public URL (WebAuthn needs a
 * host name in a secure context, never an IP address).
 */
export function webFixture(name: string, options: { adminPassword: string; localhost?: boolean }): WebFixture {
  const web = {} as WebFixture;
  beforeAll(async () => {
    web.work = mkdtempSync(path.join(tmpdir(), `stint-${name}-`));
    const env = { STINT_BOOTSTRAP_ADMIN_PASSWORD: options.adminPassword };
    const port = options.localhost ? await freePort() : undefined;
    ({ server: web.server, url: web.url } = await startWebServer(
      port === undefined
        ? { work: web.work, env }
        : { work: web.work, port, host: "localhost", env: { ...env, STINT_PUBLIC_URL: `http://localhost:${port}` } },
    ));
    web.browser = await launchChromium();
  }, 180_000);
  afterAll(async () => {
    await web.browser?.close();
    await web.server?.kill("SIGTERM");
    if (web.work) rmSync(web.work, { recursive: true, force: true });
  }, 30_000);
  return web;
}

export type Call = (
  method: string,
  route: string,
  body?: unknown,
) => Promise<{ status: number; body: Record<string, unknown> }>;

/** A bearer token of `user` (signed in with the password, and the one-time code when given). */
export async function tokenOf(url: string, user: string, password: string, otp?: string): Promise<string> {
  const res = await fetch(`${url}/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: user, password, ...(otp ? { otp } : {}) }),
  });
  const body = (await res.json().catch(() => ({}))) as { accessToken?: string };
  if (res.status !== 200 || !body.accessToken) throw new Error(`${user} could not sign in: HTTP ${res.status}`);
  return body.accessToken;
}

/** API calls as `user`: each answers its status and JSON body (empty when there is none). */
export async function apiAs(url: string, user: string, password: string): Promise<Call> {
  const token = await tokenOf(url, user, password);
  return async (method, route, body) => {
    const res = await fetch(`${url}${route}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json().catch(() => ({}))) as Record<string, unknown> };
  };
}

/** Signs in through the sign-in page in a new page of `context`, until My access shows. */
export async function signInPage(context: BrowserContext, url: string, user: string, password: string): Promise<Page> {
  const page = await context.newPage();
  await page.goto(url);
  await page.getByLabel("User name").fill(user);
  await page.getByLabel(/^Password/).fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "My access" }).waitFor();
  return page;
}

/**
 * What went wrong in the browser: 4xx/5xx answers not listed as expected ("POST /v1/activation-requests 400",
 * each allowed once per listing) and console errors. Chromium logs every failed fetch as a console error too;
 * those are judged by the network list instead.
 */
export class Guard {
  readonly problems: string[] = [];
  private expected: string[] = [];
  private tolerated: string[] = [];
  private readonly contexts: BrowserContext[] = [];

  constructor(private readonly browser: () => Browser) {}

  expect(...calls: string[]) {
    this.expected.push(...calls);
  }

  /** Failures allowed any number of times, including none (a known issue fixed elsewhere). */
  tolerate(...calls: string[]) {
    this.tolerated.push(...calls);
  }

  /** A watched context; `options` adds to the viewport (downloads, time zone, CSP bypass). */
  async context(
    viewport = { width: 1440, height: 900 },
    options: Omit<BrowserContextOptions, "viewport"> = {},
  ): Promise<BrowserContext> {
    const context = await this.browser().newContext({ ...options, viewport });
    this.contexts.push(context);
    context.on("page", (page) => this.watch(page));
    return context;
  }

  private watch(page: Page) {
    page.on("response", (response) => {
      if (response.status() < 400) return;
      const call = `${response.request().method()} ${new URL(response.url()).pathname} ${response.status()}`;
      const at = this.expected.indexOf(call);
      if (at >= 0) this.expected.splice(at, 1);
      else if (!this.tolerated.includes(call)) this.problems.push(`unexpected ${call}`);
    });
    page.on("console", (message) => {
      if (message.type() !== "error") return;
      if (/^Failed to load resource: the server responded with a status of \d+/.test(message.text())) return;
      this.problems.push(`console error: ${message.text()}`);
    });
    page.on("pageerror", (error) => this.problems.push(`page error: ${error.message}`));
  }

  /** Every expected failure happened, nothing else failed. */
  async close() {
    await Promise.all(this.contexts.map((c) => c.close()));
    this.contexts.length = 0;
    const left = this.expected;
    this.expected = [];
    this.tolerated = [];
    expect({ problems: this.problems, expectedButNotSeen: left }).toEqual({ problems: [], expectedButNotSeen: [] });
    this.problems.length = 0;
  }
}
