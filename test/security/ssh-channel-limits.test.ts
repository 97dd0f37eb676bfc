/**
 * Class: one signed-in SSH connection holding the proxy's and the target's resources without bound.
 *
 * Each session channel, forwarded connection and remote-forward listener costs the proxy buffers and the
 * target a process, a socket or a listening port; the proxy opened as many as the client asked for on one
 * connection (the per-address connection cap does not see them). Now each connection holds at most
 * STINT_SSH_PROXY_MAX_SESSIONS session channels (10) and STINT_SSH_PROXY_MAX_FORWARDS forwarded
 * connections and remote forwards (32) at once: more are refused with a sentence, the first refusal of
 * each kind is recorded and audited once, and the connection goes on. A session channel takes at most 128
 * environment variables (as OpenSSH's sshd).
 *
 * A real Stint server, the real SSH proxy, a real sshd (MaxSessions 100: the target alone would not stop
 * them) and an ssh2 client signed in with an issued certificate.
 */
import { existsSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import path from "node:path";
import type { Client as SshClient, ClientChannel } from "ssh2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditedFor, newestEnded, replayed, until } from "../../src/testing/ssh-recordings.js";
import { sshSessionsHarness, type SshSessionsHarness } from "../../src/testing/ssh-sessions.js";
import { sshClientWithCertificate } from "../../src/testing/ssh2-certificate-client.js";

const ATTEMPTS = 40;
let h: SshSessionsHarness;
let user: string;
let key: string;
let echo: Server;
let echoPort: number;
const echoed = new Set<Socket>();

beforeAll(async () => {
  h = await sshSessionsHarness({
    policy: "    session: { recording: required, portForwarding: true }",
    sshdConfig: ["MaxSessions 100"],
  });
  user = h.users[0]!;
  await h.activate(user, "web-shell");
  key = (await h.certify(user, "web-shell")).key;
  echo = createServer((socket) => {
    echoed.add(socket);
    socket.on("close", () => echoed.delete(socket));
    socket.on("error", () => undefined);
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", resolve));
  echoPort = (echo.address() as { port: number }).port;
}, 120_000);

afterAll(async () => {
  await new Promise<void>((resolve) => echo?.close(() => resolve()));
  await h?.cleanup();
}, 60_000);

type Opened<T> = { ok: T } | { error: Error };

function execChannel(client: SshClient, command: string, env?: Record<string, string>): Promise<Opened<ClientChannel>> {
  return new Promise((resolve) =>
    client.exec(command, env ? { env } : {}, (error, channel) => {
      // Read (and drop) its output, or the channel never ends.
      channel?.resume();
      resolve(error ? { error } : { ok: channel });
    }),
  );
}

function directForward(client: SshClient): Promise<Opened<ClientChannel>> {
  return new Promise((resolve) =>
    client.forwardOut("127.0.0.1", 40_000, "127.0.0.1", echoPort, (error, channel) =>
      resolve(error ? { error } : { ok: channel }),
    ),
  );
}

function remoteForward(client: SshClient): Promise<Opened<number>> {
  return new Promise((resolve) =>
    client.forwardIn("127.0.0.1", 0, (error, port) => resolve(error ? { error } : { ok: port })),
  );
}

const opened = <T>(all: Opened<T>[]) => all.filter((one): one is { ok: T } => "ok" in one).map((one) => one.ok);
const refusals = <T>(all: Opened<T>[]) =>
  all.filter((one): one is { error: Error } => "error" in one).map((one) => one.error.message);

/** Output of a command on a new channel of the same connection (the connection was kept). */
async function run(client: SshClient, command: string): Promise<string> {
  const channel = await execChannel(client, command);
  if (!("ok" in channel)) throw channel.error;
  let out = "";
  channel.ok.on("data", (data: Buffer) => (out += data.toString()));
  await new Promise((resolve) => channel.ok.on("close", resolve));
  return out;
}

async function endSession(client: SshClient) {
  client.end();
  return newestEnded(h, user);
}

describe("one connection's channels", () => {
  it(`${ATTEMPTS} session channels at once: 10 open, the rest refused, audited once; the connection goes on`, async () => {
    const client = await sshClientWithCertificate(h.proxyPort, `${user}%web`, key);
    const all = await Promise.all(Array.from({ length: ATTEMPTS }, () => execChannel(client, "cat")));
    const channels = opened(all);
    // Before: all 40 opened, 40 `cat` processes on the target.
    expect(channels.length).toBe(10);
    expect(refusals(all)).toHaveLength(ATTEMPTS - 10);
    expect(refusals(all)[0]).toContain("STINT_SSH_PROXY_MAX_SESSIONS");
    for (const channel of channels) channel.end();
    await Promise.all(channels.map((channel) => new Promise((resolve) => channel.on("close", resolve))));
    // Closed channels give their place back.
    expect(await run(client, "echo still-here")).toBe("still-here\n");
    const ended = await endSession(client);
    const audited = await auditedFor(h, "session.channel_refused", ended.session.id);
    expect(audited.filter((event) => event.details.subsystem === "session")).toHaveLength(1);
    const recording = await replayed(h, ended);
    expect(recording.events.filter((event) => event.event === "channel_limit")).toHaveLength(1);
  }, 120_000);

  it("session channels closed before they started give their place back (OpenSSH multiplexing on one connection)", async () => {
    const control = path.join(h.dir, `control-${Date.now()}`);
    const master = h.spawnSsh(key, `${user}%web`, [], ["-M", "-S", control, "-N"]);
    try {
      await until("the master connection", () => existsSync(control), 30_000);
      // Each opens a session channel on the master's connection; the proxy refuses the subsystem, the client closes it.
      for (let i = 0; i < 15; i++) {
        const refused = await h.ssh(key, `${user}%web`, ["not-sftp"], {
          extra: ["-S", control, "-s"],
          timeoutMs: 30_000,
        });
        expect(refused.code).not.toBe(0);
      }
      const after = await h.ssh(key, `${user}%web`, ["echo still-here"], { extra: ["-S", control], timeoutMs: 30_000 });
      expect(after.stdout).toBe("still-here\n");
    } finally {
      master.child.kill();
      await master.exited;
    }
  }, 120_000);

  it(`${ATTEMPTS * 2} forwarded connections at once: 32 reach the target's side, the rest refused`, async () => {
    const client = await sshClientWithCertificate(h.proxyPort, `${user}%web`, key);
    const all = await Promise.all(Array.from({ length: ATTEMPTS * 2 }, () => directForward(client)));
    const channels = opened(all);
    // Before: all 80 opened, each a TCP connection from the target.
    expect(channels.length).toBe(32);
    expect(refusals(all)[0]).toContain("STINT_SSH_PROXY_MAX_FORWARDS");
    await until("the forwarded connections to reach the echo server", () => echoed.size === 32);
    for (const channel of channels) channel.close();
    await until("the forwarded connections to close", () => echoed.size === 0);
    const again = await directForward(client);
    expect("ok" in again).toBe(true);
    if ("ok" in again) again.ok.close();
    const ended = await endSession(client);
    const audited = await auditedFor(h, "session.channel_refused", ended.session.id);
    expect(audited.filter((event) => event.details.subsystem === "direct-tcpip")).toHaveLength(1);
  }, 120_000);

  it(`${ATTEMPTS * 2} remote forwards: 32 ports listen on the target, the rest refused`, async () => {
    const client = await sshClientWithCertificate(h.proxyPort, `${user}%web`, key);
    const all = await Promise.all(Array.from({ length: ATTEMPTS * 2 }, () => remoteForward(client)));
    // Before: 80 ports listening on the target for this one connection.
    const ports = opened(all);
    expect(ports.length).toBe(32);
    // A cancelled one gives its place back.
    await new Promise<void>((resolve, reject) =>
      client.unforwardIn("127.0.0.1", ports[0]!, (error) => (error ? reject(error) : resolve())),
    );
    expect("ok" in (await remoteForward(client))).toBe(true);
    await endSession(client);
  }, 120_000);

  it("a session channel takes at most 128 environment variables", async () => {
    const client = await sshClientWithCertificate(h.proxyPort, `${user}%web`, key);
    const env = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`LC_X${i}`, "v".repeat(1000)]));
    const channel = await execChannel(client, "echo done", env);
    if (!("ok" in channel)) throw channel.error;
    await new Promise((resolve) => channel.ok.on("close", resolve));
    const ended = await endSession(client);
    const recording = await replayed(h, ended);
    // Before: all 300 taken, held and recorded.
    expect(recording.events.filter((event) => event.event === "env")).toHaveLength(128);
  }, 120_000);
});
