import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compareFindings, driftAction, findDrift, normalizeLogin } from "./reconcile.rules.js";

describe("drift", () => {
  it("reports privilege without an activation, and activations the target lacks", () => {
    expect(
      findDrift("postgres", { active: ["alice", "bob"], inFlux: [], observed: ["alice", "mallory"], ignored: [] }),
    ).toEqual([
      { login: "bob", kind: "missing" },
      { login: "mallory", kind: "unexpected" },
    ]);
  });

  it("leaves grants in flux and ignored logins alone", () => {
    expect(
      findDrift("postgres", {
        active: ["alice"],
        inFlux: ["carol", "alice"],
        observed: ["carol", "svc"],
        ignored: ["svc"],
      }),
    ).toEqual([]);
  });

  it("a grant that just ended is not unexpected, but does not hide an active one that is missing", () => {
    expect(
      findDrift("postgres", {
        active: ["alice"],
        inFlux: [],
        recentlyEnded: ["alice", "bob"],
        observed: ["bob"],
        ignored: [],
      }),
    ).toEqual([{ login: "alice", kind: "missing" }]);
  });

  it("a membership another role's grant of the same entitlement backs is never unexpected, nor missing for this role", () => {
    expect(
      findDrift("postgres", {
        active: ["alice"],
        inFlux: [],
        sharedWith: ["alice", "bob", "carol"],
        observed: ["bob", "mallory"],
        ignored: [],
      }),
    ).toEqual([
      { login: "alice", kind: "missing" },
      { login: "mallory", kind: "unexpected" },
    ]);
  });

  it("compares LDAP DNs as LDAP does", () => {
    expect(normalizeLogin("ldap", "UID=Alice, OU=People,dc=Example,dc=org")).toBe(
      "uid=alice,ou=people,dc=example,dc=org",
    );
    expect(
      findDrift("ldap", {
        active: ["uid=alice,ou=people,dc=example,dc=org"],
        inFlux: [],
        observed: ["UID=Alice, ou=People, dc=example, dc=org"],
        ignored: [],
      }),
    ).toEqual([]);
    expect(normalizeLogin("postgres", "Alice")).toBe("Alice");
  });

  it("never reports a login both ways, and nothing when the target matches the grants", () => {
    const logins = fc.uniqueArray(fc.constantFrom<string>("a", "b", "c", "d", "e", "f"), { maxLength: 6 });
    fc.assert(
      fc.property(logins, logins, logins, (active, inFlux, observed) => {
        const drift = findDrift("postgres", { active, inFlux, observed, ignored: [] });
        const unexpected = drift.filter((d) => d.kind === "unexpected").map((d) => d.login);
        const missing = drift.filter((d) => d.kind === "missing").map((d) => d.login);
        expect(unexpected.every((l) => observed.includes(l) && !active.includes(l) && !inFlux.includes(l))).toBe(true);
        expect(missing.every((l) => active.includes(l) && !observed.includes(l) && !inFlux.includes(l))).toBe(true);
        expect(findDrift("postgres", { active, inFlux, observed: active, ignored: [] })).toEqual([]);
      }),
    );
  });
});

describe("findings across cycles", () => {
  it("opens new drift once, keeps what is seen again, closes what is gone", () => {
    const open = [
      { id: "1", login: "mallory", kind: "unexpected" as const },
      { id: "2", login: "eve", kind: "unexpected" as const },
    ];
    const result = compareFindings("postgres", open, [
      { login: "mallory", kind: "unexpected" },
      { login: "bob", kind: "missing" },
    ]);
    expect(result.opened).toEqual([{ login: "bob", kind: "missing" }]);
    expect(result.seen.map((f) => f.id)).toEqual(["1"]);
    expect(result.closed.map((f) => f.id)).toEqual(["2"]);
  });
});

describe("drift action", () => {
  it("removes privilege Stint left behind for an ended grant whatever the policy; reports other unexpected privilege under drift: report", () => {
    expect(driftAction({ kind: "unexpected", policyRemove: false, leftByStint: true })).toBe("removing");
    expect(driftAction({ kind: "unexpected", policyRemove: false, leftByStint: false })).toBe("reported");
    expect(driftAction({ kind: "unexpected", policyRemove: true, leftByStint: false })).toBe("removing");
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.boolean(),
        (policyRemove, leftByStint) => driftAction({ kind: "missing", policyRemove, leftByStint }) === "reprovisioning",
      ),
    );
  });
});
