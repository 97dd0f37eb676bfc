/**
 * RBAC bypass through direct-tcpip (issue 12, the forwarding class, and finding 11's refusal message):
 * a real Stint server, the real SSH proxy, a real sshd and the OpenSSH client. A role whose policy does not
 * allow port forwarding gets no tunnel of any kind through the proxy — local (-L, -W), remote (-R) — the
 * refusal says "administratively prohibited" (SSH_OPEN_ADMINISTRATIVELY_PROHIBITED) with Stint's reason,
 * nothing reaches the address asked for, and the attempt is in the recording.
 */
import { connect, createServer, type Server as NetServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRecording } from "../../src/contract/recording.js";
import { sshSessionsHarness, type SshSessionsHarness } from "../../src/testing/ssh-sessions.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
let h: SshSessionsHarness;
let echo: NetServer;
let echoPort: number;
let reached = 0;
let user: string;
let key: string;

beforeAll(async () => {
  h = await sshSessionsHarness();
  user = h.users[0]!;
  echo = createServer((socket) => {
    reached++;
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", resolve));
  echoPort = (echo.address() as { port: number }).port;
  await h.activate(user, "web-shell");
  key = (await h.certify(user, "web-shell")).key;
}, 120_000);

afterAll(async () => {
  await new Promise<void>((resolve) => echo?.close(() => resolve()));
  await h?.cleanup();
}, 60_000);

async function lastRecording() {
  for (let i = 0; i < 100; i++) {
    const items = (await h.admin("GET", "/v1/sessions")).body.items as {
      id: string;
      live: boolean;
      recording: { available: boolean } | null;
    }[];
    const last = items[0];
    if (last && !last.live && last.recording?.available) {
      const res = await h.server.app.inject({
        method: "GET",
        url: `/v1/sessions/${last.id}/recording`,
        headers: { authorization: h.server.adminAuth },
      });
      return parseRecording(res.body);
    }
    await sleep(50);
  }
  throw new Error("no finished recording");
}

describe("RBAC bypass through direct-tcpip (port forwarding the role's policy does not allow)", () => {
  it("ssh -W (a direct-tcpip channel) is refused as administratively prohibited, with the reason, and recorded", async () => {
    const result = await h.ssh(key, `${user}%web`, [], { extra: ["-W", `127.0.0.1:${echoPort}`] });
    expect(result.code).toBe(255);
    expect(result.stderr).toContain("administratively prohibited");
    expect(result.stderr).toContain("port forwarding is not allowed");
    expect(reached).toBe(0);
    const recording = await lastRecording();
    expect(recording.kind === "ssh" && recording.events).toContainEqual(
      expect.objectContaining({ event: "forward", kind: "direct-tcpip", port: echoPort, allowed: false }),
    );
  }, 60_000);

  it("ssh -L: the tunnel's connections are refused the same way and never reach the address", async () => {
    const localPort = await new Promise<number>((resolve) => {
      const probe = createServer();
      probe.listen(0, "127.0.0.1", () => {
        const port = (probe.address() as { port: number }).port;
        probe.close(() => resolve(port));
      });
    });
    const tunnel = h.spawnSsh(key, `${user}%web`, ["sleep 5"], ["-L", `127.0.0.1:${localPort}:127.0.0.1:${echoPort}`]);
    let answer = "";
    for (let i = 0; i < 100 && !tunnel.output().includes("open failed"); i++) {
      answer += await new Promise<string>((resolve) => {
        const socket = connect(localPort, "127.0.0.1", () => socket.write("ping\n"));
        let got = "";
        socket.on("data", (chunk: Buffer) => (got += chunk.toString()));
        socket.on("close", () => resolve(got));
        socket.on("error", () => resolve(got));
        setTimeout(() => socket.destroy(), 1000);
      });
      await sleep(100);
    }
    tunnel.child.kill("SIGTERM");
    await tunnel.exited;
    expect(answer).toBe("");
    expect(tunnel.output()).toContain("administratively prohibited");
    expect(reached).toBe(0);
  }, 60_000);

  it("ssh -R (tcpip-forward) is refused", async () => {
    const result = await h.ssh(key, `${user}%web`, ["true"], {
      extra: ["-o", "ExitOnForwardFailure=yes", "-R", `0:127.0.0.1:${echoPort}`],
    });
    expect(result.code).toBe(255);
    expect(result.stderr).toMatch(/remote port forwarding failed/i);
  }, 60_000);
});
