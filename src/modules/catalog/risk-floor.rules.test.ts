import { describe, expect, it } from "vitest";
import type { TargetKind } from "./catalog.types.js";
import { effectiveRisk, riskFloor, riskFloorProblem } from "./risk-floor.rules.js";

const grant = (
  targetKind: TargetKind,
  entitlement: Record<string, unknown>,
  labels: Record<string, string> = {},
  breakGlass = false,
) => ({ targetKind, targetLabels: labels, entitlement, policy: { breakGlass } });
const PROD = { env: "production" };

describe("risk floor", () => {
  it.each([
    [grant("postgres", { attribute: "SUPERUSER" }, PROD), "critical"],
    [grant("postgres", { attribute: "superuser" }), "high"],
    [grant("postgres", { role: "pg_write_all_data" }, { environment: "prod" }), "critical"],
    [grant("postgres", { role: "pg_read_all_data" }, PROD), null],
    [grant("postgres", { attribute: "CREATEDB" }), null],
    [grant("mysql", { privileges: ["all"], on: "shop.*" }), "high"],
    [grant("mysql", { privileges: ["SELECT", "INSERT"], on: "*.*" }), "high"],
    [grant("mysql", { privileges: ["SELECT", "SHOW VIEW"], on: "*.*" }), null],
    [grant("mysql", { privileges: ["SELECT", "INSERT"], on: "shop.*" }), null],
    [grant("ssh-host", { group: "sudo" }), "high"],
    [grant("ssh-host", { group: "developers" }, PROD), null],
    [grant("ldap", { group: "cn=Domain Admins,ou=groups,dc=example,dc=org" }), "high"],
    [grant("ldap", { group: "cn=readers,ou=admins,dc=example,dc=org" }), null],
    [grant("ssh-host", { group: "ops", session: { login: "root" } }, PROD), "critical"],
    [grant("internal", {}, {}, true), "critical"],
    [grant("internal", {}), null],
  ] as const)("%j → %s", (role, tier) => {
    expect(riskFloor(role)?.tier ?? null).toBe(tier);
  });

  it("refuses a declared tier below an entitlement's floor, not one at or above it; break-glass raises instead", () => {
    const superuser = grant("postgres", { attribute: "SUPERUSER" }, PROD);
    expect(riskFloorProblem(superuser, "high")).toContain("below critical");
    expect(riskFloorProblem(superuser, "critical")).toBeNull();
    const glass = grant("postgres", { role: "app_reader" }, PROD, true);
    expect(riskFloorProblem(glass, "low")).toBeNull();
    expect(effectiveRisk(glass, "low")).toBe("critical");
    expect(effectiveRisk(grant("postgres", { role: "app_reader" }), "medium")).toBe("medium");
  });
});
