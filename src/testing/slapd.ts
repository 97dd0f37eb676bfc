/**
 * Test support: a real OpenLDAP slapd on 127.0.0.1 with its own slapd.conf and mdb
 * database in a temp dir (never /etc/ldap), holding `dc=stint,dc=test` with
 * `ou=people` and `ou=groups`. Needs Debian's slapd (/usr/sbin/slapd, modules in
 * /usr/lib/ldap, schemas in /etc/ldap/schema).
 *
 *   const slapd = await startSlapd();
 *   const alice = await addPerson(slapd, "alice", { password: "pw" });  // uid=alice,ou=people,…
 *   const admins = await addGroup(slapd, "admins", [alice]);            // cn=admins,ou=groups,… (groupOfNames)
 *   …
 *   await slapd.stop();
 *
 * `lastbind on` is set, so a successful bind as a person records `pwdLastSuccess`.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { superviseChild, type ChildServer } from "./child-server.js";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Attribute, Change, Client } from "ldapts";
import { freePort } from "./ports.js";
export { freePort };

export interface Slapd {
  /** `ldap://127.0.0.1:<port>` */
  url: string;
  /** `ldaps://127.0.0.1:<port>` with `tls` (StartTLS is offered on `url` then too), else null. */
  ldapsUrl: string | null;
  /** `dc=stint,dc=test` */
  baseDn: string;
  /** `ou=people,dc=stint,dc=test` */
  peopleDn: string;
  /** `ou=groups,dc=stint,dc=test` */
  groupsDn: string;
  /** The rootdn (no entry of its own; bypasses ACLs): `cn=admin,dc=stint,dc=test` */
  rootDn: string;
  /** Random per server. */
  rootPassword: string;
  /** slapd's process id (a new one after `restart`). */
  readonly pid: number;
  /** Kills slapd with SIGKILL (no goodbye to any client) and starts it again on the same port and data. */
  restart(): Promise<void>;
  /** Kills slapd and removes its directory. */
  stop(): Promise<void>;
}

/** What slapd's monitor backend counts since it started (the read's own bind and connection left out). */
export interface SlapdCounts {
  /** Bind operations completed. */
  binds: number;
  /** Connections accepted. */
  connections: number;
  /** Connections open now. */
  open: number;
}

const BASE_DN = "dc=stint,dc=test";
const SCHEMAS = ["core", "cosine", "inetorgperson", "nis"];

export interface SlapdOptions {
  /**
   * slapd.conf `access` directives for the database, one string each (default: none, which
   * lets everyone read and only the rootdn write). Use `{{base}}` for the base DN.
   */
  access?: string[];
  /** slapd.conf lines before the database, e.g. `restrict extended=1.3.6.1.4.1.4203.1.11.3`. */
  global?: string[];
  /** A server certificate and its key (PEM, e.g. from `createTestCa().issue`): slapd offers StartTLS and ldaps://. */
  tls?: { cert: string; key: string };
}

/**
 * The ACL of docs/connectors/ldap.md for a service account `uid=<uid>,ou=people,…`: it may write member and
 * uniqueMember of the groups and userPassword of any entry; everyone signed in reads the rest.
 */
export function serviceAccountAcl(uid: string): string[] {
  const service = `dn.exact="uid=${uid},ou=people,{{base}}"`;
  return [
    `access to attrs=userPassword by ${service} write by self write by anonymous auth by * none`,
    `access to dn.one="ou=groups,{{base}}" attrs=member,uniqueMember by ${service} write by users read`,
    "access to * by users read",
  ];
}

export async function startSlapd(options: SlapdOptions = {}): Promise<Slapd> {
  const dir = await mkdtemp(join(tmpdir(), "stint-slapd-"));
  try {
    await mkdir(join(dir, "data"), { mode: 0o700 });
    const rootDn = `cn=admin,${BASE_DN}`;
    const rootPassword = randomBytes(12).toString("hex");
    const config = join(dir, "slapd.conf");
    const tlsLines: string[] = [];
    if (options.tls) {
      await writeFile(join(dir, "server.crt"), options.tls.cert, { mode: 0o600 });
      await writeFile(join(dir, "server.key"), options.tls.key, { mode: 0o600 });
      tlsLines.push(
        `TLSCertificateFile ${join(dir, "server.crt")}`,
        `TLSCertificateKeyFile ${join(dir, "server.key")}`,
      );
    }
    await writeFile(
      config,
      [
        ...SCHEMAS.map((schema) => `include /etc/ldap/schema/${schema}.schema`),
        `pidfile ${join(dir, "slapd.pid")}`,
        `argsfile ${join(dir, "slapd.args")}`,
        ...(options.global ?? []),
        ...tlsLines,
        "modulepath /usr/lib/ldap",
        "moduleload back_mdb",
        "database mdb",
        "maxsize 67108864",
        `suffix "${BASE_DN}"`,
        `rootdn "${rootDn}"`,
        `rootpw ${rootPassword}`,
        `directory ${join(dir, "data")}`,
        "lastbind on",
        "index objectClass eq",
        ...(options.access ?? []).map((line) => line.replaceAll("{{base}}", BASE_DN)),
        // cn=Monitor, readable by the rootdn only: what slapd counts (binds, connections), see slapdCounts().
        "database monitor",
        `access to * by dn.exact="${rootDn}" read by * none`,
        "",
      ].join("\n"),
      { mode: 0o600 },
    );

    // A port can be taken between freePort() and slapd's bind; try a few.
    for (let attempt = 1; ; attempt += 1) {
      const port = await freePort();
      const url = `ldap://127.0.0.1:${port}`;
      const ldapsUrl = options.tls ? `ldaps://127.0.0.1:${await freePort()}` : null;
      const urls = [url, ...(ldapsUrl ? [ldapsUrl] : [])];
      let server: ChildServer & { pid: number };
      try {
        server = await runSlapd(config, dir, urls, rootDn, rootPassword);
      } catch (error) {
        if (attempt < 3 && /bind|address already in use/i.test((error as Error).message)) continue;
        throw error;
      }
      const slapd: Slapd = {
        url,
        ldapsUrl,
        baseDn: BASE_DN,
        peopleDn: `ou=people,${BASE_DN}`,
        groupsDn: `ou=groups,${BASE_DN}`,
        rootDn,
        rootPassword,
        get pid() {
          return server.pid;
        },
        restart: async () => {
          process.kill(server.pid, "SIGKILL");
          await server.stop();
          server = await runSlapd(config, dir, urls, rootDn, rootPassword);
          countReads.delete(slapd);
        },
        stop: async () => {
          await server.stop();
          await rm(dir, { recursive: true, force: true });
        },
      };
      try {
        await asRoot(slapd, async (client) => {
          await client.add(BASE_DN, { objectClass: ["top", "dcObject", "organization"], dc: "stint", o: "Stint" });
          await client.add(slapd.peopleDn, { objectClass: ["top", "organizationalUnit"], ou: "people" });
          await client.add(slapd.groupsDn, { objectClass: ["top", "organizationalUnit"], ou: "groups" });
        });
      } catch (error) {
        await slapd.stop();
        throw error;
      }
      return slapd;
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/** Starts slapd on `urls` with `config` and waits until the rootdn can bind; throws with its log when it cannot. */
async function runSlapd(
  config: string,
  dir: string,
  urls: string[],
  rootDn: string,
  rootPassword: string,
): Promise<ChildServer & { pid: number }> {
  // `-d 0` keeps slapd in the foreground (no fork), so the child is slapd itself and can be killed.
  const url = urls[0]!;
  const child = spawn("/usr/sbin/slapd", ["-f", config, "-h", urls.map((u) => `${u}/`).join(" "), "-d", "0"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const server = superviseChild(child, { dir, signal: "SIGTERM", graceMs: 3000 });
  try {
    await waitForBind(url, rootDn, rootPassword, server.running, 10_000);
  } catch (error) {
    await server.stop();
    throw new Error(`slapd did not start: ${(error as Error).message}\n${server.log()}`);
  }
  return { ...server, pid: child.pid! };
}

/** slapdCounts() reads of each server since it (re)started: each read's own connection and bind. */
const countReads = new WeakMap<Slapd, number>();

/**
 * What the server's monitor backend counts now (see SlapdCounts): binds and connections less those of every
 * read so far, open connections less this read's (a closed one may still be counted for a moment: poll).
 */
export async function slapdCounts(slapd: Slapd): Promise<SlapdCounts> {
  const reads = (countReads.get(slapd) ?? 0) + 1;
  countReads.set(slapd, reads);
  return asRoot(slapd, async (client) => {
    const read = async (dn: string, attribute: string) => {
      const { searchEntries } = await client.search(dn, { scope: "base", attributes: [attribute] });
      return Number(searchEntries[0]?.[attribute]);
    };
    return {
      binds: (await read("cn=Bind,cn=Operations,cn=Monitor", "monitorOpCompleted")) - reads,
      connections: (await read("cn=Total,cn=Connections,cn=Monitor", "monitorCounter")) - reads,
      open: (await read("cn=Current,cn=Connections,cn=Monitor", "monitorCounter")) - 1,
    };
  });
}

const NAME = /^[a-z0-9][a-z0-9_.-]{0,63}$/i;

function checkName(name: string): string {
  if (!NAME.test(name)) throw new Error(`bad test entry name: ${name}`);
  return name;
}

/** Adds `uid=<uid>,ou=people,…` (inetOrgPerson, with a userPassword when given); returns its DN. */
export async function addPerson(slapd: Slapd, uid: string, options: { password?: string } = {}): Promise<string> {
  const dn = `uid=${checkName(uid)},${slapd.peopleDn}`;
  await asRoot(slapd, (client) =>
    client.add(dn, {
      objectClass: ["top", "person", "organizationalPerson", "inetOrgPerson"],
      uid,
      cn: uid,
      sn: uid,
      ...(options.password === undefined ? {} : { userPassword: options.password }),
    }),
  );
  return dn;
}

/**
 * Adds `cn=<cn>,ou=groups,…` with these member DNs; returns its DN. A groupOfNames
 * (attribute `member`) or groupOfUniqueNames (`uniqueMember`); both need at least one
 * member, so an empty list gets the group's own DN as a placeholder.
 */
export async function addGroup(
  slapd: Slapd,
  cn: string,
  members: string[],
  objectClass: "groupOfNames" | "groupOfUniqueNames" = "groupOfNames",
): Promise<string> {
  const dn = `cn=${checkName(cn)},${slapd.groupsDn}`;
  const attribute = objectClass === "groupOfNames" ? "member" : "uniqueMember";
  await asRoot(slapd, (client) =>
    client.add(dn, { objectClass: ["top", objectClass], cn, [attribute]: members.length > 0 ? members : [dn] }),
  );
  return dn;
}

/** The values of one attribute of an entry, as a plain client reads them (empty when the entry is missing). */
export async function readAttribute(slapd: Slapd, dn: string, attribute: string): Promise<string[]> {
  return asRoot(slapd, async (client) => {
    try {
      const { searchEntries } = await client.search(dn, { scope: "base", attributes: [attribute] });
      const value = searchEntries[0]?.[attribute];
      if (value === undefined) return [];
      return (Array.isArray(value) ? value : [value]).map((v) => (Buffer.isBuffer(v) ? v.toString("utf8") : v));
    } catch (error) {
      if ((error as { code?: number }).code === 32) return [];
      throw error;
    }
  });
}

/** Binds as `dn` with `password` (as the person would, e.g. to make slapd record pwdLastSuccess). */
export async function bindAs(slapd: Slapd, dn: string, password: string): Promise<void> {
  const client = new Client({ url: slapd.url, connectTimeout: 5000, timeout: 10_000 });
  try {
    await client.bind(dn, password);
  } finally {
    await client.unbind().catch(() => undefined);
  }
}

/** Deletes an entry; an entry that is not there is fine. */
export async function deleteEntry(slapd: Slapd, dn: string): Promise<void> {
  await asRoot(slapd, async (client) => {
    await client.del(dn).catch((error: { code?: number }) => {
      if (error.code !== 32) throw error;
    });
  });
}

/** Adds (or removes) one value of an attribute as the rootdn, bypassing Stint. */
export async function modifyAttribute(
  slapd: Slapd,
  dn: string,
  operation: "add" | "delete",
  attribute: string,
  value: string,
): Promise<void> {
  await asRoot(slapd, (client) =>
    client.modify(dn, new Change({ operation, modification: new Attribute({ type: attribute, values: [value] }) })),
  );
}

/** Runs `work` on a client bound as the rootdn, and closes it. */
export async function asRoot<T>(slapd: Slapd, work: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ url: slapd.url, connectTimeout: 5000, timeout: 10_000 });
  try {
    await client.bind(slapd.rootDn, slapd.rootPassword);
    return await work(client);
  } finally {
    await client.unbind().catch(() => undefined);
  }
}

async function waitForBind(
  url: string,
  dn: string,
  password: string,
  alive: () => boolean,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!alive()) throw new Error("slapd exited");
    const client = new Client({ url, connectTimeout: 1000, timeout: 2000 });
    try {
      await client.bind(dn, password);
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
    } finally {
      await client.unbind().catch(() => undefined);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
