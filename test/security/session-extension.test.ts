/**
 * Session end timers follow extensions (issue 12, finding 6): a real Stint server on the real clock, the
 * real SSH proxy, a real sshd and the OpenSSH client. An activation extended while its SSH session runs
 * keeps the session past the original expiry, and ends it at the new one.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sshSessionsHarness, type SshSessionsHarness } from "../../src/testing/ssh-sessions.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
let h: SshSessionsHarness;

beforeAll(async () => {
  h = await sshSessionsHarness();
}, 120_000);

afterAll(async () => {
  await h?.cleanup();
}, 60_000);

describe("session end timers follow the activation's extensions (finding 6)", () => {
  it("an extended activation's SSH session survives the original expiry and ends at the new one", async () => {
    const user = h.users[0]!;
    const requestId = await h.activate(user, "web-shell", "8s");
    const cert = await h.certify(user, "web-shell");
    const original = Date.parse(String((await h.admin("GET", `/v1/activation-requests/${requestId}`)).body.expiresAt));
    const client = h.spawnSsh(cert.key, `${user}%web`, ["while :; do echo tick; sleep 0.2; done"]);
    const ended = client.exited.then(() => Date.now());
    for (;;) {
      if (client.output().includes("tick")) break;
      if (Date.now() > original) throw new Error(`the session did not start: ${client.output()}`);
      await sleep(50);
    }
    const extension = await h.as(user, "POST", "/v1/me/roles/web-shell/extensions", {
      by: "6s",
      reason: "the migration needs a few more seconds",
    });
    expect(extension.status, JSON.stringify(extension.body)).toBe(201);
    const now = await h.admin("GET", `/v1/activation-requests/${requestId}`);
    const extended = Date.parse(String(now.body.expiresAt));
    expect(extended - original).toBe(6000);

    // Past the original expiry (and a sweep's worth of slack) the session is still relaying.
    await sleep(Math.max(0, original - Date.now()) + 1500);
    expect(client.child.exitCode).toBeNull();
    const before = client.output().length;
    await sleep(500);
    expect(client.output().length).toBeGreaterThan(before);

    // It ends at the new expiry, with the reason on the user's screen.
    const at = await ended;
    expect(at).toBeGreaterThanOrEqual(extended - 100);
    expect(at - extended).toBeLessThan(3000);
    expect(client.output()).toContain("expired");
    let endReason: string | null | undefined;
    for (let i = 0; i < 100 && !endReason; i++, await sleep(50)) {
      const sessions = (await h.admin("GET", "/v1/sessions")).body.items as {
        user: string;
        endReason: string | null;
      }[];
      endReason = sessions.find((s) => s.user === user)?.endReason;
    }
    expect(endReason).toBe("activation_ended");
  }, 60_000);
});
