/**
 * The LDAP connector's pool of bound admin connections (ldap.client.ts, ../connection-pool.ts) against a real
 * slapd (src/testing/slapd.ts), counted by slapd's own monitor backend: many operations cost one connection and
 * one bind; concurrency stays within the pool's size; idle connections close; a rotated admin password binds
 * anew and the old password's connection serves nothing; a killed slapd is recovered on the next operation; a
 * connection whose server went silent is given up after the timeout and not reused; an answer that leaves the
 * connection in doubt, and an abort, close the connection.
 */
import { randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_POOL_SETTINGS } from "../connection-pool.js";
import type { ConnectorTarget } from "../connector.types.js";
import { eventually } from "../../../testing/ssh-connections.js";
import {
  addGroup,
  addPerson,
  modifyAttribute,
  readAttribute,
  serviceAccountAcl,
  slapdCounts,
  startSlapd,
  type Slapd,
} from "../../../testing/slapd.js";
import { startTcpRelay } from "../../../testing/tcp-relay.js";
import { connectorFailure } from "../../../testing/connector-failure.js";
import { ldapConnector as connector, ldapPools } from "./ldap.connector.js";
import { normalizeDn } from "./ldap.rules.js";

/** Stint's "Who am I?" in test() is refused by this server: an answer that says nothing certain. */
const WHO_AM_I = "1.3.6.1.4.1.4203.1.11.3";

let slapd: Slapd;
let service: string;
let servicePassword = `svc-${randomBytes(8).toString("hex")}`;
let dana: string;
let group: string;

const target = (overrides: Partial<ConnectorTarget> = {}): ConnectorTarget => ({
  name: "pooled-directory",
  address: slapd.url,
  options: { bindDn: service, privilegedGroups: [group] },
  credential: servicePassword,
  ...overrides,
});
const observe = (on: ConnectorTarget = target()) => connector.observe(on, { group });
const members = async () => (await readAttribute(slapd, group, "member")).map((dn) => normalizeDn(dn));

/** Closes every pooled connection and waits until slapd has none left but the counter's own. */
async function freshPools(): Promise<void> {
  await ldapPools.closeAll();
  expect(await eventually(async () => (await slapdCounts(slapd)).open === 0)).toBe(true);
}

beforeAll(async () => {
  slapd = await startSlapd({ access: serviceAccountAcl("stint-svc"), global: [`restrict extended=${WHO_AM_I}`] });
  service = await addPerson(slapd, "stint-svc", { password: servicePassword });
  dana = await addPerson(slapd, "dana");
  group = await addGroup(slapd, "dba", []);
});

afterEach(async () => {
  ldapPools.configure(DEFAULT_POOL_SETTINGS);
  await ldapPools.closeAll();
});

afterAll(async () => {
  await ldapPools.closeAll();
  await slapd?.stop();
});

describe("LDAP admin connection pool", () => {
  it("operations one after another share one connection and one bind", async () => {
    await freshPools();
    const before = await slapdCounts(slapd);
    await observe();
    await connector.provision(target(), { login: dana, entitlement: { group } });
    expect(await observe()).toEqual([normalizeDn(dana)]);
    await connector.discover(target());
    await connector.revoke(target(), { login: dana, entitlement: { group } });
    expect(await observe()).toEqual([]);
    const after = await slapdCounts(slapd);
    expect(after.binds - before.binds).toBe(1);
    expect(after.connections - before.connections).toBe(1);
    expect(await eventually(async () => (await slapdCounts(slapd)).open === 1)).toBe(true);
  });

  it("concurrent operations use at most the pool's size of connections", async () => {
    await freshPools();
    const before = await slapdCounts(slapd);
    await Promise.all(Array.from({ length: 12 }, () => observe()));
    const after = await slapdCounts(slapd);
    expect(after.binds - before.binds).toBeGreaterThanOrEqual(1);
    expect(after.binds - before.binds).toBeLessThanOrEqual(DEFAULT_POOL_SETTINGS.max);
  });

  it("an idle connection is closed after idleMs, and the next operation binds anew", async () => {
    await freshPools();
    ldapPools.configure({ idleMs: 300 });
    await observe();
    expect(await eventually(async () => (await slapdCounts(slapd)).open === 0)).toBe(true);
    const before = await slapdCounts(slapd);
    expect(await observe()).toEqual([]);
    expect((await slapdCounts(slapd)).binds - before.binds).toBe(1);
  });

  it("a rotated admin password binds anew; the old password's connection serves no call any more", async () => {
    await freshPools();
    await observe();
    const old = servicePassword;
    servicePassword = `svc-${randomBytes(8).toString("hex")}`;
    await modifyAttribute(slapd, service, "delete", "userPassword", old);
    await modifyAttribute(slapd, service, "add", "userPassword", servicePassword);
    const before = await slapdCounts(slapd);
    expect(await observe()).toEqual([]);
    expect((await slapdCounts(slapd)).binds - before.binds).toBe(1);
    // The connection bound with the old password is closed.
    expect(await eventually(async () => (await slapdCounts(slapd)).open === 1)).toBe(true);
    // A call still holding the old password binds with it (and is refused) instead of borrowing a connection.
    const stale = await connectorFailure(observe(target({ credential: old })));
    expect(stale.reason).toBe("refused");
    expect(stale.message).toMatch(/invalid credentials/);
    expect(stale.message).not.toContain(old);
  });

  it("a killed slapd is recovered on the next operation, on a new bound connection", async () => {
    await freshPools();
    await observe();
    await slapd.restart();
    const before = await slapdCounts(slapd);
    try {
      // A write: an unbound connection (what ldapts would open by itself) may not make it under this ACL.
      await connector.provision(target(), { login: dana, entitlement: { group } });
      // At least this operation's bind (slapd's start-up check may still finish one of its own).
      expect((await slapdCounts(slapd)).binds - before.binds).toBeGreaterThanOrEqual(1);
      expect(await members()).toContain(normalizeDn(dana));
    } finally {
      await connector.revoke(target(), { login: dana, entitlement: { group } });
    }
  });

  it("a pooled connection whose server went silent is given up after the timeout, not reused, and the call retried", async () => {
    await freshPools();
    const relay = await startTcpRelay({ host: "127.0.0.1", port: Number(new URL(slapd.url).port) });
    try {
      const relayed = target({ address: `ldap://127.0.0.1:${relay.port}` });
      await observe(relayed);
      expect(relay.open()).toBe(1);
      relay.freeze();
      const before = await slapdCounts(slapd);
      expect(await observe(relayed)).toEqual([]);
      // The silent connection was dropped by Stint; the retry bound a new one.
      expect(await eventually(() => relay.open() === 1)).toBe(true);
      expect((await slapdCounts(slapd)).binds - before.binds).toBe(1);
    } finally {
      await relay.close();
    }
  }, 60_000);

  it("an answer that leaves the connection in doubt closes it (test's Who am I? refused here)", async () => {
    await freshPools();
    const before = await slapdCounts(slapd);
    expect((await connector.test(target())).detail).toContain(`bound as ${service}`);
    expect(await eventually(async () => (await slapdCounts(slapd)).open === 0)).toBe(true);
    await observe();
    expect((await slapdCounts(slapd)).binds - before.binds).toBe(2);
  });

  it("an aborted call closes its connection rather than pooling it", async () => {
    await freshPools();
    await observe();
    const controller = new AbortController();
    const pending = connectorFailure(connector.discover(target(), { signal: controller.signal }));
    controller.abort();
    expect((await pending).reason).toBe("unavailable");
    expect(await eventually(async () => (await slapdCounts(slapd)).open === 0)).toBe(true);
    expect(await observe()).toEqual([]);
  });
});
