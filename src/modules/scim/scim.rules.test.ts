import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  groupPatch,
  paging,
  parseFilter,
  scimBoolean,
  ScimError,
  ssoLinksOf,
  stintName,
  userFromResource,
  userPatch,
} from "./scim.rules.js";

describe("stintName", () => {
  it.each([
    ["Alice.Smith@Contoso.com", "alice.smith.contoso.com"],
    ["bob", "bob"],
    ["DB Readers (EU)", "db.readers.eu"],
    ["1st-line support", "st-line.support"],
    ["Ünïcødé", "n.c.d"],
  ])("%s → %s", (value, name) => {
    expect(stintName(value)).toBe(name);
  });
  it("always gives a valid Stint name or refuses", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (value) => {
        try {
          expect(stintName(value)).toMatch(/^[a-z][a-z0-9._-]{0,63}$/);
        } catch (error) {
          expect(error).toBeInstanceOf(ScimError);
        }
      }),
    );
  });
});

describe("filters, booleans and paging", () => {
  it('reads attribute eq "value" with escapes, case-insensitively, on the listed attributes only', () => {
    expect(parseFilter('userName eq "a\\"b@x"', ["userName"])).toEqual({ attribute: "userName", value: 'a"b@x' });
    expect(parseFilter('USERNAME EQ "x"', ["userName"])).toEqual({ attribute: "userName", value: "x" });
    expect(() => parseFilter('userName sw "x"', ["userName"])).toThrow(ScimError);
    expect(() => parseFilter('title eq "x"', ["userName"])).toThrow(/not supported/);
    expect(() => parseFilter('userName eq "x" or userName eq "y"', ["userName"])).toThrow(ScimError);
  });
  it("takes Entra's string booleans", () => {
    expect(scimBoolean("False", "active")).toBe(false);
    expect(scimBoolean("True", "active")).toBe(true);
    expect(scimBoolean(false, "active")).toBe(false);
    expect(() => scimBoolean("no", "active")).toThrow(ScimError);
  });
  it("pages from 1 and caps the count", () => {
    expect(paging(undefined, undefined)).toEqual({ offset: 0, limit: 100 });
    expect(paging(11, 10_000)).toEqual({ offset: 10, limit: 200 });
    expect(paging(0, 5)).toEqual({ offset: 0, limit: 5 });
    expect(() => paging("x", 1)).toThrow(ScimError);
  });
});

describe("users", () => {
  it("reads a full resource: display name from name parts, the primary e-mail", () => {
    expect(
      userFromResource({
        userName: "a@x",
        name: { givenName: "Ada", familyName: "Lovelace" },
        emails: [{ value: "other@x" }, { value: "a@x", primary: true }],
      }),
    ).toEqual({ userName: "a@x", externalId: null, active: true, displayName: "Ada Lovelace", email: "a@x" });
    expect(() => userFromResource({ active: true })).toThrow(/userName/);
  });
  it("reduces Entra's and Okta's PATCH forms to the same fields, ignoring attributes Stint does not keep", () => {
    const entra = userPatch({
      Operations: [
        { op: "Replace", path: "active", value: "False" },
        { op: "Add", path: 'emails[type eq "work"].value', value: "n@x" },
        { op: "Replace", path: "title", value: "Engineer" },
      ],
    });
    expect(entra).toEqual({ active: false, email: "n@x" });
    expect(userPatch({ Operations: [{ op: "replace", value: { active: false, displayName: "N" } }] })).toEqual({
      active: false,
      displayName: "N",
    });
    expect(() => userPatch({ Operations: [{ op: "move", path: "active" }] })).toThrow(ScimError);
    expect(() => userPatch({ Operations: [] })).toThrow(ScimError);
  });
});

describe("groups", () => {
  it("adds, removes by list or by filtered path, and replaces members", () => {
    expect(
      groupPatch({
        Operations: [
          { op: "Add", path: "members", value: [{ value: "a" }, { value: "b" }] },
          { op: "Remove", path: "members", value: [{ value: "c" }] },
          { op: "remove", path: 'members[value eq "d"]' },
        ],
      }),
    ).toEqual({ add: ["a", "b"], remove: ["c", "d"] });
    expect(groupPatch({ Operations: [{ op: "replace", path: "members", value: [{ value: "e" }] }] })).toMatchObject({
      replace: ["e"],
    });
    expect(groupPatch({ Operations: [{ op: "remove", path: "members" }] })).toMatchObject({ replace: [] });
    expect(() => groupPatch({ Operations: [{ op: "add", path: 'members[value eq "x"]' }] })).toThrow(ScimError);
    expect(() => groupPatch({ Operations: [{ op: "add", path: "owners", value: [] }] })).toThrow(/no attribute/);
  });
});

describe("ssoLinksOf: which issuer a SCIM service provisions for", () => {
  const corp = { id: "corp", issuer: "https://corp.example", scim: { service: "entra", match: "userName" as const } };
  it("pairs a SCIM service with the issuer of the providers that name it", () => {
    const web = { ...corp, id: "corp-web" };
    expect(ssoLinksOf([corp, web, { id: "partner", issuer: "https://partner.example" }], ["entra"])).toEqual([
      { service: "entra", provider: "corp", issuer: "https://corp.example", match: "userName" },
      { service: "entra", provider: "corp-web", issuer: "https://corp.example", match: "userName" },
    ]);
  });
  it("refuses a service that may not provision, and one service for two issuers (never across issuers)", () => {
    expect(() => ssoLinksOf([corp], [])).toThrow(/not in scimServices/);
    const partner = { ...corp, id: "partner", issuer: "https://partner.example" };
    expect(() => ssoLinksOf([corp, partner], ["entra"])).toThrow(/already provisions for corp/);
    const other = { ...corp, id: "corp-2", scim: { service: "entra", match: "externalId" as const } };
    expect(() => ssoLinksOf([corp, other], ["entra"])).toThrow(/one issuer and one match/);
  });
});
