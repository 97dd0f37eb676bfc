/**
 * Acceptance against a real OpenLDAP slapd and a real OpenSSH sshd (both started
 * for this file on loopback high ports): activation puts the user's DN into an
 * LDAP group and the unix user into a group on the host; expiry takes both away.
 * The admin credentials are stored through the API, sealed, as an operator would.
 */
import { randomBytes } from "node:crypto";
import { Client } from "ldapts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addGroup, addPerson, startSlapd, type Slapd } from "../../src/testing/slapd.js";
import {
  createGroup,
  createUser,
  deleteGroup,
  deleteUser,
  idGroups,
  startSshd,
  type Sshd,
} from "../../src/testing/sshd.js";
import { selfServicePolicy, targetsHarness, type TargetsHarness } from "../../src/testing/targets-harness.js";

const hex = randomBytes(4).toString("hex");
const erin = `stint_t_${hex}`; // a Stint user, an LDAP uid and a unix user at once
const opsGroup = `stint_ops_${hex}`;
const erinPassword = `pw-${randomBytes(8).toString("hex")}`;

let slapd: Slapd;
let sshd: Sshd;
let h: TargetsHarness;
let dbaGroupDn: string;
let erinDn: string;

/** What an application doing group-based authorization sees: erin binds and asks which groups list her. */
async function groupsOfErin(): Promise<string[]> {
  const client = new Client({ url: slapd.url });
  try {
    await client.bind(erinDn, erinPassword);
    const { searchEntries } = await client.search(slapd.groupsDn, {
      scope: "sub",
      filter: `(&(objectClass=groupOfNames)(member=${erinDn}))`,
      attributes: ["cn"],
    });
    return searchEntries.map((e) => String(e.cn)).sort();
  } finally {
    await client.unbind().catch(() => undefined);
  }
}

beforeAll(async () => {
  [slapd, sshd] = await Promise.all([startSlapd(), startSshd()]);
  erinDn = await addPerson(slapd, erin, { password: erinPassword });
  dbaGroupDn = await addGroup(slapd, `dba-${hex}`, []);
  await createUser(erin);
  await createGroup(opsGroup);

  h = await targetsHarness();
  await h.createUser(erin);
  await h.apply(`
apiVersion: stint/v1
policies:${selfServicePolicy("dir-self")}
targets:
  - name: corp-ldap
    kind: ldap
    address: ${slapd.url}
    credential: { secret: targets/corp-ldap/admin }
    identity: { template: "uid={{name}},${slapd.peopleDn}" }
    options: { bindDn: "${slapd.rootDn}" }
  - name: build-host
    kind: ssh-host
    address: ssh://root@127.0.0.1:${sshd.port}
    credential: { secret: targets/build-host/admin }
    options: { hostKey: "${sshd.hostKeyFingerprint}" }
roles:
  - name: ldap-dba
    target: corp-ldap
    entitlement: { group: "${dbaGroupDn}" }
    policy: dir-self
    risk: high
  - name: host-ops
    target: build-host
    entitlement: { group: ${opsGroup} }
    policy: dir-self
    risk: high
eligibility:
  - role: ldap-dba
    users: [${erin}]
  - role: host-ops
    users: [${erin}]
`);
  for (const [target, secret] of [
    ["corp-ldap", slapd.rootPassword],
    ["build-host", sshd.adminPrivateKey],
  ] as const) {
    const res = await h.admin("PUT", `/v1/targets/${target}/credential`, { secret });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  }
});

afterAll(async () => {
  await h?.server.cleanup();
  await deleteUser(erin).catch(() => undefined);
  await deleteGroup(opsGroup).catch(() => undefined);
  await Promise.all([slapd?.stop(), sshd?.stop()]);
});

describe("LDAP and Linux host targets", () => {
  it("both targets answer a connection test with the stored credentials, which never come back out", async () => {
    for (const target of ["corp-ldap", "build-host"]) {
      const res = await h.admin("POST", `/v1/targets/${target}/test`);
      expect(res.body, target).toEqual(expect.objectContaining({ ok: true }));
    }
    const listing = JSON.stringify((await h.admin("GET", "/v1/targets")).body);
    const audit = JSON.stringify((await h.admin("GET", "/v1/audit/events?limit=500")).body);
    for (const text of [listing, audit]) {
      expect(text).not.toContain(slapd.rootPassword);
      expect(text).not.toContain("PRIVATE KEY");
    }
    expect(listing).toContain('"stored":true');
  });

  it("LDAP: activation adds the user's DN to the group, expiry removes it", async () => {
    expect(await groupsOfErin()).toEqual([]);
    const request = await h.activate(erin, "ldap-dba");
    expect(request.state).toBe("active");
    expect(await groupsOfErin()).toEqual([`dba-${hex}`]);
    await h.expireAll();
    expect((await h.admin("GET", `/v1/activation-requests/${String(request.id)}`)).body.state).toBe("expired");
    expect(await groupsOfErin()).toEqual([]);
  });

  it("Linux host: after activation `id` shows the group, after expiry it does not", async () => {
    expect(await idGroups(erin)).not.toContain(opsGroup);
    const request = await h.activate(erin, "host-ops");
    expect(request.state).toBe("active");
    expect(await idGroups(erin)).toContain(opsGroup);
    await h.expireAll();
    expect(await idGroups(erin)).not.toContain(opsGroup);
    const grants = await h.admin("GET", "/v1/grants");
    expect(grants.body.items).toEqual([]);
  });
});
