/**
 * Issue 18 acceptance 4, live watching and moderated sessions, end to end: the built server with its SSH
 * proxy, a real sshd, OpenSSH `ssh` driven through tmux, Debian's Chromium through playwright-core, and a
 * Node WebSocket client for the attacks.
 *
 * - An auditor opens a live SSH session in the web UI and sees typed output appear within a second.
 * - A role whose policy names moderators: the user's ssh waits ("waiting for a moderator"), nothing runs
 *   on the host, until a moderator joins in the web UI; Terminate ends the session; the last moderator's
 *   leaving ends one too. Joining, leaving and terminating are audited.
 * - Attacks: a plain user cannot watch, the session's own user cannot moderate (nor watch through it), an
 *   auditor cannot moderate, a watcher cannot send input or terminate, a token in the URL is not read, a
 *   foreign Origin is refused.
 */
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGroup, createUser, deleteGroup, deleteUser, startSshd, type Sshd } from "../../src/testing/sshd.js";
import { apiAs, Guard, launchChromium, signInPage, tokenOf, type Call } from "./browser.js";
import { cli, freePort, startWebServer, type RunningProcess } from "./support.js";

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const hex = randomBytes(3).toString("hex");
const unixUser = `liv${hex}`;
const wheel = `liveops${hex}`;
const tmuxSocket = `stint-live-${hex}`;
const database = `stint_e2e_live_${hex}`;
const reader = `stint_e2e_live_reader_${hex}`;
const ADMIN_PASSWORD = "live-sessions-root-password";
const PASSWORDS = {
  ann: "tulip orbit canyon lantern",
  aud: "maple quartz harbor violet",
  bob: "cedar prism walnut meadow",
  eve: "ember flint hollow saddle",
};
const REASON = "investigating incident 4242 in production";

interface NodeSocket {
  on(event: "message", listener: (data: Buffer) => void): void;
  on(event: "close", listener: (code: number, reason: Buffer) => void): void;
  on(event: "open" | "error", listener: (error?: Error) => void): void;
  send(data: string): void;
  close(): void;
}
const { WebSocket } = createRequire(import.meta.url)("ws") as {
  WebSocket: new (url: string, options: { headers?: Record<string, string> }) => NodeSocket;
};

let work: string;
let url: string;
let server: RunningProcess;
let sshd: Sshd;
let browser: Browser;
let admin: Call;
let sshConfig: string;
let pgRoot: pg.Client;
const guard = new Guard(() => browser);

function as(user: string) {
  return (args: string[], input?: string) =>
    cli(args, {
      env: { STINT_CONFIG_DIR: path.join(work, `cli-${user}`), STINT_SERVER: url, STINT_TOKEN: "" },
      ...(input !== undefined ? { input } : {}),
    });
}
async function ok(user: string, args: string[], input?: string) {
  const result = await as(user)(args, input);
  expect(result.code, `stint ${args.join(" ")}\n${result.stdout}\n${result.stderr}`).toBe(0);
  return result;
}
async function tmux(...args: string[]) {
  return (await run("tmux", ["-L", tmuxSocket, ...args])).stdout;
}
async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => null);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A live-session socket as a client that is not the web UI opens it. */
function openLive(
  id: string,
  options: { origin?: string | null; query?: string } = {},
): {
  socket: NodeSocket;
  messages: string[];
  opened: Promise<void>;
  closed: Promise<{ code: number; reason: string }>;
} {
  const origin = options.origin === undefined ? url : options.origin;
  const socket = new WebSocket(`${url.replace(/^http/, "ws")}/v1/sessions/${id}/live${options.query ?? ""}`, {
    headers: origin === null ? {} : { origin },
  });
  const messages: string[] = [];
  socket.on("message", (data) => messages.push(data.toString("utf8")));
  const opened = new Promise<void>((resolve, reject) => {
    socket.on("open", () => resolve());
    socket.on("error", (error) => reject(error ?? new Error("socket error")));
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.on("close", (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  return { socket, messages, opened, closed };
}

/** Each user signs in once (a password check is scrypt's work on the server, and some waits poll as a user). */
const signedIn = new Map<string, Promise<string>>();
function tokenFor(user: string): Promise<string> {
  let token = signedIn.get(user);
  if (!token) signedIn.set(user, (token = tokenOf(url, user, PASSWORDS[user as keyof typeof PASSWORDS])));
  return token;
}

async function liveAs(user: string, id: string, mode: "watch" | "moderate") {
  const token = await tokenFor(user);
  const live = openLive(id);
  await live.opened;
  live.socket.send(JSON.stringify({ type: "auth", token, mode }));
  return live;
}

async function watchable(user: string) {
  const res = await fetch(`${url}/v1/sessions/live`, { headers: { authorization: `Bearer ${await tokenFor(user)}` } });
  expect(res.status).toBe(200);
  return ((await res.json()) as { items: unknown }).items as {
    id: string;
    user: string;
    role: string;
    mayModerate: boolean;
    moderation: unknown;
  }[];
}

async function auditActions(): Promise<{ action: string; subject: string | null; outcome: string; actor: string }[]> {
  const res = await admin("GET", "/v1/audit/events?limit=500");
  expect(res.status).toBe(200);
  return res.body.items as { action: string; subject: string | null; outcome: string; actor: string }[];
}

async function activateAndCertify(role: string) {
  await ok("ann", ["activate", role, "--for", "30m", "--reason", REASON, "--wait", "--json"]);
  await ok("ann", ["ssh", "login", role, "--json", "--no-agent"]);
}

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), "stint-e2e-live-"));
  pgRoot = new pg.Client({ connectionString: "postgres://postgres@127.0.0.1:5432/postgres" });
  await pgRoot.connect();
  await pgRoot.query(`create database ${database}`);
  await pgRoot.query(`create role ${reader} nologin`);
  sshd = await startSshd();
  await createUser(unixUser);
  await createGroup(wheel);
  const sshPort = await freePort();
  const pgPort = await freePort();
  ({ server, url } = await startWebServer({
    work,
    env: {
      STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
      STINT_SSH_PROXY_LISTEN: `127.0.0.1:${sshPort}`,
      STINT_PG_PROXY_LISTEN: `127.0.0.1:${pgPort}`,
      STINT_FOUR_EYES_TIERS: "none",
      STINT_RECONCILE_INTERVAL: "0",
    },
  }));
  admin = await apiAs(url, "admin", ADMIN_PASSWORD);
  for (const [name, password] of Object.entries(PASSWORDS)) {
    const platformRoles = name === "aud" ? ["auditor"] : ["user"];
    expect((await admin("POST", "/v1/users", { name, password, platformRoles })).status).toBe(201);
  }
  expect((await admin("POST", "/v1/groups", { name: "sec" })).status).toBe(201);
  // ann is in the moderators' group too: she still never moderates her own session.
  for (const principal of ["bob", "ann"])
    expect((await admin("POST", "/v1/groups/sec/members", { principal })).status).toBe(200);

  const target = (name: string) => `  - name: ${name}
    kind: ssh-host
    address: ssh://root@127.0.0.1:${sshd.port}
    credential: { secret: targets/${name}/admin }
    identity: { map: { ann: ${unixUser} } }
    options:
      hostKey: "${sshd.hostKeyFingerprint}"
      session: { login: root, secret: ssh/${name}/root }
`;
  const applied = await admin("POST", "/v1/config/apply", {
    yaml: `apiVersion: stint/v1
policies:
  - name: recorded
    mfa: { required: false }
    maxDuration: 8h
    session: { recording: required }
  - name: moderated
    mfa: { required: false }
    maxDuration: 8h
    session: { recording: required, moderator: { groups: [sec] } }
targets:
${target("web")}${target("vault-host")}  - name: app-db
    kind: postgres
    address: postgres://postgres@127.0.0.1:5432/${database}?sslmode=disable
roles:
  - name: web-shell
    target: web
    entitlement: { group: ${wheel} }
    policy: recorded
    risk: medium
  - name: vault-shell
    target: vault-host
    entitlement: { group: ${wheel} }
    policy: moderated
    risk: medium
  - name: app-db-reader
    target: app-db
    entitlement: { role: ${reader}, dynamic: true }
    policy: recorded
    risk: medium
  - name: app-db-moderated
    target: app-db
    entitlement: { role: ${reader}, dynamic: true }
    policy: moderated
    risk: medium
eligibility:
  - role: app-db-reader
    users: [ann]
  - role: app-db-moderated
    users: [ann]
  - role: web-shell
    users: [ann]
  - role: vault-shell
    users: [ann]
`,
  });
  expect(applied.status, JSON.stringify(applied.body)).toBe(200);
  await ok("admin", ["login", "--user", "admin", "--password-stdin"], `${ADMIN_PASSWORD}\n`);
  for (const name of ["web", "vault-host"]) {
    await ok("admin", ["targets", "credential", name], sshd.adminPrivateKey);
    await ok(
      "admin",
      ["secret", "put", `ssh/${name}/root`, "--kind", "ssh-key", "--value-stdin"],
      sshd.adminPrivateKey,
    );
  }
  await ok("ann", ["login", "--user", "ann", "--password-stdin"], `${PASSWORDS.ann}\n`);
  const config = JSON.parse((await ok("ann", ["ssh", "config", "--json"])).stdout) as { config: string };
  sshConfig = path.join(work, "ssh_config");
  writeFileSync(sshConfig, `${config.config}  BatchMode yes\n`);
  browser = await launchChromium();
}, 240_000);

afterAll(async () => {
  await run("tmux", ["-L", tmuxSocket, "kill-server"]).catch(() => undefined);
  await browser?.close();
  await server?.kill("SIGTERM");
  await sshd?.stop();
  await deleteUser(unixUser).catch(() => undefined);
  await deleteGroup(wheel).catch(() => undefined);
  if (pgRoot) {
    await pgRoot.query(`drop database if exists ${database} with (force)`).catch(() => undefined);
    const minted = await pgRoot.query<{ rolname: string }>(
      "select rolname from pg_roles where rolname like 'stint_ann_%'",
    );
    for (const r of minted.rows) await pgRoot.query(`drop role if exists ${r.rolname}`).catch(() => undefined);
    await pgRoot.query(`drop role if exists ${reader}`).catch(() => undefined);
    await pgRoot.end();
  }
  if (work) rmSync(work, { recursive: true, force: true });
}, 60_000);

describe("watching a live SSH session", () => {
  it("an auditor sees typed output appear within a second", async () => {
    await activateAndCertify("web-shell");
    await tmux("new-session", "-d", "-s", "watched", "-x", "100", "-y", "30", `ssh -F ${sshConfig} -tt ann%web@stint`);
    await tmux("set-option", "-g", "remain-on-exit", "on");
    await waitFor("a shell prompt", async () => /[#$] ?$/m.test(await tmux("capture-pane", "-p", "-t", "watched")));

    const context = await guard.context();
    const page = await signInPage(context, url, "aud", PASSWORDS.aud);
    await page.getByRole("link", { name: "Live sessions" }).click();
    await page.getByRole("button", { name: /^Watch session .* of ann$/ }).click();
    const terminal = page.getByTestId("live-terminal");
    await page.getByText("watching, read-only").waitFor();
    await page.locator(".xterm-rows").waitFor();
    await page.getByText("live", { exact: true }).waitFor();

    const marker = `seen-${hex}`;
    await tmux("send-keys", "-t", "watched", `echo ${marker}-$((6*7))`, "Enter");
    const sentAt = Date.now();
    // The command's output (not the echoed keystrokes: those say $((6*7))) shows in the auditor's terminal.
    await terminal.getByText(`${marker}-42`, { exact: false }).first().waitFor({ timeout: 5_000 });
    const seenAfterMs = Date.now() - sentAt;
    expect(seenAfterMs).toBeLessThan(1000);
    console.log(`live output seen in the browser ${seenAfterMs} ms after tmux sent the keys`);

    await tmux("send-keys", "-t", "watched", "exit", "Enter");
    await page.getByText(/The session ended/).waitFor();
    await guard.close();
    const events = await auditActions();
    expect(events).toContainEqual(expect.objectContaining({ action: "session.watch_started", actor: "aud" }));
    expect(events).toContainEqual(expect.objectContaining({ action: "session.watch_ended", actor: "aud" }));
    await ok("ann", ["deactivate", "web-shell"]);
  });
});

describe("watching a live PostgreSQL session", () => {
  it("streams the query log: each statement as it is sent, then its result", async () => {
    await ok("ann", ["activate", "app-db-reader", "--for", "30m", "--reason", REASON, "--wait", "--json"]);
    const login = JSON.parse((await ok("ann", ["db", "login", "app-db-reader", "--json"])).stdout) as {
      host: string;
      port: number;
      database: string;
      user: string;
      password: string;
    };
    const psql = spawn(
      "psql",
      ["-X", "-h", login.host, "-p", String(login.port), "-U", login.user, "-d", login.database],
      { env: { ...process.env, PGPASSWORD: login.password }, stdio: ["pipe", "pipe", "pipe"] },
    );
    let output = "";
    psql.stdout.on("data", (c: Buffer) => (output += c.toString()));
    try {
      psql.stdin.write("select 'before-' || 6*7;\n");
      await waitFor("psql to answer", async () => output.includes("before-42"));
      const [item] = await waitFor("the session in the live list", async () =>
        (await watchable("aud")).filter((s) => s.role === "app-db-reader"),
      );
      const watcher = await liveAs("aud", item!.id, "watch");
      await waitFor("hello", async () => watcher.messages.some((m) => m.includes('"type":"hello"')));
      // The joining watcher gets the log's header and the statement before it joined (a frame of its own after hello).
      await waitFor("the backlog", async () => watcher.messages.join("").includes("before-"));
      psql.stdin.write("select 'while-watched-' || 6*7;\n");
      const lines = () =>
        watcher.messages
          .flatMap((m) => (m.endsWith("\n") ? m.split("\n") : []))
          .filter((line) => line !== "")
          .map((line) => JSON.parse(line) as Record<string, unknown>);
      const sent = await waitFor("the statement in the stream", async () =>
        lines().find((line) => String(line.statement).includes("while-watched-")),
      );
      // Logged when sent (before the server ran it); its result names it when it comes.
      expect(sent).toMatchObject({ sent: expect.any(Number) });
      const result = await waitFor("its result", async () => lines().find((line) => line.of === sent.sent));
      expect(result).toMatchObject({ command: "SELECT", rows: 1, error: null });
    } finally {
      psql.stdin.end();
      psql.kill();
    }
  });
});

describe("a moderated database session", () => {
  it("is refused: only SSH sessions can wait for a moderator", async () => {
    await ok("ann", ["activate", "app-db-moderated", "--for", "30m", "--reason", REASON, "--wait", "--json"]);
    const login = JSON.parse((await ok("ann", ["db", "login", "app-db-moderated", "--json"])).stdout) as {
      host: string;
      port: number;
      database: string;
      user: string;
      password: string;
    };
    const refused = await run(
      "psql",
      ["-X", "-h", login.host, "-p", String(login.port), "-U", login.user, "-d", login.database, "-c", "select 1"],
      { env: { ...process.env, PGPASSWORD: login.password, PGCONNECT_TIMEOUT: "5" } },
    ).then(
      () => "",
      (error: { stderr?: string }) => error.stderr ?? "",
    );
    expect(refused).toContain("only SSH sessions can be moderated");
    await ok("ann", ["deactivate", "app-db-moderated"]);
  });
});

describe("a moderated SSH session", () => {
  const marker = path.join(tmpdir(), `stint-moderated-${hex}`);
  let sessionId: string;

  it("waits for a moderator: ssh says so and nothing runs on the host", async () => {
    await activateAndCertify("vault-shell");
    await tmux(
      "new-session",
      "-d",
      "-s",
      "moderated",
      "-x",
      "100",
      "-y",
      "30",
      `ssh -F ${sshConfig} -tt ann%vault-host@stint`,
    );
    await tmux("set-option", "-g", "remain-on-exit", "on");
    await waitFor("the waiting message", async () =>
      (await tmux("capture-pane", "-p", "-t", "moderated")).includes("waiting for a moderator"),
    );
    // Typed ahead: it waits in the proxy with the channel, and runs only once a moderator is there.
    await tmux("send-keys", "-t", "moderated", `touch ${marker}`, "Enter");
    const items = await waitFor("the session in the live list", async () =>
      (await watchable("bob")).filter((s) => s.role === "vault-shell"),
    );
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ user: "ann", mayModerate: true, moderation: { admitted: false } });
    sessionId = items[0]!.id;
    await sleep(500);
    expect(existsSync(marker)).toBe(false);
    expect(await tmux("capture-pane", "-p", "-t", "moderated")).not.toMatch(/[#$] ?$/m);
  });

  it("refuses the attacks: plain user, self-moderation, auditor moderating, input, token in the URL, foreign Origin", async () => {
    // A watcher (the auditor) sees the waiting session: no terminal output yet.
    const watcher = await liveAs("aud", sessionId, "watch");
    await waitFor("hello", async () => watcher.messages.some((m) => m.includes('"type":"hello"')));
    expect(watcher.messages.join("")).not.toContain('"o"');

    const eve = await liveAs("eve", sessionId, "watch");
    expect((await eve.closed).code).toBe(4403);
    expect(eve.messages.join("")).toContain("FORBIDDEN");
    expect((await watchable("eve")).map((s) => s.id)).not.toContain(sessionId);

    const self = await liveAs("ann", sessionId, "moderate");
    expect((await self.closed).code).toBe(4403);
    expect(self.messages.join("")).toContain("SELF_MODERATION");
    const selfWatch = await liveAs("ann", sessionId, "watch");
    expect((await selfWatch.closed).code).toBe(4403);

    const auditorModerates = await liveAs("aud", sessionId, "moderate");
    expect((await auditorModerates.closed).code).toBe(4403);

    // The token in the URL is never read: without an auth message the socket is refused.
    const token = await tokenOf(url, "aud", PASSWORDS.aud);
    const inUrl = openLive(sessionId, {
      query: `?token=${encodeURIComponent(token)}&access_token=${encodeURIComponent(token)}`,
    });
    await inUrl.opened;
    inUrl.socket.send(JSON.stringify({ type: "watch" }));
    expect((await inUrl.closed).code).toBe(4401);
    expect(inUrl.messages.join("")).not.toContain("hello");

    for (const origin of ["http://evil.example", null]) {
      const foreign = openLive(sessionId, { origin });
      await foreign.opened;
      foreign.socket.send(JSON.stringify({ type: "auth", token, mode: "watch" }));
      expect((await foreign.closed).code).toBe(4003);
      expect(foreign.messages).toEqual([]);
    }

    // A watcher is read-only: input and terminate close its socket, and the session waits on.
    watcher.socket.send(JSON.stringify({ type: "input", data: `touch ${marker}\n` }));
    expect((await watcher.closed).code).toBe(4400);
    const second = await liveAs("aud", sessionId, "watch");
    await waitFor("hello", async () => second.messages.some((m) => m.includes('"type":"hello"')));
    second.socket.send(JSON.stringify({ type: "terminate" }));
    expect((await second.closed).code).toBe(4400);

    expect(existsSync(marker)).toBe(false);
    const [still] = (await watchable("bob")).filter((s) => s.id === sessionId);
    expect(still).toMatchObject({ moderation: { admitted: false } });
    const events = await auditActions();
    expect(events).toContainEqual(
      expect.objectContaining({ action: "session.moderator_refused", actor: "ann", outcome: "denied" }),
    );
    expect(events).toContainEqual(
      expect.objectContaining({ action: "session.watch_refused", actor: "eve", outcome: "denied" }),
    );
  });

  it("starts when the moderator joins in the web UI and ends when they terminate it", async () => {
    const watcher = await liveAs("aud", sessionId, "watch");
    const context = await guard.context();
    const page = await signInPage(context, url, "bob", PASSWORDS.bob);
    await page.getByRole("link", { name: "Live sessions" }).click();
    await page.getByText("waiting for a moderator").waitFor();
    await page.getByRole("button", { name: /^Moderate session .* of ann$/ }).click();
    await page.getByText("you are moderating").waitFor();
    await page
      .getByTestId("moderation")
      .getByText(/Moderated by: bob/)
      .waitFor();

    await waitFor("the moderator's arrival in ssh", async () =>
      (await tmux("capture-pane", "-p", "-t", "moderated")).includes("bob joined as moderator"),
    );
    await waitFor("the typed-ahead command to run", async () => existsSync(marker));
    await tmux("send-keys", "-t", "moderated", `echo moderated-$((6*7))`, "Enter");
    await page.getByTestId("live-terminal").getByText("moderated-42").first().waitFor();
    await waitFor("the watcher to see it", async () => watcher.messages.join("").includes("moderated-42"));

    await page.getByRole("button", { name: "Terminate session" }).click();
    await waitFor(
      "ssh to end",
      async () => (await tmux("display-message", "-p", "-t", "moderated", "#{pane_dead}")).trim() === "1",
    );
    expect(await tmux("capture-pane", "-p", "-t", "moderated")).toContain("bob ended this session");
    await page.getByText(/The session ended/).waitFor();
    expect((await watcher.closed).code).toBe(1000);
    await guard.close();

    const session = await admin("GET", `/v1/sessions/${sessionId}`);
    expect(session.body).toMatchObject({ live: false, endReason: "killed", endedBy: "bob" });
    const events = (await auditActions()).filter((e) => e.subject === `session:${sessionId}`);
    expect(events).toContainEqual(expect.objectContaining({ action: "session.moderator_joined", actor: "bob" }));
    expect(events).toContainEqual(expect.objectContaining({ action: "session.moderator_terminated", actor: "bob" }));
    expect(events).toContainEqual(expect.objectContaining({ action: "session.ended" }));
  });

  it("ends when the last moderator leaves", async () => {
    await tmux("kill-session", "-t", "moderated").catch(() => undefined);
    await tmux(
      "new-session",
      "-d",
      "-s",
      "again",
      "-x",
      "100",
      "-y",
      "30",
      `ssh -F ${sshConfig} -tt ann%vault-host@stint`,
    );
    await waitFor("the waiting message", async () =>
      (await tmux("capture-pane", "-p", "-t", "again")).includes("waiting for a moderator"),
    );
    const [item] = await waitFor("the session", async () =>
      (await watchable("bob")).filter((s) => s.role === "vault-shell"),
    );
    const bob = await liveAs("bob", item!.id, "moderate");
    await waitFor("a shell prompt", async () => /[#$] ?$/m.test(await tmux("capture-pane", "-p", "-t", "again")));
    bob.socket.close();
    await waitFor(
      "ssh to end",
      async () => (await tmux("display-message", "-p", "-t", "again", "#{pane_dead}")).trim() === "1",
    );
    expect(await tmux("capture-pane", "-p", "-t", "again")).toContain("the last moderator, left");
    const events = (await auditActions()).filter((e) => e.subject === `session:${item!.id}`);
    expect(events).toContainEqual(expect.objectContaining({ action: "session.moderator_left", actor: "bob" }));
  });
});
