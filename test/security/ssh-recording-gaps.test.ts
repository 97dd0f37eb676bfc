/**
 * What an SSH session through the proxy could still keep out of its recording: a real Stint server, the
 * real SSH proxy, a real sshd (configured as Debian and Ubuntu ship it: `AcceptEnv LANG LC_*`) and the
 * OpenSSH client.
 * - Environment variables the client sets (`SetEnv`, `SendEnv`) reach the target's shell: a command line
 *   `eval "$LC_X"` runs what the variable holds, so the variable must be in the recording.
 * - SFTP requests the proxy's tracker could not remember (4,096 already waiting for the server's answer)
 *   ran on the target with no event in the recording.
 * - A recordings disk that fills up mid-session (the user's own output can fill it) ends a session under
 *   `recording: required`, and must not take what was recorded before with it.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, open, readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRecording, transcript, type ParsedRecording } from "../../src/contract/recording.js";
import { sftpPacket } from "../../src/testing/ssh-recordings.js";
import { sshSessionsHarness, type SshSessionsHarness } from "../../src/testing/ssh-sessions.js";
import { until, untilValue } from "../../src/testing/until.js";

let h: SshSessionsHarness;
let user: string;
let key: string;

beforeAll(async () => {
  h = await sshSessionsHarness({
    policy: "    session: { recording: required }",
    // Debian's and Ubuntu's sshd_config: the client's locale variables are accepted.
    sshdConfig: ["AcceptEnv LANG LC_*", "Subsystem sftp /usr/lib/openssh/sftp-server"],
  });
  user = h.users[0]!;
  await h.activate(user, "web-shell");
  key = (await h.certify(user, "web-shell")).key;
}, 120_000);

afterAll(async () => {
  await h?.cleanup();
}, 60_000);

interface SessionItem {
  id: string;
  live: boolean;
  endReason: string | null;
}

/** How long a wait may take (until()'s default is 20 s). */
const WAIT_MS = 30_000;

/** The user's newest session once ended, its `session.ended` recording, and the file that recording names. */
async function newestEnded() {
  const session = await untilValue("the session to end", async () => {
    const items = (await h.admin("GET", "/v1/sessions?limit=100")).body.items as (SessionItem & { user: string })[];
    const [latest] = items.filter((s) => s.user === user);
    return latest && !latest.live ? latest : undefined;
  });
  const ended = await untilValue("the session.ended event", async () => {
    const res = await h.admin("GET", "/v1/audit/events?limit=100&action=session.ended&order=desc");
    const items = res.body.items as { subject: string | null; details: Record<string, unknown> }[];
    return items.find((e) => e.subject === `session:${session.id}`);
  });
  return { session, recording: ended.details.recording as Record<string, unknown> | null };
}

/** The recording an auditor replays: served under its key, hashing to what the audit log holds. */
async function replayed(sessionId: string, recorded: { key: string; sha256: string; bytes: number }) {
  const bytes = readFileSync(path.join(h.server.config.blobDir, recorded.key));
  expect(createHash("sha256").update(bytes).digest("hex")).toBe(recorded.sha256);
  expect(bytes.length).toBe(recorded.bytes);
  const served = await h.server.app.inject({
    method: "GET",
    url: `/v1/sessions/${sessionId}/recording`,
    headers: { authorization: h.server.adminAuth },
  });
  expect(served.statusCode).toBe(200);
  expect(served.headers["x-content-sha256"]).toBe(recorded.sha256);
  const parsed = parseRecording(bytes.toString("utf8"));
  if (parsed.kind !== "ssh") throw new Error("not an SSH recording");
  return parsed as ParsedRecording & { kind: "ssh" };
}

describe("environment variables are recorded", () => {
  it("`ssh -o SetEnv=LC_X=… host 'eval \"$LC_X\"'`: what the variable ran is in the recording", async () => {
    const result = await h.ssh(key, `${user}%web`, ['eval "$LC_STINT"'], {
      extra: ["-o", 'SetEnv=LC_STINT="echo hidden-$((6*7))"'],
    });
    // The variable reached the target's shell and ran there.
    expect(result.stdout.trim()).toBe("hidden-42");
    const { session, recording } = await newestEnded();
    expect(recording).not.toBeNull();
    const cast = await replayed(session.id, recording as { key: string; sha256: string; bytes: number });
    expect(transcript(cast)).toContain("hidden-42");
    // Before: the recording held `eval "$LC_STINT"` and its output, never what it evaluated.
    expect(cast.events).toContainEqual(
      expect.objectContaining({ event: "env", name: "LC_STINT", value: "echo hidden-$((6*7))" }),
    );
  }, 60_000);
});

describe("a recordings disk that fills up (recording: required)", () => {
  it("ends the session and keeps what reached the disk, under the SHA-256 the audit log holds", async () => {
    // A real full disk: a small tmpfs over the recordings directory. Needs root (mount).
    const recordings = path.join(h.server.config.blobDir, "recordings");
    await mkdir(recordings, { recursive: true });
    if (spawnSync("mount", ["-t", "tmpfs", "-o", "size=3m", "tmpfs", recordings]).status !== 0) {
      console.warn("skipped: cannot mount a tmpfs here (needs root)");
      return;
    }
    try {
      const client = h.spawnSsh(key, `${user}%web`, ["sh"]);
      const stdin = client.child.stdin!;
      stdin.write("echo did-something-$((6*7))\n");
      await until("the command's output has arrived", () => client.stdout().includes("did-something-42"), WAIT_MS);
      // What the user did is on the recordings disk (the .partial file of the live session).
      await until(
        "the recording on disk holds the command",
        async () => {
          const files = (await readdir(recordings, { recursive: true })).map(String);
          const partial = files.find((f) => f.endsWith(".partial"));
          return (
            partial !== undefined &&
            (await readFile(path.join(recordings, partial), "utf8")).includes("did-something-42")
          );
        },
        WAIT_MS,
      );
      // Then output that fills the disk: the recording's next write fails.
      stdin.write("head -c 20000000 /dev/zero | tr '\\0' y\n");
      expect(await client.exited).not.toBe(0);

      const { session, recording } = await newestEnded();
      expect(session.endReason).toBe("recording_failed");
      // Before: `recording: null`, the file left `.partial` and never served: the whole session gone.
      expect(recording).toMatchObject({ partial: true });
      const kept = recording as { key: string; sha256: string; bytes: number };
      expect(existsSync(path.join(h.server.config.blobDir, `${kept.key}.partial`))).toBe(false);
      const cast = await replayed(session.id, kept);
      expect(cast.frames.some((f) => f.code === "i" && f.data.includes("echo did-something-$((6*7))"))).toBe(true);
      expect(transcript(cast)).toContain("did-something-42");
    } finally {
      spawnSync("umount", ["-l", recordings]); // lazily: a writer may still hold a file there
    }
  }, 120_000);
});

async function bytesUp(): Promise<number> {
  const metric = await h.server.registry.getSingleMetric("stint_session_bytes_total")?.get();
  return (metric?.values ?? [])
    .filter((v) => v.labels.kind === "ssh" && v.labels.direction === "up")
    .reduce((sum, v) => sum + v.value, 0);
}

describe("after a required recording failed", () => {
  it("nothing more is relayed: a command sent in the kill's grace period never reaches the target", async () => {
    const recordings = path.join(h.server.config.blobDir, "recordings");
    await mkdir(recordings, { recursive: true });
    if (spawnSync("mount", ["-t", "tmpfs", "-o", "size=3m", "tmpfs", recordings]).status !== 0) {
      console.warn("skipped: cannot mount a tmpfs here (needs root)");
      return;
    }
    const marker = `/tmp/stint-unrecorded-${Math.random().toString(36).slice(2)}`;
    try {
      const failures = async () =>
        ((await h.server.registry.getSingleMetric("stint_session_recording_failures_total")?.get())?.values ?? [])
          .filter((v) => v.labels.kind === "ssh")
          .reduce((sum, v) => sum + v.value, 0);
      const before = await failures();
      const client = h.spawnSsh(key, `${user}%web`, ["sh"]);
      // Output that fills the recordings disk, in the background: the shell reads its next line at once.
      client.child.stdin!.write("(head -c 20000000 /dev/zero | tr '\\0' y) &\n");
      await until("the recording has failed", async () => (await failures()) > before, WAIT_MS);
      // The user's client sees the session being ended and fires a command in the grace period.
      client.child.stdin!.write(`touch ${marker}\n`);
      await client.exited;
      const { session } = await newestEnded();
      expect(session.endReason).toBe("recording_failed");
      // Before: the shell ran it (the relay went on for the kill's 250 ms), and no recording could hold it.
      expect(existsSync(marker)).toBe(false);
    } finally {
      spawnSync("umount", ["-l", recordings]);
      await rm(marker, { force: true });
    }
  }, 120_000);
});

describe("SFTP requests beyond what the tracker remembers", () => {
  it("a REMOVE sent behind 4,096 requests the server has not answered yet is still in the recording", async () => {
    const tag = Math.random().toString(36).slice(2);
    const fifo = `/tmp/stint-fifo-${tag}`;
    const victim = `/tmp/stint-victim-${tag}`;
    spawnSync("mkfifo", ["-m", "666", fifo]);
    await writeFile(victim, "evidence", { mode: 0o666 });
    try {
      // OpenSSH's sftp-server answers in order, one request at a time: an OPEN of a FIFO holds it (and every
      // answer) until someone writes to the FIFO, so the requests behind it all wait at once.
      const before = await bytesUp();
      const client = h.spawnSsh(key, `${user}%web`, ["-s", "sftp"]);
      const requests = [
        sftpPacket(1, 3), // INIT, version 3
        sftpPacket(3, 1, fifo, 1, 0), // OPEN the FIFO for reading, no attributes
        ...Array.from({ length: 4100 }, (_, i) => sftpPacket(5, 2 + i, "no-such-handle", 0n, 16)), // READs
        sftpPacket(13, 9999, victim), // REMOVE
      ];
      const sent = Buffer.concat(requests);
      client.child.stdin!.write(sent);
      // Every request has passed the proxy (its byte count) before the server answers anything.
      await until("the requests have passed the proxy", async () => (await bytesUp()) - before >= sent.length, WAIT_MS);
      const writer = await open(fifo, "w");
      await writer.close();
      await until("the REMOVE has run on the target", () => !existsSync(victim), WAIT_MS);
      client.child.stdin!.end();
      await client.exited;

      const { session, recording } = await newestEnded();
      const cast = await replayed(session.id, recording as { key: string; sha256: string; bytes: number });
      // Before: the REMOVE ran with no trace in the recording (its request was never remembered).
      expect(cast.events).toContainEqual(expect.objectContaining({ event: "sftp", operation: "remove", path: victim }));
    } finally {
      await rm(fifo, { force: true });
      await rm(victim, { force: true });
    }
  }, 120_000);
});

describe("a recording changed on disk after its session", () => {
  it("is not served as the recording: its SHA-256 no longer matches the audit log's", async () => {
    const result = await h.ssh(key, `${user}%web`, ["echo original-$((6*7))"]);
    expect(result.stdout).toContain("original-42");
    const { session, recording } = await newestEnded();
    const kept = recording as { key: string; sha256: string; bytes: number };
    await replayed(session.id, kept);
    // Someone with write access to the blob store (not the database) rewrites what the user did.
    const file = path.join(h.server.config.blobDir, kept.key);
    await writeFile(file, (await readFile(file, "utf8")).replaceAll("original", "innocent"));
    const served = await h.server.app.inject({
      method: "GET",
      url: `/v1/sessions/${session.id}/recording`,
      headers: { authorization: h.server.adminAuth },
    });
    // Before: 200, the altered bytes, under the header naming the original SHA-256; no player checks it.
    expect(served.body.includes("innocent-42")).toBe(false);
    expect(served.statusCode).toBe(500);
    expect(served.json()).toMatchObject({ error: { code: "INTEGRITY_FAILED" } });
  }, 60_000);
});

describe("SFTP request ids reused while the first still waits (files: { maxBytes })", () => {
  beforeAll(async () => {
    const yaml = h.catalog.replace(
      /^ {4}session: .*$/m,
      "    session: { recording: required, files: { maxBytes: 1000 } }",
    );
    const res = await h.admin("POST", "/v1/config/apply", { yaml });
    if (res.status >= 300) throw new Error(`apply: ${res.status} ${JSON.stringify(res.body)}`);
    key = (await h.certify(user, "web-shell")).key;
  }, 60_000);

  it("an OPEN whose id a bogus READ reuses still counts against maxBytes", async () => {
    const big = `/tmp/stint-big-${Math.random().toString(36).slice(2)}`;
    await writeFile(big, "A".repeat(100_000), { mode: 0o644 });
    try {
      const client = h.spawnSsh(key, `${user}%web`, ["-s", "sftp"]);
      // OpenSSH's sftp-server names its first handle 0 (four zero bytes): no need to read the HANDLE reply.
      const first = "\0\0\0\0";
      client.child.stdin!.write(sftpPacket(1, 3)); // INIT; the filter lets an OPEN through only after VERSION
      await until("the server's VERSION has arrived", () => client.stdout().length >= 9, WAIT_MS);
      client.child.stdin!.write(
        Buffer.concat([
          sftpPacket(3, 7, big, 1, 0), // OPEN for reading, id 7
          sftpPacket(5, 7, "bogus", 0n, 16), // a READ of no handle with the same id: the filter took the HANDLE for its answer
          sftpPacket(5, 8, first, 0n, 65_536), // READ of the file
        ]),
      );
      const tooLarge = "is larger than the 1000 bytes role web-shell may transfer";
      const leaked = "A".repeat(2000);
      await until(
        "the READ's answer has arrived",
        () => client.output().includes(leaked) || client.output().includes(tooLarge),
        WAIT_MS,
      );
      client.child.stdin!.end();
      await client.exited;
      // Before: 64 KiB of a file under a 1,000-byte maxBytes reached the client.
      expect(client.stdout().includes(leaked)).toBe(false);
      expect(client.output()).toContain(tooLarge);
    } finally {
      await rm(big, { force: true });
    }
  }, 120_000);
});
