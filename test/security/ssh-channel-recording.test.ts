/**
 * What a user holding a legitimate, recorded SSH session — or root on the target — could keep out of the
 * recording, or do to the proxy through it: a real Stint server, the real SSH proxy, a real sshd (its
 * `sftp` subsystem swapped for a shell, as root on the target can) and the OpenSSH client.
 */
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditedFor, newestEnded, replayed, sftpPacket, until } from "../../src/testing/ssh-recordings.js";
import { sshSessionsHarness, type SshSessionsHarness } from "../../src/testing/ssh-sessions.js";

let h: SshSessionsHarness;
let user: string;
let key: string;

beforeAll(async () => {
  h = await sshSessionsHarness({
    policy: "    session: { recording: required }",
    // Root on the target made its sftp subsystem a shell.
    sshdConfig: ["Subsystem sftp /bin/sh"],
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
