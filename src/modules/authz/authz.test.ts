import { describe, expect, it } from "vitest";
import { authorize, can, PERMISSIONS, type Permission } from "./authz.rules.js";
import { ANONYMOUS, PLATFORM_ROLES, type Actor, type PlatformRole } from "./authz.types.js";

const as = (...roles: PlatformRole[]): Actor => ({
  kind: "principal",
  id: "x",
  name: "x",
  principalKind: "user",
  roles,
});

describe("authorization rules", () => {
  it("denies by default: a plain user holds no platform permission", () => {
    for (const permission of Object.keys(PERMISSIONS) as Permission[]) expect(can(as("user"), permission)).toBe(false);
  });

  it("anonymous may only reach public routes", () => {
    expect(() => authorize(ANONYMOUS, "public")).not.toThrow();
    expect(() => authorize(ANONYMOUS, "authenticated")).toThrow(expect.objectContaining({ code: "UNAUTHENTICATED" }));
    expect(() => authorize(ANONYMOUS, "users.read")).toThrow(expect.objectContaining({ code: "UNAUTHENTICATED" }));
  });

  it("auditors read but never write; only admins manage identities", () => {
    expect(can(as("auditor"), "audit.read")).toBe(true);
    expect(can(as("auditor"), "users.write")).toBe(false);
    expect(can(as("security"), "users.write")).toBe(false);
    expect(can(as("admin"), "users.write")).toBe(true);
    expect(() => authorize(as("auditor"), "users.write")).toThrow(expect.objectContaining({ code: "FORBIDDEN" }));
  });

  it("a refusal names the platform roles that may and the caller's own, so the person knows whom to ask", () => {
    expect(() => authorize(as("auditor"), "users.write")).toThrow(
      "You are not allowed to do that: it needs the platform role admin (permission users.write); yours: auditor.",
    );
    expect(() => authorize(as("user"), "catalog.write")).toThrow(
      "it needs one of the platform roles admin or security (permission catalog.write); yours: user.",
    );
    expect(() => authorize(as("user"), "audit.read")).toThrow(
      "it needs one of the platform roles admin, security or auditor (permission audit.read); yours: user.",
    );
  });

  it("roles combine as a union", () => {
    expect(can(as("user", "auditor"), "audit.read")).toBe(true);
    expect(PLATFORM_ROLES).toEqual(["admin", "security", "auditor", "user"]);
  });
});
