/** What the grants module's use cases share with each other and with callers: job kinds, results, minted logins. */
import { randomBytes } from "node:crypto";
import type { ChangeRequestRefDto } from "../../contract/catalog-api.js";
import type { StandingAccess } from "../connectors/index.js";
import type { DriftKind } from "./reconcile.rules.js";

/** The outbox job kinds the grants module runs. */
export const JOB = {
  provision: "grant.provision",
  revoke: "grant.revoke",
  removeDrift: "drift.remove",
  reprovision: "drift.reprovision",
  removeStanding: "standing.remove",
  reconcile: "reconcile.target",
  probe: "target.probe",
  restore: "grant.restore",
  preCreate: "login.precreate",
} as const;

/** Something operators should hear about now (delivered through the outbox, like request notifications). */
export interface GrantAlert {
  event: "drift.detected" | "grant.revoke_failing";
  severity: "warning" | "critical";
  title: string;
  text: string;
  dedupeKey: string;
}
export interface DriftItem {
  role: string;
  login: string;
  kind: DriftKind;
  /** reported: audited and alerted; removing: queued for removal (policy drift: remove); reprovisioning: queued. */
  action: "reported" | "removing" | "reprovisioning";
  /** First seen in this cycle (false: seen in an earlier one and still there). */
  new: boolean;
  since: string;
}

export interface TargetReconcileReport {
  target: string;
  kind: string;
  ok: boolean;
  /** Why the target could not be compared (unreachable, refused); nothing changed then. */
  error: string | null;
  roles: { role: string; holders: number; skipped: string | null }[];
  drift: DriftItem[];
  resolved: { role: string; login: string; kind: DriftKind }[];
}

export interface GrantDto {
  id: string;
  requestId: string;
  role: string;
  target: string;
  principal: string;
  login: string | null;
  state: string;
  attempts: number;
  lastError: string | null;
  nextAttemptAt: string | null;
  since: string;
}

export interface DiscoveredAccessDto extends StandingAccess {
  /** The Stint principal whose mapped login this is, when there is one. */
  principal: string | null;
}

export interface ConvertResult {
  dryRun: boolean;
  role: string;
  converted: { login: string; principal: string; privilege: string; eligibility: "created" | "existing" }[];
  skipped: { login: string; reason: string }[];
  /** Held for a second admin (four-eyes): nothing was changed. */
  changeRequest?: ChangeRequestRefDto;
}

/** A role whose entitlement says `dynamic: true` mints a login per activation. */
export const isDynamic = (entitlement: unknown) =>
  typeof entitlement === "object" && entitlement !== null && (entitlement as { dynamic?: unknown }).dynamic === true;

/** `stint_alice_3f9a1c2e`: short enough for every database, unique per activation. */
export function mintedLogin(principal: string): string {
  return `stint_${principal.replace(/[^a-z0-9]/g, "_").slice(0, 16)}_${randomBytes(4).toString("hex")}`;
}
