/**
 * Recording evasion and loss (issue 12, finding 8, SSH part; acceptance 4): a real Stint server, the real
 * SSH proxy, a real sshd and the OpenSSH client. What a user sends or sees through the proxy is in the
 * recording, whatever the channel; and a session ended by an administrator's kill, a revoke or the
 * activation's expiry in the middle of output keeps a complete recording whose SHA-256 is the one the
 * audit log holds.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { createServer, type Server as NetServer } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRecording, transcript, type ParsedRecording } from "../../src/contract/recording.js";
import { sshSessionsHarness, type IssuedCertificate, type SshSessionsHarness } from "../../src/testing/ssh-sessions.js";
import { until, untilValue } from "../../src/testing/until.js";

const REPETITIONS = 20;
let h: SshSessionsHarness;
let echo: NetServer;
let echoPort: number;

beforeAll(async () => {
  const users = Array.from({ length: REPETITIONS }, (_, i) => `rec${i}u${Math.floor(Math.random() * 1e6)}`);
  h = await sshSessionsHarness({
    users,
    policy: "    session: { recording: required, portForwarding: true }",
    // A subsystem that is a shell: what an unrecorded subsystem would hide.
    sshdConfig: ["Subsystem stint-hidden /bin/sh"],
  });
  echo = createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", resolve));
  echoPort = (echo.address() as { port: number }).port;
}, 120_000);

afterAll(async () => {
  await new Promise<void>((resolve) => (echo ? echo.close(() => resolve()) : resolve()));
  await h?.cleanup();
}, 60_000);

interface SessionItem {
  id: string;
  user: string;
  live: boolean;
  endReason: string | null;
  recording: { sha256: string | null; bytes: number | null; available: boolean } | null;
}

async function sessionsOf(user: string): Promise<SessionItem[]> {
  const res = await h.admin("GET", "/v1/sessions?limit=1000");
  return (res.body.items as SessionItem[]).filter((s) => s.user === user);
}

async function endedAudit(sessionId: string) {
  const res = await h.admin("GET", "/v1/audit/events?limit=1000&action=session.ended&order=desc");
  const items = res.body.items as { subject: string | null; details: Record<string, unknown> }[];
  return items.find((e) => e.subject === `session:${sessionId}`);
}

/** The stored recording: present under its key (never left .partial), hashing to what the audit log says. */
async function checkedRecording(session: SessionItem): Promise<ParsedRecording> {
  const ended = await untilValue("the session.ended event", () => endedAudit(session.id));
  const recorded = ended.details.recording as { key: string; sha256: string; bytes: number } | null;
  expect(recorded, `session ${session.id} ended without a recording`).not.toBeNull();
  const file = path.join(h.server.config.blobDir, recorded!.key);
  expect(existsSync(`${file}.partial`), "the recording was left .partial").toBe(false);
  const bytes = readFileSync(file);
  expect(createHash("sha256").update(bytes).digest("hex")).toBe(recorded!.sha256);
  expect(bytes.length).toBe(recorded!.bytes);
  const row = (await sessionsOf(session.user)).find((s) => s.id === session.id)!;
  expect(row.recording).toMatchObject({ sha256: recorded!.sha256, available: true });
  // What an auditor replays: through the API, byte for byte, with the same hash.
  const served = await h.server.app.inject({
    method: "GET",
    url: `/v1/sessions/${session.id}/recording`,
    headers: { authorization: h.server.adminAuth },
  });
  expect(served.statusCode).toBe(200);
  expect(served.headers["x-content-sha256"]).toBe(recorded!.sha256);
  expect(createHash("sha256").update(served.rawPayload).digest("hex")).toBe(recorded!.sha256);
  return parseRecording(bytes.toString("utf8"));
}

type Ender = (users: string[], sessions: Map<string, SessionItem>, requests: Map<string, string>) => Promise<void>;

/**
 * Each user streams output (`seq`) through the proxy; `end` ends all of those sessions mid-output. Every
 * recording must be complete and verifiable, and hold at least everything the client printed.
 */
async function endMidOutput(ender: Ender, duration = "10m") {
  const users = h.users;
  const requests = new Map<string, string>();
  const certs = new Map<string, IssuedCertificate>();
  try {
    await Promise.all(
      users.map(async (user) => {
        requests.set(user, await h.activate(user, "web-shell", duration));
        certs.set(user, await h.certify(user));
      }),
    );
    await streamAndEnd(users, certs, requests, ender);
  } finally {
    // The next test activates again.
    for (const id of requests.values())
      await h.admin("POST", `/v1/activation-requests/${id}/revoke`, { reason: "the test is over, next one" });
  }
}

async function streamAndEnd(
  users: string[],
  certs: Map<string, IssuedCertificate>,
  requests: Map<string, string>,
  ender: Ender,
) {
  const clients = users.map((user) => ({
    user,
    ...h.spawnSsh(certs.get(user)!.key, `${user}%web`, ["seq 1 100000000"]),
  }));
  const sessions = new Map<string, SessionItem>();
  for (const user of users) {
    const client = clients.find((c) => c.user === user)!;
    sessions.set(
      user,
      await untilValue(`${user}'s live session`, async () => {
        if (client.child.exitCode !== null) throw new Error(`ssh for ${user} exited: ${client.output()}`);
        return (await sessionsOf(user)).find((s) => s.live);
      }),
    );
  }
  // Output is flowing at every client.
  await until("every client has printed 10 kB", async () => clients.every((c) => c.output().length > 10_000));
  await ender(users, sessions, requests);
  await Promise.all(clients.map((c) => c.exited));
  for (const client of clients) {
    const session = sessions.get(client.user)!;
    const ended = await untilValue(`${client.user}'s session to end`, async () =>
      (await sessionsOf(client.user)).find((s) => s.id === session.id && !s.live),
    );
    expect(ended.endReason).toMatch(/killed|activation_ended/);
    const recording = await checkedRecording(session);
    // What the client printed on stdout (stderr, sshd's or Stint's, arrives through another pipe and could
    // land inside a stdout line in a merged view: a run once saw "2301" + stderr + "4").
    const seen = client.stdout().replace(/\r/g, "");
    const numbers = seen.split("\n").filter((line) => /^\d+$/.test(line));
    expect(numbers.length).toBeGreaterThan(100);
    // Everything the client was shown on stdout is in the recording, in order; the comparison is of the
    // output lines, the client's last one possibly cut short by the end.
    const recorded = transcript(recording)
      .replace(/\r/g, "")
      .split("\n")
      .filter((line) => /^\d+$/.test(line));
    const last = numbers.length - 1;
    const first = numbers.findIndex((line, i) => (i < last ? recorded[i] !== line : !recorded[i]?.startsWith(line)));
    expect(
      first,
      first < 0
        ? ""
        : `line ${first}: the client saw ${JSON.stringify(numbers.slice(Math.max(0, first - 2), first + 3))}, ` +
            `the recording has ${JSON.stringify(recorded.slice(Math.max(0, first - 2), first + 3))} ` +
            `(${recorded.length} recorded lines, ${numbers.length} seen)`,
    ).toBe(-1);
  }
}

describe("recording loss when a session is ended mid-output (finding 8, acceptance 4)", () => {
  it(`an administrator's kill: ${REPETITIONS} sessions keep complete recordings whose SHA-256 matches the audit log`, async () => {
    await endMidOutput(async (users, sessions) => {
      await Promise.all(
        users.map(async (user) => {
          const res = await h.admin("POST", `/v1/sessions/${sessions.get(user)!.id}/kill`, {
            reason: "suspicious output, ending it",
          });
          expect(res.status, JSON.stringify(res.body)).toBe(200);
        }),
      );
    });
  }, 300_000);

  it(`a revoke: ${REPETITIONS} sessions keep complete recordings whose SHA-256 matches the audit log`, async () => {
    await endMidOutput(async (users, _sessions, requests) => {
      await Promise.all(
        users.map(async (user) => {
          const res = await h.admin("POST", `/v1/activation-requests/${requests.get(user)!}/revoke`, {
            reason: "change window closed early",
          });
          expect(res.status, JSON.stringify(res.body)).toBe(200);
        }),
      );
    });
  }, 300_000);

  it(`the activation's expiry: ${REPETITIONS} sessions keep complete recordings whose SHA-256 matches the audit log`, async () => {
    await endMidOutput(async (users, sessions, requests) => {
      // The clock jumps: the activations' expiry is brought to a second from now (setting 20 activations
      // up takes an unknown while on a busy machine, so a short duration would race it). The scheduler
      // then expires them, and their sessions end as at any expiry.
      await h.server.store.db
        .updateTable("activation_requests")
        .set({ expires_at: new Date(Date.now() + 1000) })
        .where("id", "in", [...requests.values()])
        .execute();
      await until(
        "every session has ended at the expiry",
        async () => {
          for (const user of users)
            if ((await sessionsOf(user)).find((s) => s.id === sessions.get(user)!.id)?.live) return false;
          return true;
        },
        60_000,
      );
      const ended = await Promise.all(users.map(async (user) => (await sessionsOf(user))[0]!));
      expect(ended.every((s) => s.endReason === "activation_ended")).toBe(true);
    });
  }, 300_000);
});

describe("recording evasion through tunnels and `ssh -tt 'scp -t; bash'` (finding 8)", () => {
  let user: string;
  let key: string;
  let requestId: string;

  beforeAll(async () => {
    user = h.users[0]!;
    requestId = await h.activate(user, "web-shell");
    key = (await h.certify(user, "web-shell")).key;
  }, 60_000);

  afterAll(async () => {
    await h.admin("POST", `/v1/activation-requests/${requestId}/revoke`, { reason: "the test is over, next one" });
  });

  /** The recording of the user's newest session, once it has ended. */
  async function newest(): Promise<ParsedRecording & { kind: "ssh" }> {
    const session = await untilValue("the session to end", async () => {
      const [latest] = await sessionsOf(user);
      return latest && !latest.live && latest.recording?.available ? latest : undefined;
    });
    const recording = await checkedRecording(session);
    if (recording.kind !== "ssh") throw new Error("not an SSH recording");
    return recording;
  }
  const typed = (r: ParsedRecording & { kind: "ssh" }) =>
    r.frames
      .filter((f) => f.code === "i")
      .map((f) => f.data)
      .join("");

  it("the stdin of an exec channel is recorded (`echo CMD | ssh host sh`)", async () => {
    const result = await h.ssh(key, `${user}%web`, ["sh"], { input: "echo piped-$((6*7))\n" });
    expect(result).toMatchObject({ code: 0, stdout: "piped-42\n" });
    const recording = await newest();
    expect(typed(recording)).toContain("echo piped-$((6*7))");
    expect(transcript(recording)).toContain("piped-42");
  }, 60_000);

  it("`ssh host 'scp -f FILE; sh'` is not taken for scp: the shell behind it is recorded", async () => {
    const result = await h.ssh(key, `${user}%web`, ["scp -f /nonexistent-stint-file; sh"], {
      // scp -f reads one byte (the client's go-ahead) first; the shell behind it takes the rest.
      input: "\0echo hidden-$((6*7))\n",
    });
    expect(result.stdout).toContain("hidden-42");
    const recording = await newest();
    expect(typed(recording)).toContain("echo hidden-$((6*7))");
    expect(transcript(recording)).toContain("hidden-42");
    expect(recording.events.find((e) => e.event === "scp")).toBeUndefined();
  }, 60_000);

  it("`ssh -tt host 'scp -t /tmp; sh'` with a terminal is recorded as the shell it is", async () => {
    const client = h.spawnSsh(key, `${user}%web`, ["scp -t /tmp; sh"], ["-tt"]);
    const stdin = client.child.stdin;
    if (!stdin) throw new Error("ssh was spawned without a stdin pipe");
    // scp -t waits for its protocol: a bad line ends it, and the shell behind it takes the rest.
    stdin.write("X\n");
    await until("the shell has printed something", () => client.output().length > 0, 10_000).catch(() => undefined);
    stdin.write("echo tty-$((6*7)); exit\n");
    await client.exited;
    expect(client.output()).toContain("tty-42");
    const recording = await newest();
    expect(transcript(recording)).toContain("tty-42");
    expect(typed(recording)).toContain("echo tty-$((6*7))");
  }, 60_000);

  it("a subsystem other than sftp (here a shell behind `Subsystem stint-hidden /bin/sh`) never runs unrecorded", async () => {
    const result = await h.ssh(key, `${user}%web`, ["-s", "stint-hidden"], { input: "echo sub-$((6*7))\n" });
    const recording = await newest();
    if (result.stdout.includes("sub-42")) {
      // Relayed: then all of it is in the recording.
      expect(typed(recording)).toContain("echo sub-$((6*7))");
      expect(transcript(recording)).toContain("sub-42");
    } else {
      expect(result.code).not.toBe(0);
      expect(recording.events).toContainEqual(
        expect.objectContaining({ event: "subsystem", name: "stint-hidden", allowed: false }),
      );
    }
  }, 60_000);

  it("the bytes of a port forward (ssh -W) are in the recording, both ways", async () => {
    const result = await h.ssh(key, `${user}%web`, [], {
      extra: ["-W", `127.0.0.1:${echoPort}`],
      input: "through-the-tunnel-4242\n",
      timeoutMs: 5000,
    });
    expect(result.stdout).toContain("through-the-tunnel-4242");
    const recording = await newest();
    const forwarded = recording.events.filter((e) => e.event === "forward_data");
    const bytes = (direction: string) =>
      Buffer.concat(
        forwarded.filter((e) => e.direction === direction).map((e) => Buffer.from(String(e.data), "base64")),
      ).toString();
    expect(bytes("up")).toContain("through-the-tunnel-4242");
    expect(bytes("down")).toContain("through-the-tunnel-4242");
  }, 60_000);
});
