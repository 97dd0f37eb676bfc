/** The LDAP connector against a real OpenLDAP slapd (src/testing/slapd.ts), checked with a plain ldapts client. */
import { randomBytes } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  addGroup,
  addPerson,
  bindAs,
  deleteEntry,
  freePort,
  readAttribute,
  serviceAccountAcl,
  startSlapd,
  type Slapd,
} from "../../../testing/slapd.js";
import type { ConnectorTarget } from "../connector.types.js";
import { connectorFailure } from "../../../testing/connector-failure.js";
import { ldapConnector, ldapPools } from "./ldap.connector.js";
import { normalizeDn } from "./ldap.rules.js";

const suffix = randomBytes(4).toString("hex");
let slapd: Slapd;
const created: string[] = [];
let alice: string;
let bob: string;
let carol: string;
let admins: string;
let auditors: string;

function target(options: Record<string, unknown> = {}, overrides: Partial<ConnectorTarget> = {}): ConnectorTarget {
  return {
    name: "directory",
    address: slapd.url,
    options: { bindDn: slapd.rootDn, ...options },
    credential: slapd.rootPassword,
    ...overrides,
  };
}

/** What a plain LDAP client sees in the group's attribute, normalised. */
async function membersSeen(group: string, attribute = "member"): Promise<string[]> {
  return (await readAttribute(slapd, group, attribute)).map((dn) => normalizeDn(dn)!).sort();
}

beforeAll(async () => {
  slapd = await startSlapd();
  const track = async (dn: Promise<string>) => {
    created.unshift(await dn);
    return created[0]!;
  };
  alice = await track(addPerson(slapd, `alice-${suffix}`, { password: `alice-pw-${suffix}` }));
  bob = await track(addPerson(slapd, `bob-${suffix}`));
  carol = await track(addPerson(slapd, `carol-${suffix}`));
  // groupOfNames needs a member: the group's own DN is the placeholder.
  admins = await track(addGroup(slapd, `admins-${suffix}`, []));
  auditors = await track(addGroup(slapd, `auditors-${suffix}`, [], "groupOfUniqueNames"));
});

afterAll(async () => {
  await ldapPools.closeAll();
  if (!slapd) return;
  for (const dn of created) await deleteEntry(slapd, dn).catch(() => undefined);
  await slapd.stop();
});

describe("test()", () => {
  it("binds and reports the server and the account", async () => {
    const { detail } = await ldapConnector.test(target());
    expect(detail).toContain(slapd.baseDn);
    expect(detail).toContain(slapd.rootDn);
  });

  it("refuses a wrong password without repeating it", async () => {
    const wrong = `wrong-${randomBytes(8).toString("hex")}`;
    const error = await connectorFailure(ldapConnector.test(target({}, { credential: wrong })));
    expect(error.reason).toBe("refused");
    expect(error.message).toMatch(/invalid credentials/i);
    expect(error.message).not.toContain(wrong);
    expect(error.message).not.toContain(slapd.rootPassword);
  });

  it("refuses to bind without a credential (which would be an anonymous bind)", async () => {
    const error = await connectorFailure(ldapConnector.test(target({}, { credential: null })));
    expect(error.reason).toBe("refused");
    expect(error.message).toContain("credential");
  });

  it("a closed port is unavailable", async () => {
    const port = await freePort();
    const error = await connectorFailure(ldapConnector.test(target({}, { address: `ldap://127.0.0.1:${port}` })));
    expect(error.reason).toBe("unavailable");
    expect(error.message).not.toContain(slapd.rootPassword);
  });

  it("StartTLS against a server without TLS is a clear failure", async () => {
    const error = await connectorFailure(ldapConnector.test(target({ startTls: true })));
    expect(error.message).toMatch(/StartTLS/);
    expect(error.message).not.toContain(slapd.rootPassword);
  });

  it("an aborted call fails as unavailable", async () => {
    const controller = new AbortController();
    controller.abort();
    const error = await connectorFailure(ldapConnector.test(target(), { signal: controller.signal }));
    expect(error.reason).toBe("unavailable");
  });
});

describe("a server that accepts connections and never answers", () => {
  let silent: Server;
  let address: string;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    silent = createServer((socket) => {
      sockets.push(socket);
      socket.on("error", () => undefined);
      socket.resume(); // read and drop what the client sends, so its FIN is seen
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as { port: number }).port;
    address = `ldap://127.0.0.1:${port}`;
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  });

  it("an abort ends the call as unavailable and closes the connection", async () => {
    const controller = new AbortController();
    const call = ldapConnector.test(target({}, { address }), { signal: controller.signal });
    while (sockets.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    const closed = new Promise<void>((resolve) => sockets[0]!.once("close", () => resolve()));
    controller.abort();
    const error = await connectorFailure(call);
    expect(error.reason).toBe("unavailable");
    expect(error.message).toContain("cancelled");
    await closed;
  });

  it("no answer is unavailable (after the operation timeout) and the connection is closed", async () => {
    const before = sockets.length;
    const error = await connectorFailure(ldapConnector.test(target({}, { address })));
    expect(error.reason).toBe("unavailable");
    expect(error.message).not.toContain(slapd.rootPassword);
    expect(sockets.length).toBe(before + 1);
    const socket = sockets[before]!;
    if (!socket.destroyed) await new Promise((resolve) => socket.once("close", resolve));
  });
});

describe("groupOfNames (member)", () => {
  it("provision adds the login's DN to the group, and again changes nothing", async () => {
    const entitlement = { group: admins };
    await ldapConnector.provision(target(), { login: alice, entitlement });
    expect(await membersSeen(admins)).toContain(normalizeDn(alice));
    await ldapConnector.provision(target(), { login: alice, entitlement });
    // Another spelling of the same DN is the same member.
    await ldapConnector.provision(target(), { login: alice.toUpperCase(), entitlement });
    expect((await membersSeen(admins)).filter((dn) => dn === normalizeDn(alice))).toHaveLength(1);
  });

  it("observe lists the members, without the placeholder", async () => {
    await ldapConnector.provision(target(), { login: bob, entitlement: { group: admins } });
    expect(await ldapConnector.observe(target(), { group: admins })).toEqual(
      [normalizeDn(alice), normalizeDn(bob)].sort(),
    );
  });

  it("revoke removes the value, and again changes nothing", async () => {
    const entitlement = { group: admins };
    await ldapConnector.revoke(target(), { login: bob, entitlement });
    expect(await membersSeen(admins)).not.toContain(normalizeDn(bob));
    expect(await membersSeen(admins)).toContain(normalizeDn(alice));
    await ldapConnector.revoke(target(), { login: bob, entitlement });
    expect(await ldapConnector.observe(target(), entitlement)).toEqual([normalizeDn(alice)]);
  });

  it("refuses to remove the last member of a groupOfNames, saying why", async () => {
    const lonely = await addGroup(slapd, `lonely-${suffix}`, [carol]);
    created.unshift(lonely);
    const error = await connectorFailure(
      ldapConnector.revoke(target(), { login: carol, entitlement: { group: lonely } }),
    );
    expect(error.reason).toBe("refused");
    expect(error.message).toMatch(/last member/);
    expect(error.message).toMatch(/placeholder/);
    expect(await membersSeen(lonely)).toEqual([normalizeDn(carol)]);
  });

  it("a group that does not exist is refused on provision and observe; revoke has nothing to do", async () => {
    const missing = { group: `cn=missing-${suffix},${slapd.groupsDn}` };
    const provision = await connectorFailure(ldapConnector.provision(target(), { login: alice, entitlement: missing }));
    expect(provision.reason).toBe("refused");
    expect(provision.message).toContain("does not exist");
    expect((await connectorFailure(ldapConnector.observe(target(), missing))).reason).toBe("refused");
    await ldapConnector.revoke(target(), { login: alice, entitlement: missing });
  });

  it("a login with no entry is refused and not added", async () => {
    const ghost = `uid=ghost-${suffix},${slapd.peopleDn}`;
    const error = await connectorFailure(
      ldapConnector.provision(target(), { login: ghost, entitlement: { group: admins } }),
    );
    expect(error.reason).toBe("refused");
    expect(error.message).toContain("no entry");
    expect(await membersSeen(admins)).not.toContain(normalizeDn(ghost));
  });

  it("the wrong member attribute for the group's class is refused with a hint", async () => {
    const error = await connectorFailure(
      ldapConnector.provision(target({ memberAttribute: "uniqueMember" }), {
        login: carol,
        entitlement: { group: admins },
      }),
    );
    expect(error.reason).toBe("refused");
    expect(error.message).toContain("memberAttribute");
  });

  it("a closed port is unavailable for provision too", async () => {
    const port = await freePort();
    const error = await connectorFailure(
      ldapConnector.provision(target({}, { address: `ldap://127.0.0.1:${port}` }), {
        login: alice,
        entitlement: { group: admins },
      }),
    );
    expect(error.reason).toBe("unavailable");
  });

  it("a wrong password is refused on provision, without the password", async () => {
    const wrong = `wrong-${randomBytes(8).toString("hex")}`;
    const error = await connectorFailure(
      ldapConnector.provision(target({}, { credential: wrong }), { login: bob, entitlement: { group: admins } }),
    );
    expect(error.reason).toBe("refused");
    expect(error.message).not.toContain(wrong);
    expect(await membersSeen(admins)).not.toContain(normalizeDn(bob));
  });
});

describe("groupOfUniqueNames (uniqueMember)", () => {
  const options = { memberAttribute: "uniqueMember" };

  it("provision, observe and revoke use uniqueMember", async () => {
    const entitlement = { group: auditors };
    await ldapConnector.provision(target(options), { login: carol, entitlement });
    await ldapConnector.provision(target(options), { login: carol, entitlement });
    expect(await membersSeen(auditors, "uniqueMember")).toContain(normalizeDn(carol));
    expect(await ldapConnector.observe(target(options), entitlement)).toEqual([normalizeDn(carol)]);

    await ldapConnector.revoke(target(options), { login: carol, entitlement });
    await ldapConnector.revoke(target(options), { login: carol, entitlement });
    expect(await membersSeen(auditors, "uniqueMember")).not.toContain(normalizeDn(carol));
    expect(await ldapConnector.observe(target(options), entitlement)).toEqual([]);
  });
});

describe("discover()", () => {
  it("reports the members of the privileged groups, minus ignored ones, with last activity where known", async () => {
    const ops = await addGroup(slapd, `ops-${suffix}`, [alice, bob, carol]);
    created.unshift(ops);
    await bindAs(slapd, alice, `alice-pw-${suffix}`); // slapd's lastbind records pwdLastSuccess

    const found = await ldapConnector.discover(target({ privilegedGroups: [admins, ops], ignore: [carol] }));
    expect(found.map((f) => [f.login, f.privilege])).toEqual(
      [
        [normalizeDn(alice)!, `member of ${admins}`],
        [normalizeDn(alice)!, `member of ${ops}`],
        [normalizeDn(bob)!, `member of ${ops}`],
      ].sort((a, b) => a[0]!.localeCompare(b[0]!) || a[1]!.localeCompare(b[1]!)),
    );
    const aliceInOps = found.find((f) => f.login === normalizeDn(alice) && f.entitlement?.group === ops)!;
    expect(aliceInOps.entitlement).toEqual({ group: ops });
    expect(aliceInOps.lastActivity).not.toBeNull();
    expect(new Date(aliceInOps.lastActivity!).toISOString()).toBe(aliceInOps.lastActivity);
    expect(found.find((f) => f.login === normalizeDn(bob))!.lastActivity).toBeNull();

    // The entitlement discovery reports is one revoke can remove.
    await ldapConnector.revoke(target(), { login: bob, entitlement: { group: ops } });
    expect(await membersSeen(ops)).not.toContain(normalizeDn(bob));
  });

  it("reports nothing without privileged groups", async () => {
    expect(await ldapConnector.discover(target())).toEqual([]);
  });
});

describe("password rotation (setPassword / verifyPassword)", () => {
  let erin: string;
  const oldPassword = `erin-old-${randomBytes(8).toString("hex")}`;
  const newPassword = `erin-new-${randomBytes(8).toString("hex")}`;

  beforeAll(async () => {
    erin = await addPerson(slapd, `erin-${suffix}`, { password: oldPassword });
    created.unshift(erin);
  });

  /** Whether a plain client can bind as the DN with the password. */
  const canBind = (dn: string, password: string) =>
    bindAs(slapd, dn, password).then(
      () => true,
      (error: { code?: number }) => {
        if (error.code === 49) return false;
        throw error;
      },
    );

  it("setPassword replaces the password: the old one no longer binds, the new one does", async () => {
    expect(await canBind(erin, oldPassword)).toBe(true);
    await ldapConnector.setPassword!(target(), { login: erin, password: newPassword });
    expect(await canBind(erin, oldPassword)).toBe(false);
    expect(await canBind(erin, newPassword)).toBe(true);
    // The server hashed it (Password Modify), so the clear value is not what it stores.
    const stored = await readAttribute(slapd, erin, "userPassword");
    expect(stored).toHaveLength(1);
    expect(stored[0]).not.toContain(newPassword);
    expect(stored[0]).toMatch(/^\{[A-Z0-9-]+\}/);
  });

  it("verifyPassword signs in: true for the current password, false for the old one and a wrong one", async () => {
    expect(await ldapConnector.verifyPassword!(target(), { login: erin, password: newPassword })).toBe(true);
    expect(await ldapConnector.verifyPassword!(target(), { login: erin, password: oldPassword })).toBe(false);
    expect(await ldapConnector.verifyPassword!(target(), { login: erin, password: "" })).toBe(false);
    // Setting it back (what the vault does when a rotation fails) works the same way.
    await ldapConnector.setPassword!(target(), { login: erin, password: oldPassword });
    expect(await ldapConnector.verifyPassword!(target(), { login: erin, password: oldPassword })).toBe(true);
    expect(await ldapConnector.verifyPassword!(target(), { login: erin, password: newPassword })).toBe(false);
  });

  it("verifyPassword needs no admin credential (it binds as the login only)", async () => {
    const alone = target({}, { credential: null });
    expect(await ldapConnector.verifyPassword!(alone, { login: erin, password: oldPassword })).toBe(true);
  });

  it("a missing entry is refused, without the password", async () => {
    const ghost = `uid=ghost-${suffix},${slapd.peopleDn}`;
    const error = await connectorFailure(ldapConnector.setPassword!(target(), { login: ghost, password: newPassword }));
    expect(error.reason).toBe("refused");
    expect(error.message).toContain("no entry");
    expect(error.message).not.toContain(newPassword);
    expect(error.message).not.toContain(slapd.rootPassword);
    // Binding as a DN with no entry is an invalid credential, not an error.
    expect(await ldapConnector.verifyPassword!(target(), { login: ghost, password: newPassword })).toBe(false);
  });

  it("a login that is not a DN is refused before connecting", async () => {
    const error = await connectorFailure(
      ldapConnector.setPassword!(target(), { login: "erin)(uid=*", password: newPassword }),
    );
    expect(error.reason).toBe("refused");
    expect(error.message).not.toContain(newPassword);
  });

  it("an empty password is refused (the server would make one up)", async () => {
    const error = await connectorFailure(ldapConnector.setPassword!(target(), { login: erin, password: "" }));
    expect(error.reason).toBe("refused");
    expect(await canBind(erin, oldPassword)).toBe(true);
  });

  it("a wrong admin password is refused and changes nothing", async () => {
    const wrong = `wrong-${randomBytes(8).toString("hex")}`;
    const error = await connectorFailure(
      ldapConnector.setPassword!(target({}, { credential: wrong }), { login: erin, password: newPassword }),
    );
    expect(error.reason).toBe("refused");
    expect(error.message).not.toContain(wrong);
    expect(error.message).not.toContain(newPassword);
    expect(await canBind(erin, oldPassword)).toBe(true);
  });

  it("a closed port is unavailable for both, without the password", async () => {
    const closed = target({}, { address: `ldap://127.0.0.1:${await freePort()}` });
    for (const promise of [
      ldapConnector.setPassword!(closed, { login: erin, password: newPassword }),
      ldapConnector.verifyPassword!(closed, { login: erin, password: newPassword }),
    ]) {
      const error = await connectorFailure(promise);
      expect(error.reason).toBe("unavailable");
      expect(error.message).not.toContain(newPassword);
      expect(error.message).not.toContain(slapd.rootPassword);
    }
  });

  it("an aborted call is unavailable", async () => {
    const controller = new AbortController();
    controller.abort();
    const error = await connectorFailure(
      ldapConnector.verifyPassword!(target(), { login: erin, password: oldPassword }, { signal: controller.signal }),
    );
    expect(error.reason).toBe("unavailable");
  });
});

describe("with the least privileges the docs ask for (a second slapd with ACLs)", () => {
  let restricted: Slapd;
  const servicePassword = `svc-${randomBytes(8).toString("hex")}`;
  const readerPassword = `reader-${randomBytes(8).toString("hex")}`;
  let service: string;
  let reader: string;
  let dave: string;
  let group: string;

  beforeAll(async () => {
    // The ACL of docs/connectors/ldap.md, with the service account's DN filled in.
    restricted = await startSlapd({ access: serviceAccountAcl("stint-svc") });
    service = await addPerson(restricted, "stint-svc", { password: servicePassword });
    reader = await addPerson(restricted, "reader", { password: readerPassword });
    dave = await addPerson(restricted, "dave");
    group = await addGroup(restricted, "dba", []);
  });

  afterAll(async () => {
    await restricted?.stop();
  });

  const as = (bindDn: string, credential: string): ConnectorTarget => ({
    name: "restricted",
    address: restricted.url,
    options: { bindDn, privilegedGroups: [group] },
    credential,
  });

  it("the service account can provision, observe, discover and revoke", async () => {
    const target = as(service, servicePassword);
    expect((await ldapConnector.test(target)).detail).toContain("bound as uid=stint-svc");
    await ldapConnector.provision(target, { login: dave, entitlement: { group } });
    expect((await readAttribute(restricted, group, "member")).map((dn) => normalizeDn(dn))).toContain(
      normalizeDn(dave),
    );
    expect(await ldapConnector.observe(target, { group })).toEqual([normalizeDn(dave)]);
    expect((await ldapConnector.discover(target)).map((f) => f.login)).toEqual([normalizeDn(dave)]);
    await ldapConnector.revoke(target, { login: dave, entitlement: { group } });
    expect(await ldapConnector.observe(target, { group })).toEqual([]);
  });

  it("the service account can rotate a password; one that may only read is refused", async () => {
    const frank = await addPerson(restricted, "frank", { password: "frank-old-pw" });
    const next = `frank-${randomBytes(8).toString("hex")}`;
    await ldapConnector.setPassword!(as(service, servicePassword), { login: frank, password: next });
    expect(await ldapConnector.verifyPassword!(as(service, servicePassword), { login: frank, password: next })).toBe(
      true,
    );
    const error = await connectorFailure(
      ldapConnector.setPassword!(as(reader, readerPassword), { login: frank, password: "another-pw" }),
    );
    expect(error.reason).toBe("refused");
    expect(error.message).toContain("insufficientAccessRights (50)");
    expect(error.message).not.toContain("another-pw");
    expect(await ldapConnector.verifyPassword!(as(service, servicePassword), { login: frank, password: next })).toBe(
      true,
    );
  });

  it("an account that may only read is refused, in the server's words, without its password", async () => {
    const error = await connectorFailure(
      ldapConnector.provision(as(reader, readerPassword), { login: dave, entitlement: { group } }),
    );
    expect(error.reason).toBe("refused");
    expect(error.message).toContain("insufficientAccessRights (50)");
    expect(error.message).not.toContain(readerPassword);
    expect(await ldapConnector.observe(as(service, servicePassword), { group })).toEqual([]);
  });
});
