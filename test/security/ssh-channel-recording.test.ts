/**
 * What a user holding a legitimate, recorded SSH session — or root on the target — could keep out of the
 * recording, or do to the proxy through it: a real Stint server, the real SSH proxy, a real sshd (its
 * `sftp` subsystem swapped for a shell, as root on the target can) and the OpenSSH client.
 */
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { armFailpoint, disarmFailpoints } from "../../src/lib/failpoints.js";
import {
  auditedFor,
  newestEnded,
  replayed,
  sftpPacket,
  until,
  type SshRecording,
} from "../../src/testing/ssh-recordings.js";
import { sshSessionsHarness, type SshSessionsHarness } from "../../src/testing/ssh-sessions.js";

/** The recordings' size limit in this file (STINT_RECORDING_MAX_BYTES). */
const MAX_RECORDING = 16 * 1024 * 1024;
let h: SshSessionsHarness;
let user: string;
let key: string;

beforeAll(async () => {
  h = await sshSessionsHarness({
    policy: "    session: { recording: required }",
    // Root on the target made its sftp subsystem a shell.
    sshdConfig: ["Subsystem sftp /bin/sh"],
    env: { STINT_RECORDING_MAX_BYTES: String(MAX_RECORDING) },
  });
  user = h.users[0]!;
  await h.activate(user, "web-shell");
  key = (await h.certify(user, "web-shell")).key;
}, 120_000);

afterAll(async () => {
  await h?.cleanup();
}, 60_000);

describe("an sftp subsystem that is a shell (`Subsystem sftp /bin/sh` on the target)", () => {
  it("never runs what the client sends: the channel is refused, recorded and audited", async () => {
    const proof = `/tmp/stint-sftp-swap-${Math.random().toString(36).slice(2)}`;
    try {
      const client = h.spawnSsh(key, `${user}%web`, ["-s", "sftp"]);
      // An INIT for the proxy's sake, then shell commands for what really runs there.
      client.child.stdin!.write(
        Buffer.concat([sftpPacket(1, 3), Buffer.from(`\ntouch ${proof}; echo swap-$((6*7))\n`)]),
      );
      await until(
        "the command to run or the channel to close",
        async () => {
          if (existsSync(proof)) return true;
          return Promise.race([client.exited.then(() => true), new Promise<false>((r) => setTimeout(r, 200, false))]);
        },
        60_000,
      );
      client.child.stdin!.end();
      await client.exited;
      const ended = await newestEnded(h, user);
      const recording = await replayed(h, ended);
      // Before: the shell ran it, and the recording held only an `sftp` subsystem and no output.
      expect(existsSync(proof)).toBe(false);
      expect(client.stdout()).not.toContain("swap-42");
      expect(recording.events).toContainEqual(
        expect.objectContaining({ event: "subsystem", name: "sftp", allowed: false }),
      );
      const audited = await auditedFor(h, "session.channel_refused", ended.session.id);
      expect(audited[0]).toMatchObject({ outcome: "denied", details: { subsystem: "sftp" } });
    } finally {
      await rm(proof, { force: true });
    }
  }, 90_000);
});

/** Output frames of one stream (and channel, when given), joined. */
function streamOf(recording: SshRecording, stream: "stdout" | "stderr", channel?: number): string {
  return recording.frames
    .filter(
      (f) => f.code === "o" && (f.stream ?? "stdout") === stream && (channel === undefined || f.channel === channel),
    )
    .map((f) => f.data)
    .join("");
}

describe("stdout and stderr", () => {
  it("a command writing to both is recorded with each byte in its own stream", async () => {
    // Alternating writes, each flushed: the two streams cross the proxy interleaved.
    const command = "for i in 1 2 3 4 5 6; do printf out$i; printf err$i >&2; sleep 0.05; done";
    const result = await h.ssh(key, `${user}%web`, [command]);
    expect(result.stdout).toBe("out1out2out3out4out5out6");
    expect(result.stderr).toContain("err1err2err3err4err5err6");
    const recording = await replayed(h, await newestEnded(h, user));
    // Before: one output stream, `out1err1out2err2…`: a line the client saw on stdout could not be told apart.
    expect(streamOf(recording, "stdout")).toBe("out1out2out3out4out5out6");
    expect(streamOf(recording, "stderr")).toBe("err1err2err3err4err5err6");
  }, 60_000);
});

describe("several session channels on one connection (OpenSSH's ControlMaster)", () => {
  it("each channel's output is attributed to the command that produced it", async () => {
    const control = path.join(h.dir, `control-${Math.random().toString(36).slice(2, 8)}`);
    const master = h.spawnSsh(key, `${user}%web`, [], ["-M", "-S", control, "-N"]);
    try {
      await until("the master connection", () => existsSync(control), 60_000);
      const command = (tag: string) => `for i in 1 2 3 4 5; do echo ${tag}$i; sleep 0.1; done`;
      const [a, b] = await Promise.all(
        ["alpha", "beta"].map((tag) => h.ssh(key, `${user}%web`, [command(tag)], { extra: ["-S", control] })),
      );
      expect(a!.stdout).toBe("alpha1\nalpha2\nalpha3\nalpha4\nalpha5\n");
      expect(b!.stdout).toBe("beta1\nbeta2\nbeta3\nbeta4\nbeta5\n");
    } finally {
      master.child.kill("SIGTERM");
      await master.exited;
    }
    const recording = await replayed(h, await newestEnded(h, user));
    const channelOf = (tag: string) =>
      recording.events.find((e) => e.event === "exec" && String(e.command).includes(`echo ${tag}$i`))?.channel;
    const alpha = channelOf("alpha");
    const beta = channelOf("beta");
    // Before: no channel anywhere; both outputs interleaved in one stream, unattributable.
    expect(typeof alpha).toBe("number");
    expect(typeof beta).toBe("number");
    expect(alpha).not.toBe(beta);
    expect(streamOf(recording, "stdout", alpha as number)).toBe("alpha1\nalpha2\nalpha3\nalpha4\nalpha5\n");
    expect(streamOf(recording, "stdout", beta as number)).toBe("beta1\nbeta2\nbeta3\nbeta4\nbeta5\n");
  }, 90_000);
});

describe("a recordings disk that stalls, and a recording's size limit", () => {
  const OUTPUT = 12_000_000;
  const received = (client: ReturnType<SshSessionsHarness["spawnSsh"]>) => client.stdout().length;

  it("while the disk stalls the target is held back: the proxy does not buffer the output, and loses none of it", async () => {
    let release: () => void = () => undefined;
    const stalled = new Promise<void>((resolve) => (release = resolve));
    // The first batch of the recording reaches the disk, then the disk takes nothing more until released.
    armFailpoint("session.recording.after-write", () => stalled);
    try {
      const client = h.spawnSsh(key, `${user}%web`, [`head -c ${OUTPUT} /dev/zero | tr '\\0' y`]);
      // Wait until what reaches the client stops growing (or all of it came).
      let last = -1;
      let steady = 0;
      await until(
        "the output to stop flowing",
        () => {
          const now = received(client);
          steady = now === last ? steady + 1 : 0;
          last = now;
          return now >= OUTPUT || steady >= 60; // 3 s without a byte
        },
        120_000,
      );
      // Before: all 12 MB passed (and waited in the proxy's memory for the disk). Now what passes is bounded: the
      // first batch (up to BLOB_BATCH_MS of output, held at the stalled disk), the writer's backlog
      // (BLOB_BACKLOG_BYTES, 4 MB) and the channels' windows: 6.3 MB on a fast host (a clean-clone CI run), where
      // the first batch is larger than on a slow one.
      expect(received(client)).toBeLessThan((OUTPUT * 3) / 4);
      release();
      expect(await client.exited).toBe(0);
      expect(received(client)).toBe(OUTPUT);
      const recording = await replayed(h, await newestEnded(h, user));
      expect(streamOf(recording, "stdout")).toBe("y".repeat(OUTPUT));
    } finally {
      release();
      disarmFailpoints();
    }
  }, 180_000);

  it("a recording that reaches STINT_RECORDING_MAX_BYTES ends a session under `recording: required`, saying why", async () => {
    const client = h.spawnSsh(key, `${user}%web`, [`head -c ${2 * MAX_RECORDING} /dev/zero | tr '\\0' y`]);
    expect(await client.exited).not.toBe(0);
    // Before: all of it passed and was recorded, however large.
    expect(received(client)).toBeLessThan(2 * MAX_RECORDING);
    const ended = await newestEnded(h, user);
    expect(ended.session.endReason).toBe("recording_failed");
    expect(ended.reason).toMatch(/size limit/);
    expect(ended.recording).toMatchObject({ partial: true, limit: MAX_RECORDING });
    expect(ended.recording!.bytes).toBeLessThanOrEqual(MAX_RECORDING);
    // What was recorded up to the limit is kept, served and whole.
    const recording = await replayed(h, ended);
    expect(streamOf(recording, "stdout").length).toBeGreaterThan(0);
  }, 120_000);
});
