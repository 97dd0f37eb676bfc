import { describe, expect, it } from "vitest";
import { custodyChanges, releaseProblem } from "../vault/vault.rules.js";
import {
  allowanceMac,
  credentialPathProblem,
  endpointOf,
  sessionSecretDecision,
  sessionSecretUsable,
  type SessionSecretFacts,
} from "./custody.rules.js";

describe("endpointOf", () => {
  const base = { kind: "ldap", address: "ldaps://dc:636", options: { bindDn: "cn=stint", groupBase: "ou=g" } };
  it("does not depend on key order and ignores options that do not decide where the credential goes", () => {
    expect(endpointOf({ ...base, options: { groupBase: "ou=g", bindDn: "cn=stint" } })).toBe(endpointOf(base));
    expect(endpointOf({ ...base, options: { ...base.options, groupBase: "ou=other", ignore: ["x"] } })).toBe(
      endpointOf(base),
    );
  });
  it("changes with the kind, the address, the bind DN, the host key, TLS and auth", () => {
    const changed = [
      { ...base, kind: "postgres" },
      { ...base, address: "ldaps://evil:636" },
      { ...base, options: { ...base.options, bindDn: "cn=other" } },
      { ...base, options: { ...base.options, hostKey: "SHA256:x" } },
      { ...base, options: { ...base.options, tls: { ca: "pem" } } },
      { ...base, options: { ...base.options, auth: { allow: ["password"] } } },
    ];
    for (const target of changed) expect(endpointOf(target)).not.toBe(endpointOf(base));
  });
});

describe("credentialPathProblem", () => {
  const check = (over: Partial<Parameters<typeof credentialPathProblem>[0]>) =>
    credentialPathProblem({
      targetName: "app-db",
      path: "targets/app-db/admin",
      previousPath: null,
      storedFor: null,
      targetId: "t1",
      ...over,
    });
  it("allows the target's own path, no path, and the path a renamed target already had", () => {
    expect(check({})).toBeNull();
    expect(check({ path: null })).toBeNull();
    expect(
      check({ targetName: "app-db-2", previousPath: "targets/app-db/admin", storedFor: { targetId: "t1" } }),
    ).toBeNull();
  });
  it("refuses another target's path, and any path stored for another target", () => {
    expect(check({ path: "targets/prod-db/admin" })).toMatch(/own path/);
    expect(check({ targetName: "targets", path: "targets/app-db/admin" })).toMatch(/own path/);
    expect(check({ storedFor: { targetId: "t2" } })).toMatch(/belongs to another target/);
    expect(check({ targetId: null, storedFor: { targetId: "t2" } })).toMatch(/belongs to another target/);
  });
});

describe("sessionSecretDecision", () => {
  const facts = (over: Partial<SessionSecretFacts>): SessionSecretFacts => ({
    targetName: "app-db",
    targetId: "t1",
    path: "targets/app-db/session",
    endpoint: "E",
    secret: null,
    allowance: null,
    actor: { roles: ["security"], admin: false },
    ...over,
  });
  it("never a break-glass secret, never another target's", () => {
    expect(sessionSecretDecision(facts({ secret: { breakGlass: true, platformRoles: ["security"] } })).ok).toBe(false);
    expect(
      sessionSecretDecision(
        facts({ actor: { roles: ["admin"], admin: true }, secret: { breakGlass: true, platformRoles: [] } }),
      ).ok,
    ).toBe(false);
    expect(sessionSecretDecision(facts({ allowance: { targetId: "t2", endpoint: "E" } })).ok).toBe(false);
  });
  it("keeps an allowance at the same endpoint; a moved endpoint makes it stale unless the author may hand it out", () => {
    const secret = { breakGlass: false, platformRoles: ["admin"] };
    expect(sessionSecretDecision(facts({ secret, allowance: { targetId: "t1", endpoint: "E" } }))).toEqual({
      ok: true,
      allowance: "keep",
    });
    expect(sessionSecretDecision(facts({ secret, allowance: { targetId: "t1", endpoint: "OLD" } }))).toMatchObject({
      ok: false,
      stale: true,
    });
    expect(
      sessionSecretDecision(
        facts({ secret, allowance: { targetId: "t1", endpoint: "OLD" }, actor: { roles: ["admin"], admin: true } }),
      ),
    ).toEqual({ ok: true, allowance: "grant" });
  });
  it("grants an own path that holds nothing yet, or a secret the author can read; refuses the rest", () => {
    expect(sessionSecretDecision(facts({}))).toEqual({ ok: true, allowance: "grant" });
    expect(sessionSecretDecision(facts({ path: "db/app/ops" })).ok).toBe(false);
    expect(
      sessionSecretDecision(facts({ path: "db/app/ops", secret: { breakGlass: false, platformRoles: ["security"] } })),
    ).toEqual({ ok: true, allowance: "grant" });
    expect(sessionSecretDecision(facts({ secret: { breakGlass: false, platformRoles: ["admin"] } })).ok).toBe(false);
  });
});

describe("sessionSecretUsable", () => {
  const key = Buffer.alloc(32, 7);
  const made = (targetId: string, endpoint: string) => ({
    targetId,
    endpoint,
    mac: allowanceMac(key, { path: "db/app", targetId, endpoint }),
  });
  const usable = (over: Partial<Parameters<typeof sessionSecretUsable>[0]>) =>
    sessionSecretUsable({
      key,
      path: "db/app",
      targetId: "t1",
      endpoint: "E",
      secret: { breakGlass: false },
      allowance: made("t1", "E"),
      ...over,
    });
  it("needs the secret, not break-glass, allowed by Stint for this target at this endpoint", () => {
    expect(usable({})).toBeNull();
    expect(usable({ secret: null })).not.toBeNull();
    expect(usable({ secret: { breakGlass: true } })).not.toBeNull();
    expect(usable({ allowance: null })).not.toBeNull();
    expect(usable({ allowance: made("t2", "E") })).not.toBeNull();
    expect(usable({ allowance: made("t1", "OLD") })).not.toBeNull();
  });
  it("refuses an allowance whose MAC is missing or does not cover its fields (written in the database)", () => {
    expect(usable({ allowance: { targetId: "t1", endpoint: "E", mac: null } })).toMatch(/did not make/);
    expect(usable({ allowance: { ...made("t1", "OLD"), endpoint: "E" } })).toMatch(/did not make/);
    expect(usable({ path: "db/other" })).toMatch(/did not make/);
    expect(usable({ key: Buffer.alloc(32, 8) })).toMatch(/did not make/);
  });
});

describe("vault release and custody changes", () => {
  it("a break-glass secret leaves only through its reveal (and the rotation's own restore)", () => {
    const glass = { breakGlass: true };
    expect(["read", "checkout", "session"].map((p) => releaseProblem(p as "read", glass))).toEqual([
      "break-glass",
      "break-glass",
      "break-glass",
    ]);
    expect(releaseProblem("reveal", glass)).toBeNull();
    expect(releaseProblem("rotation", glass)).toBeNull();
    expect(releaseProblem("reveal", { breakGlass: false })).toBe("not-break-glass");
    expect(releaseProblem("read", { breakGlass: false })).toBeNull();
  });
  it("names the access fields a change touches; the same sets in another order are no change", () => {
    const before = { roles: ["a", "b"], platformRoles: ["admin"], breakGlass: true, rotation: null };
    expect(custodyChanges(before, { ...before, roles: ["b", "a"] })).toEqual([]);
    expect(custodyChanges(before, { ...before, breakGlass: false, platformRoles: ["admin", "user"] })).toEqual([
      "platformRoles",
      "breakGlass",
    ]);
    const rotated = { ...before, breakGlass: false, rotation: { target: "db", login: "app" } };
    expect(custodyChanges(rotated, { ...rotated, rotation: { target: "evil", login: "app" } })).toEqual(["rotation"]);
    expect(custodyChanges(rotated, rotated)).toEqual(["value of a rotated login"]);
  });
});
