/**
 * SSRF through target addresses, at session time (issue 12 regression class "SSRF through target and
 * webhook addresses"; cf. Grafana CVE-2020-13379, GitLab CVE-2021-22214, and DNS rebinding). The session
 * proxies open a connection to the target's address with a vaulted credential. A literal address is
 * judged when the target is saved, but a host name is only what it resolves to when the proxy connects:
 * re-pointed at the metadata service, at a denied network or at Stint's own host (DNS rebinding), the
 * credential would go there. The gate resolves the name, judges every answer under the address policy,
 * and the proxy connects to the address that was judged (no second lookup).
 *
 * Here the target is reached by the name `localhost` through a relay that counts connections. The
 * activation is provisioned under the default policy (loopback allowed); then the policy denies
 * loopback, as STINT_DENY_NETWORKS=127.0.0.0/8,::1 does — for the proxy the same as the name now
 * resolving to a denied address. The session must be refused with a clear message and nothing may reach
 * the relay; with the default policy (the control) the same session works.
 */
import { createServer, connect, type Server, type Socket } from "node:net";
import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_ADDRESS_POLICY } from "../../src/lib/address-policy.js";
import { configureAddressPolicy } from "../../src/modules/connectors/index.js";
import { pgProxyHarness, type PgProxyHarness } from "../../src/testing/pg-proxy-harness.js";
import { sshSessionsHarness, type SshSessionsHarness } from "../../src/testing/ssh-sessions.js";

const DENY_LOOPBACK = { allow: [], deny: ["127.0.0.0/8", "::1"] };
const REFUSAL = /localhost resolves to (127\.0\.0\.1|::1) is in STINT_DENY_NETWORKS/;

/** A TCP relay to `to` on 127.0.0.1 that counts the connections it accepts. */
interface Relay {
  port: number;
  to: number;
  accepted: number;
  close(): Promise<void>;
}

async function startRelay(): Promise<Relay> {
  const sockets = new Set<Socket>();
  const relay: Relay = { port: 0, to: 0, accepted: 0, close: async () => {} };
  const server: Server = createServer((socket) => {
    relay.accepted += 1;
    const upstream = connect({ host: "127.0.0.1", port: relay.to });
    for (const s of [socket, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => s.destroy());
    }
    socket.pipe(upstream).pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  relay.port = (server.address() as { port: number }).port;
  relay.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return relay;
}

let relay: Relay | undefined;
let ssh: SshSessionsHarness | undefined;
let pgh: PgProxyHarness | undefined;
afterEach(async () => {
  configureAddressPolicy(DEFAULT_ADDRESS_POLICY);
  await ssh?.cleanup();
  await pgh?.close();
  await relay?.close();
  ssh = pgh = relay = undefined;
});

describe("SSRF through target addresses at session time (DNS rebinding; Grafana CVE-2020-13379 class)", () => {
  it("the SSH proxy refuses a target whose name resolves to a denied address; nothing reaches it", async () => {
    const r = (relay = await startRelay());
    ssh = await sshSessionsHarness({
      address: (sshd) => {
        r.to = sshd.port;
        return `ssh://root@localhost:${r.port}`;
      },
    });
    const [user] = ssh.users as [string];
    await ssh.activate(user, "web-shell");
    const { key } = await ssh.certify(user, "web-shell");

    // Control: by default loopback is allowed, and the session works through the name.
    const ok = await ssh.ssh(key, `${user}%web`, ["echo", "reached"]);
    expect(ok.stdout, ok.stderr).toContain("reached");

    configureAddressPolicy(DENY_LOOPBACK);
    const before = r.accepted;
    const refused = await ssh.ssh(key, `${user}%web`, ["echo", "reached"]);
    expect(refused.code).not.toBe(0);
    expect(refused.stdout).not.toContain("reached");
    expect(refused.stderr).toMatch(REFUSAL);
    expect(r.accepted).toBe(before);
    const audit = await ssh.admin("GET", "/v1/audit/events?action=session.refused");
    expect(JSON.stringify(audit.body)).toMatch(REFUSAL);
  });

  it("the PostgreSQL proxy refuses a target whose name resolves to a denied address; nothing reaches it", async () => {
    const r = (relay = await startRelay());
    pgh = await pgProxyHarness({
      address: (instance) => {
        r.to = instance.port;
        return `postgres://postgres@localhost:${r.port}/appdb`;
      },
    });

    // Control: by default the session works, with verify-full TLS checked against the name.
    const control = new pg.Client(pgh.clientConfig(await pgh.token()));
    await control.connect();
    expect((await control.query("select current_user as who")).rows[0]).toEqual({ who: pgh.login });
    await control.end();

    configureAddressPolicy(DENY_LOOPBACK);
    const before = r.accepted;
    const client = new pg.Client(pgh.clientConfig(await pgh.token()));
    client.on("error", () => undefined);
    const failure = await client.connect().then(
      () => null,
      (error: Error) => error,
    );
    await client.end().catch(() => undefined);
    expect(failure?.message).toMatch(REFUSAL);
    expect(r.accepted).toBe(before);
  });
});
