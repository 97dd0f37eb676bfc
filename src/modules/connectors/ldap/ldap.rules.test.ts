import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  checkEntitlement,
  checkLogin,
  checkOptions,
  describeResult,
  escapeDnValue,
  fileTimeToIso,
  generalizedTimeToIso,
  lastActivityOf,
  leavesConnectionAsItWas,
  memberDn,
  normalizeDn,
  parseDn,
  sameDn,
  settingsOf,
} from "./ldap.rules.js";

describe("parseDn", () => {
  it.each([
    [
      "uid=alice,ou=people,dc=stint,dc=test",
      [
        ["uid", "alice"],
        ["ou", "people"],
        ["dc", "stint"],
        ["dc", "test"],
      ],
    ],
    [
      "CN=Smith\\, Ann,OU=Staff",
      [
        ["CN", "Smith, Ann"],
        ["OU", "Staff"],
      ],
    ],
    ["cn=a\\2cb", [["cn", "a,b"]]],
    [
      "cn=\\23hash,o=x",
      [
        ["cn", "#hash"],
        ["o", "x"],
      ],
    ],
    ["cn=\\ padded\\ ", [["cn", " padded "]]],
    ["cn=J\\C3\\BCrgen", [["cn", "Jürgen"]]],
    ["cn=Jürgen", [["cn", "Jürgen"]]],
    ["cn=a=b", [["cn", "a=b"]]],
    [
      "uid=alice, ou=people",
      [
        ["uid", "alice"],
        ["ou", "people"],
      ],
    ],
    ["2.5.4.3=x", [["2.5.4.3", "x"]]],
    ["cn=#04024869", [["cn", "#04024869"]]],
  ])("reads %s", (text, expected) => {
    const parsed = parseDn(text);
    expect(parsed.ok).toBe(true);
    if (parsed.ok) expect(parsed.rdns.flat().map((ava) => [ava.type, ava.value])).toEqual(expected);
  });

  it("reads a multi-valued RDN", () => {
    const parsed = parseDn("cn=a+sn=b,dc=x");
    expect(parsed.ok && parsed.rdns.map((rdn) => rdn.length)).toEqual([2, 1]);
  });

  it.each([
    ["", "empty"],
    ["alice", "="],
    ["uid=alice,", "attribute type"],
    [",uid=alice", "attribute type"],
    ["uid=", "empty value"],
    ["uid=a;b", "escaped"],
    ["uid=a<b", "escaped"],
    ['uid="alice"', "escaped"],
    ["uid=a\\b", "backslash"],
    ["uid=a\\", "backslash"],
    ["uid= alice", "start with an unescaped space"],
    ["uid=alice ,dc=x", "end with an unescaped space"],
    ["uid=a\nb", "control"],
    ["uid=a\\00b", "NUL"],
    ["uid=\\ff\\fe", "UTF-8"],
    ["uid=#zz", "hex"],
    ["1uid=x", "attribute type"],
    ["uid=x;dc=y", "escaped"],
    ["x".repeat(1100), "at most"],
  ])("refuses %j", (text, problem) => {
    const parsed = parseDn(text);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.problem).toContain(problem);
  });

  it("a value with a close paren and a star is fine (DNs are not filters)", () => {
    expect(parseDn("cn=a)(b*").ok).toBe(true);
  });
});

describe("normalizeDn", () => {
  it.each([
    ["UID=Alice,OU=People,DC=Stint,DC=Test", "uid=alice,ou=people,dc=stint,dc=test"],
    ["uid=alice, ou=people", "uid=alice,ou=people"],
    ["CN=Smith\\, Ann", "cn=smith\\, ann"],
    ["cn=smith\\2c ann", "cn=smith\\, ann"],
    ["cn=a\\20\\20\\20b", "cn=a b"],
    ["commonName=x,domainComponent=y", "cn=x,dc=y"],
    ["2.5.4.3=x", "cn=x"],
    ["sn=b+cn=a", "cn=a+sn=b"],
    ["cn=\\#x", "cn=\\#x"],
    ["cn=#0A0B", "cn=#0a0b"],
  ])("%s → %s", (text, expected) => {
    expect(normalizeDn(text)).toBe(expected);
  });

  it("is null for a non-DN, and sameDn is then false", () => {
    expect(normalizeDn("alice")).toBeNull();
    expect(sameDn("alice", "alice")).toBe(false);
    expect(sameDn("UID=alice,dc=x", "uid=ALICE, dc=X")).toBe(true);
    expect(sameDn("uid=alice,dc=x", "uid=alice,dc=y")).toBe(false);
  });

  const value = fc
    .string({ unit: "binary", minLength: 1, maxLength: 20 })
    .filter((v) => !v.includes("\u0000") && !/[\ud800-\udfff]/.test(v.replace(/[\ud800-\udbff][\udc00-\udfff]/g, "")));

  it("escapeDnValue round-trips through parseDn", () => {
    fc.assert(
      fc.property(value, (v) => {
        const parsed = parseDn(`cn=${escapeDnValue(v)},dc=x`);
        expect(parsed.ok).toBe(true);
        if (parsed.ok) expect(parsed.rdns[0]![0]!.value).toBe(v);
      }),
    );
  });

  it("is idempotent", () => {
    fc.assert(
      fc.property(value, value, (a, b) => {
        const once = normalizeDn(`cn=${escapeDnValue(a)}+uid=${escapeDnValue(b)},OU=People`);
        expect(once).not.toBeNull();
        expect(normalizeDn(once!)).toBe(once);
      }),
    );
  });
});

describe("memberDn", () => {
  it("drops uniqueMember's optional UID", () => {
    expect(memberDn("uid=a,dc=x#'0101'B")).toBe("uid=a,dc=x");
    expect(memberDn("uid=a,dc=x")).toBe("uid=a,dc=x");
  });
});

describe("checkOptions", () => {
  it("accepts a full set", () => {
    expect(
      checkOptions({
        bindDn: "cn=admin,dc=x",
        memberAttribute: "uniqueMember",
        privilegedGroups: ["cn=admins,ou=groups,dc=x"],
        ignore: ["uid=breakglass,ou=people,dc=x"],
        startTls: true,
      }),
    ).toEqual([]);
  });

  it("names each problem", () => {
    const problems = checkOptions({
      memberAttribute: "memberUid",
      privilegedGroups: ["cn=ok,dc=x", "not a dn"],
      ignore: "uid=a,dc=x",
      startTls: "yes",
      binddn: "cn=x",
    });
    expect(problems).toEqual([
      expect.stringContaining("options.binddn is not an ldap option"),
      expect.stringContaining("options.bindDn is required"),
      expect.stringContaining("options.memberAttribute must be"),
      expect.stringContaining("options.privilegedGroups[1] is not a DN"),
      expect.stringContaining("options.ignore must be a list"),
      expect.stringContaining("options.startTls must be true or false"),
    ]);
    expect(checkOptions({ bindDn: "admin" })).toEqual([expect.stringContaining("options.bindDn is not a DN")]);
  });

  it("fills in defaults", () => {
    expect(settingsOf({ bindDn: "cn=admin,dc=x" })).toEqual({
      bindDn: "cn=admin,dc=x",
      memberAttribute: "member",
      privilegedGroups: [],
      ignore: [],
      startTls: false,
      ca: null,
    });
  });
});

describe("checkEntitlement and checkLogin", () => {
  it("wants exactly a group DN", () => {
    expect(checkEntitlement({ group: "cn=admins,ou=groups,dc=x" })).toEqual([]);
    expect(checkEntitlement({})).toEqual([expect.stringContaining("entitlement.group is required")]);
    expect(checkEntitlement({ group: "admins" })).toEqual([expect.stringContaining("not a DN")]);
    expect(checkEntitlement({ group: 1 })).toEqual([expect.stringContaining("must be a DN")]);
    expect(checkEntitlement({ group: "cn=a,dc=x", role: "x" })).toEqual([
      expect.stringContaining("entitlement.role is not"),
    ]);
  });

  it("wants a DN as the login", () => {
    expect(checkLogin("uid=alice,ou=people,dc=stint,dc=test")).toEqual([]);
    expect(checkLogin("CN=Ann Smith,OU=Staff,DC=corp,DC=example")).toEqual([]);
    expect(checkLogin("alice")).toEqual([expect.stringContaining("must be a DN")]);
    expect(checkLogin("uid=alice,ou=people,dc=x\nuid=eve")).toEqual([expect.stringContaining("control")]);
  });
});

describe("timestamps", () => {
  it.each([
    ["20240131120000Z", "2024-01-31T12:00:00.000Z"],
    ["20240131120000.25Z", "2024-01-31T12:00:00.250Z"],
    ["202401311200Z", "2024-01-31T12:00:00.000Z"],
    ["20240131120000+0130", "2024-01-31T10:30:00.000Z"],
    ["20240131003000-01", "2024-01-31T01:30:00.000Z"],
    ["20240231120000Z", null],
    ["20241301120000Z", null],
    ["2024-01-31", null],
  ])("GeneralizedTime %s → %s", (text, iso) => {
    expect(generalizedTimeToIso(text)).toBe(iso);
  });

  it.each([
    ["133501824000000000", "2024-01-20T00:00:00.000Z"],
    ["116444736000000000", "1970-01-01T00:00:00.000Z"],
    ["0", null],
    ["9223372036854775807", null],
    ["abc", null],
  ])("FILETIME %s → %s", (text, iso) => {
    expect(fileTimeToIso(text)).toBe(iso);
  });

  it("takes the latest", () => {
    expect(lastActivityOf({})).toBeNull();
    expect(
      lastActivityOf({
        pwdLastSuccess: ["20240101000000Z"],
        authTimestamp: ["20240301000000Z"],
        lastLogonTimestamp: ["133500672000000000"],
      }),
    ).toBe("2024-03-01T00:00:00.000Z");
  });
});

describe("describeResult", () => {
  it("names the result and keeps the server's text, without ldapts' suffix", () => {
    expect(describeResult(50, " Code: 0x32")).toBe("insufficientAccessRights (50)");
    expect(describeResult(65, "object class 'groupOfNames' requires attribute 'member' Code: 0x41")).toBe(
      "objectClassViolation (65): object class 'groupOfNames' requires attribute 'member'",
    );
    expect(describeResult(4096, "odd\nserver")).toBe("result (4096): odd server");
  });
});

describe("leavesConnectionAsItWas", () => {
  it.each([
    [16, true], // noSuchAttribute: revoke of a value that is not there
    [20, true], // attributeOrValueExists: provision of a member already there
    [32, true], // noSuchObject
    [50, true], // insufficientAccessRights
    [65, true], // objectClassViolation
    [1, false], // operationsError
    [2, false], // protocolError
    [3, false], // timeLimitExceeded
    [8, false], // strongerAuthRequired (also slapd's notice of disconnection)
    [49, false], // invalidCredentials: a bind that fails leaves the connection anonymous
    [51, false], // busy
    [52, false], // unavailable
    [53, false], // unwillingToPerform
    [80, false], // other
  ])("result %i: reusable %s", (code, reusable) => {
    expect(leavesConnectionAsItWas(code)).toBe(reusable);
  });
});
