/**
 * The browser terminal end to end (issue 17, acceptance 5, SSH part): the built server with its SSH proxy, a
 * real sshd, Debian's Chromium. From My access a user opens a terminal on an active SSH host role, runs a
 * command and sees its output; the session is the proxy's like any `ssh` one (certificate issued for the
 * activation, session.started / session.ended, recording) and plays back with `stint sessions play`; a revoke
 * ends it within a second and the page says so. Attacks a real browser can make: a page of another origin
 * opening the socket (cross-site WebSocket hijacking), and a flood of messages. The refusals before any
 * session (tokens, roles, sizes) are src/proxies/ssh/web-terminal.test.ts.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCliCaptured } from "../../src/testing/cli-run.js";
import { createGroup, createUser, deleteGroup, deleteUser, startSshd, type Sshd } from "../../src/testing/sshd.js";
import { Guard, launchChromium, signInPage, tokenOf } from "./browser.js";
import { freePort, ROOT, startWebServer, type RunningProcess } from "./support.js";

const ADMIN_PASSWORD = "web-terminal-root-password";
const ANN_PASSWORD = "tulip orbit canyon lantern";
const REASON = "restart the stuck worker on the web host";
const hex = randomBytes(3).toString("hex");
const unixUser = `wt${hex}`;
const wheel = `wtops${hex}`;

let work: string;
let url: string;
let server: RunningProcess;
let sshd: Sshd;
let browser: Browser;
const guard = new Guard(() => browser);

function cli(user: string) {
  return async (args: string[], input?: string) => {
    const result = await runCliCaptured(args, {
      env: { STINT_CONFIG_DIR: path.join(work, `cli-${user}`), STINT_SERVER: url, STINT_TOKEN: "" },
      ...(input !== undefined ? { input } : {}),
    });
    expect(result.code, `stint ${args.join(" ")}\n${result.stdout}\n${result.stderr}`).toBe(0);
    return result.stdout;
  };
}
const admin = () => cli("admin");
const ann = () => cli("ann");

interface SessionItem {
  id: string;
  kind: string;
  user: string;
  role: string;
  requestId: string;
  clientAddress: string | null;
  endedAt: string | null;
  endReason: string | null;
  endDetail: string | null;
}

async function activate(): Promise<string> {
  const out = await ann()(["activate", "web-shell", "--for", "30m", "--reason", REASON, "--wait", "--json"]);
  const request = JSON.parse(out) as { id: string; state: string };
  expect(request.state).toBe("active");
  return request.id;
}

async function showSession(id: string): Promise<SessionItem> {
  return JSON.parse(await admin()(["sessions", "show", id, "--json"])) as SessionItem;
}

/** ann's open web-shell session, in full. */
async function liveSession(): Promise<SessionItem | undefined> {
  const live = JSON.parse(await admin()(["sessions", "list", "--live", "--json"])) as SessionItem[];
  const mine = live.find((s) => s.user === "ann" && s.role === "web-shell");
  return mine && showSession(mine.id);
}

/** axe-core's violations in the open dialog, one line each (the a11y test's rule set). */
async function dialogViolations(page: Page): Promise<string[]> {
  await page.addScriptTag({ path: path.join(ROOT, "node_modules/axe-core/axe.min.js") });
  const options = {
    runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"] },
    resultTypes: ["violations"],
  };
  // (Browser code as text: this project's TypeScript has no DOM types outside web/.)
  const result = (await page.evaluate(
    `axe.run([...document.querySelectorAll('[role="dialog"]')].pop(), ${JSON.stringify(options)})`,
  )) as { violations: { id: string; impact: string; nodes: { target: string[] }[] }[] };
  return result.violations.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join("; ")}`);
}

/** What the page's terminal shows, row by row. */
const screenText = (page: Page) => page.getByTestId("web-terminal").locator(".xterm-rows").innerText();

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), "stint-e2e-terminal-"));
  sshd = await startSshd();
  await createUser(unixUser);
  await createGroup(wheel);
  const sshPort = await freePort();
  ({ server, url } = await startWebServer({
    work,
    env: {
      STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
      STINT_SSH_PROXY_LISTEN: `127.0.0.1:${sshPort}`,
      STINT_RECONCILE_INTERVAL: "0",
    },
  }));
  browser = await launchChromium();

  await admin()(["login", "--user", "admin", "--password-stdin"], `${ADMIN_PASSWORD}\n`);
  await admin()(["users", "create", "ann", "--password-stdin"], `${ANN_PASSWORD}\n`);
  const file = path.join(work, "stint.yaml");
  writeFileSync(
    file,
    `apiVersion: stint/v1
policies:
  - name: recorded
    mfa: { required: false }
    maxDuration: 8h
    session: { recording: required }
targets:
  - name: web
    kind: ssh-host
    address: ssh://root@127.0.0.1:${sshd.port}
    credential: { secret: targets/web/admin }
    identity: { map: { ann: ${unixUser} } }
    options:
      hostKey: "${sshd.hostKeyFingerprint}"
      session: { login: root, secret: ssh/web/root }
roles:
  - name: web-shell
    target: web
    entitlement: { group: ${wheel} }
    policy: recorded
    risk: high
eligibility:
  - role: web-shell
    users: [ann]
`,
  );
  await admin()(["apply", "-f", file]);
  await admin()(["targets", "credential", "web"], sshd.adminPrivateKey);
  await admin()(["secret", "put", "ssh/web/root", "--kind", "ssh-key", "--value-stdin"], sshd.adminPrivateKey);
  await ann()(["login", "--user", "ann", "--password-stdin"], `${ANN_PASSWORD}\n`);
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await server?.kill("SIGTERM");
  await sshd?.stop();
  await deleteUser(unixUser).catch(() => undefined);
  await deleteGroup(wheel).catch(() => undefined);
  if (work) rmSync(work, { recursive: true, force: true });
}, 60_000);

describe("the browser terminal", () => {
  it("runs a command on the SSH target, is recorded, plays back, and a revoke ends it within a second", async () => {
    const requestId = await activate();
    // CSP bypassed only so axe can be injected into the page.
    const context = await guard.context({ width: 1440, height: 900 }, { bypassCSP: true });
    const page = await signInPage(context, url, "ann", ANN_PASSWORD);
    await page.getByRole("button", { name: "Open terminal for web-shell" }).click();
    await expect.poll(() => page.getByTestId("terminal-status").textContent(), { timeout: 20_000 }).toBe("connected");
    await page.getByTestId("web-terminal").click();
    // The shell computes the marker: the typed line alone (echoed) never contains it.
    await page.keyboard.type("echo stint-web-$((6*7))-ok && id -un\n");
    // Both commands' output, waited for together: `id -un` may answer after the echo's line has shown.
    await expect.poll(() => screenText(page), { timeout: 15_000 }).toMatch(/stint-web-42-ok\s+root/);
    // The dialog with a live terminal in it passes axe.
    expect(await dialogViolations(page)).toEqual([]);

    // The proxy's session, like any ssh one: the browser's address, the activation, live.
    const live = await liveSession();
    expect(live).toMatchObject({ kind: "ssh", user: "ann", role: "web-shell", requestId, endedAt: null });
    expect(live!.clientAddress).toBe("127.0.0.1");

    await admin()(["revoke", requestId, "--reason", "change window closed"]);
    const revoked = Date.now();
    await page.getByTestId("terminal-status").getByText("session ended").waitFor({ timeout: 5000 });
    const shown = Date.now();
    // From the revoke's answer to the page saying so (Playwright's polling included).
    expect(shown - revoked).toBeLessThan(1000);
    await expect.poll(() => screenText(page)).toContain("change window closed");
    await expect.poll(async () => (await showSession(live!.id)).endedAt).not.toBeNull();
    const ended = await showSession(live!.id);
    expect(ended!.endReason).toBe("activation_ended");
    expect(ended!.endDetail).toContain("change window closed");

    // Recorded, and the recording replays the command's output.
    const played = await admin()(["sessions", "play", live!.id]);
    expect(played).toContain("stint-web-42-ok");

    // Audited like any session, with the certificate issued for this terminal.
    const events = await admin()(["audit", "list", "--json", "--limit", "500"]);
    const mine = (JSON.parse(events) as { items: { action: string }[] }).items.filter(
      (e) => JSON.stringify(e).includes(live!.id) || JSON.stringify(e).includes(requestId),
    );
    const actions = mine.map((e) => e.action);
    expect(actions).toEqual(expect.arrayContaining(["ssh.certificate_issued", "session.started", "session.ended"]));
    await guard.close();
  }, 90_000);

  it("refuses a page of another origin (cross-site WebSocket hijacking), even with a valid token", async () => {
    await activate();
    const token = await tokenOf(url, "ann", ANN_PASSWORD);
    const certificatesBefore = (
      JSON.parse(await admin()(["audit", "list", "--json", "--action", "ssh.certificate_issued"])) as {
        items: unknown[];
      }
    ).items.length;
    // A plain context: this page is the attacker's, its own requests are not what is judged.
    const context = await browser.newContext();
    const page = await context.newPage();
    // Same server, another origin: http://localhost:<port> is not http://127.0.0.1:<port>.
    await page.goto(url.replace("127.0.0.1", "localhost"));
    const outcome = await page.evaluate(
      ({ socketUrl, token }) =>
        new Promise<{ opened: boolean; code: number; messages: string[] }>((resolve) => {
          const messages: string[] = [];
          let opened = false;
          const socket = new WebSocket(socketUrl);
          socket.onopen = () => {
            opened = true;
            socket.send(JSON.stringify({ type: "auth", token, role: "web-shell", cols: 80, rows: 24 }));
          };
          socket.onmessage = (event) => messages.push(String(event.data));
          socket.onclose = (event) => resolve({ opened, code: event.code, messages });
          // Chromium may report a refused handshake as an error alone.
          socket.onerror = () => setTimeout(() => resolve({ opened, code: 1006, messages }), 500);
        }),
      { socketUrl: `${url.replace("http", "ws")}/v1/ssh/terminals`, token },
    );
    // Refused at the handshake or right after it (4003): never a message, so never a session.
    expect(outcome.messages).toEqual([]);
    expect([1006, 4003]).toContain(outcome.code);
    const issued = JSON.parse(await admin()(["audit", "list", "--json", "--action", "ssh.certificate_issued"])) as {
      items: unknown[];
    };
    expect(issued.items.length).toBe(certificatesBefore);
    await context.close();
  }, 60_000);

  it("cuts off a client that floods the socket with messages (rate limit)", async () => {
    const token = await tokenOf(url, "ann", ANN_PASSWORD);
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(url);
    const outcome = await page.evaluate(
      ({ socketUrl, token }) =>
        new Promise<{ code: number; ready: boolean; error: string | null }>((resolve) => {
          let ready = false;
          let error: string | null = null;
          const socket = new WebSocket(socketUrl);
          socket.onopen = () =>
            socket.send(JSON.stringify({ type: "auth", token, role: "web-shell", cols: 80, rows: 24 }));
          socket.onmessage = (event) => {
            if (typeof event.data !== "string") return;
            const message = JSON.parse(event.data) as { type: string; error?: { code: string } };
            if (message.type === "error") error = message.error?.code ?? null;
            if (message.type !== "ready") return;
            ready = true;
            for (let i = 0; i < 2000; i++)
              socket.send(JSON.stringify({ type: "resize", cols: 80 + (i % 2), rows: 24 }));
          };
          socket.onclose = (event) => resolve({ code: event.code, ready, error });
        }),
      { socketUrl: `${url.replace("http", "ws")}/v1/ssh/terminals`, token },
    );
    expect(outcome).toEqual({ code: 4429, ready: true, error: "RATE_LIMITED" });
    await context.close();
  }, 60_000);
});
