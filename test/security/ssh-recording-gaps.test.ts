/**
 * What an SSH session through the proxy could still keep out of its recording: a real Stint server, the
 * real SSH proxy, a real sshd (configured as Debian and Ubuntu ship it: `AcceptEnv LANG LC_*`) and the
 * OpenSSH client.
 * - Environment variables the client sets (`SetEnv`, `SendEnv`) reach the target's shell: a command line
 *   `eval "$LC_X"` runs what the variable holds, so the variable must be in the recording.
 * - A recordings disk that fills up mid-session (the user's own output can fill it) ends a session under
 *   `recording: required`, and must not take what was recorded before with it.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRecording, transcript, type ParsedRecording } from "../../src/contract/recording.js";
import { sshSessionsHarness, type SshSessionsHarness } from "../../src/testing/ssh-sessions.js";

let h: SshSessionsHarness;
let user: string;
let key: string;

beforeAll(async () => {
  h = await sshSessionsHarness({
    policy: "    session: { recording: required }",
    // Debian's and Ubuntu's sshd_config: the client's locale variables are accepted.
    sshdConfig: ["AcceptEnv LANG LC_*"],
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

async function until<T>(what: string, probe: () => Promise<T | undefined | null | false>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The user's newest session once ended, its `session.ended` recording, and the file that recording names. */
async function newestEnded() {
  const session = await until("the session to end", async () => {
    const items = (await h.admin("GET", "/v1/sessions?limit=100")).body.items as (SessionItem & { user: string })[];
    const [latest] = items.filter((s) => s.user === user);
    return latest && !latest.live ? latest : undefined;
  });
  const ended = await until("the session.ended event", async () => {
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
      await until("the command's output", async () => client.stdout().includes("did-something-42"));
      // What the user did is on the recordings disk (the .partial file of the live session).
      await until("the recording to reach the disk", async () => {
        const files = (await readdir(recordings, { recursive: true })).map(String);
        const partial = files.find((f) => f.endsWith(".partial"));
        return partial && (await readFile(path.join(recordings, partial), "utf8")).includes("did-something-42");
      });
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
