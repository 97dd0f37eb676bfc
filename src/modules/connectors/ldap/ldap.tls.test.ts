/**
 * The LDAP connector over TLS against real slapd servers with certificates of a test CA (an internal CA, as
 * directories use): `options.tls.ca` makes ldaps:// and StartTLS work, and a peer in the middle (a certificate
 * of another CA, or of the right CA for another name, or no StartTLS at all) never receives the bind: the
 * admin password is not sent.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestCa } from "../../../testing/postgres-instance.js";
import { slapdCounts, startSlapd, type Slapd } from "../../../testing/slapd.js";
import { connectorFailure } from "../../../testing/connector-failure.js";
import type { ConnectorTarget } from "../connector.types.js";
import { ldapConnector, ldapPools } from "./ldap.connector.js";
import { checkOptions } from "./ldap.rules.js";

let caCert: string;
/** Certificate of the trusted CA for 127.0.0.1 and localhost. */
let good: Slapd;
/** The trusted CA's certificate, for another name (ldap.example): the right CA, the wrong server. */
let wrongName: Slapd;
/** A certificate for 127.0.0.1 from a CA nobody configured: a peer in the middle. */
let mallory: Slapd;
/** No TLS at all: StartTLS is refused. */
let plain: Slapd;

function target(slapd: Slapd, address: string, options: Record<string, unknown> = {}): ConnectorTarget {
  return {
    name: "directory",
    address,
    options: { bindDn: slapd.rootDn, ...options },
    credential: slapd.rootPassword,
  };
}

beforeAll(async () => {
  const ca = await createTestCa("Stint LDAP test CA");
  const other = await createTestCa("Mallory CA");
  caCert = ca.cert;
  [good, wrongName, mallory, plain] = await Promise.all([
    ca.issue(["127.0.0.1", "localhost"]).then((tls) => startSlapd({ tls })),
    ca.issue(["ldap.example"]).then((tls) => startSlapd({ tls })),
    other.issue(["127.0.0.1", "localhost"]).then((tls) => startSlapd({ tls })),
    startSlapd(),
  ]);
});

afterAll(async () => {
  await ldapPools.closeAll();
  await Promise.all([good, wrongName, mallory, plain].map((slapd) => slapd?.stop()));
});

describe("with options.tls.ca", () => {
  it("binds over ldaps:// and reports the server", async () => {
    const { detail } = await ldapConnector.test(target(good, good.ldapsUrl!, { tls: { ca: caCert } }));
    expect(detail).toContain(good.baseDn);
    expect(detail).toContain(good.rootDn);
  });

  it("binds after StartTLS on ldap://", async () => {
    const { detail } = await ldapConnector.test(target(good, good.url, { startTls: true, tls: { ca: caCert } }));
    expect(detail).toContain(good.rootDn);
  });

  it("refuses options.tls on ldap:// without StartTLS: nothing would be encrypted", async () => {
    const before = await slapdCounts(good);
    const error = await connectorFailure(ldapConnector.test(target(good, good.url, { tls: { ca: caCert } })));
    expect(error.reason).toBe("refused");
    expect(error.message).toMatch(/options\.tls is for an ldaps:\/\/ address or options\.startTls/);
    expect((await slapdCounts(good)).binds).toBe(before.binds);
  });
});

describe("a peer in the middle never receives the bind", () => {
  /** What, the server, ldaps:// (else StartTLS on ldap://), our CA given, the failure's reason. */
  const cases: [string, () => Slapd, boolean, boolean, "unavailable" | "refused"][] = [
    ["a certificate of another CA, over ldaps://", () => mallory, true, true, "unavailable"],
    ["a certificate of another CA, after StartTLS", () => mallory, false, true, "unavailable"],
    ["the trusted CA's certificate for another name, over ldaps://", () => wrongName, true, true, "unavailable"],
    ["the trusted CA's certificate for another name, after StartTLS", () => wrongName, false, true, "unavailable"],
    ["a chain of an unknown CA with Node's CAs only (no options.tls)", () => good, true, false, "unavailable"],
    // The server's own "no" to StartTLS: refused, and no bind in clear text follows.
    ["no StartTLS offered (a downgrade to clear text)", () => plain, false, true, "refused"],
  ];
  for (const [what, server, ldaps, caGiven, reason] of cases)
    it(what, async () => {
      const slapd = server();
      const options = { ...(ldaps ? {} : { startTls: true }), ...(caGiven ? { tls: { ca: caCert } } : {}) };
      const before = await slapdCounts(slapd);
      const error = await connectorFailure(
        ldapConnector.test(target(slapd, ldaps ? slapd.ldapsUrl! : slapd.url, options)),
      );
      expect(error.reason).toBe(reason);
      expect(error.message).toMatch(/certificate|altnames|StartTLS/i);
      expect(error.message).not.toContain(slapd.rootPassword);
      // The server saw no bind: the admin password never left Stint.
      expect((await slapdCounts(slapd)).binds).toBe(before.binds);
    });
});

describe("checkOptions: options.tls", () => {
  const bindDn = "cn=admin,dc=stint,dc=test";
  it("accepts PEM certificates", () => {
    expect(checkOptions({ bindDn, startTls: true, tls: { ca: caCert } })).toEqual([]);
  });
  it("refuses what is not a CA bundle, and unknown keys", () => {
    expect(checkOptions({ bindDn, tls: { ca: "not a certificate" } })).toEqual([
      "options.tls.ca must be PEM certificates (-----BEGIN CERTIFICATE-----)",
    ]);
    expect(checkOptions({ bindDn, tls: { ca: caCert, rejectUnauthorized: false } })).toEqual([
      expect.stringContaining("options.tls.rejectUnauthorized is not a TLS setting"),
    ]);
    expect(checkOptions({ bindDn, tls: "yes" })).toEqual([expect.stringContaining("options.tls must be a mapping")]);
  });
});
