/**
 * The catalog as configuration as code sees it: everything by name, no ids, no
 * timestamps but the eligibility dates. Both the current state (loaded from the
 * store) and the desired state (parsed from a file) take this shape.
 */
import type { PolicySpec } from "../../contract/catalog.js";

export type RiskTier = "low" | "medium" | "high" | "critical";
export type TargetKind = "internal" | "postgres" | "mysql" | "ldap" | "ssh-host" | "webhook";

export interface GroupState {
  name: string;
  description: string | null;
  /** Principal names, sorted. */
  members: string[];
}

export interface PolicyState {
  name: string;
  description: string | null;
  /** Normalized: every default filled in (policySpec output). */
  spec: PolicySpec;
}

export interface TargetState {
  name: string;
  kind: TargetKind;
  address: string | null;
  labels: Record<string, string>;
  /** The vault path of the admin credential, or null for none. */
  credential: string | null;
  /** Stint principal → login at the target. */
  identity: { template: string; map: Record<string, string> };
  /** Kind-specific settings, checked by the target's connector. */
  options: Record<string, unknown>;
}

/** What a target row's `config` column holds (decoded by `targetConfig`, catalog.rules.ts). */
export interface TargetConfig {
  credential: string | null;
  identity: { template: string; map: Record<string, string> };
  options: Record<string, unknown>;
}

export interface RoleState {
  name: string;
  description: string | null;
  target: string;
  policy: string;
  risk: RiskTier;
  /** Group names, sorted. */
  owners: string[];
  entitlement: Record<string, unknown>;
}

export type SubjectKind = "user" | "group";

export interface EligibilityState {
  role: string;
  subjectKind: SubjectKind;
  /** A principal name (subjectKind user) or a group name. */
  subject: string;
  /**
   * ISO time. In the current state: when it starts. In the desired state,
   * undefined means "not said": now when created, and never compared.
   */
  from: string | undefined;
  /** ISO time, or null for no end. */
  until: string | null;
  reason: string | null;
}

/** The current state also knows whether a start date was chosen or defaulted (for export). */
export interface CurrentEligibility extends EligibilityState {
  from: string;
  /** starts_at differs from created_at: someone chose the start. */
  fromChosen: boolean;
}

/** A recurring access review campaign (`reviews:`), as stored in review_definitions. */
export interface ReviewState {
  name: string;
  every: string;
  duration: string;
  scope: Record<string, unknown>;
  reviewers: Record<string, unknown>;
  remindEvery: string | null;
  escalateTo: string | null;
  onMissed: string | null;
}

export interface CatalogState {
  groups: GroupState[];
  policies: PolicyState[];
  targets: TargetState[];
  roles: RoleState[];
  eligibility: CurrentEligibility[];
  /** Absent: a catalog without recurring access reviews (older callers and tests). */
  reviews?: ReviewState[];
}

export const KINDS = ["group", "policy", "target", "role", "eligibility", "review"] as const;
export type Kind = (typeof KINDS)[number];

/** The file's section for each kind. */
export const SECTION_OF = {
  group: "groups",
  policy: "policies",
  target: "targets",
  role: "roles",
  eligibility: "eligibility",
  review: "reviews",
} as const satisfies Record<Kind, string>;

/**
 * What a file asks for. A section that is undefined was absent from the file
 * and is left alone; `prune` deletes what a present section does not list.
 */
export interface DesiredCatalog {
  prune: boolean;
  groups?: (GroupState & Located)[];
  policies?: (PolicyState & Located)[];
  targets?: (TargetState & Located)[];
  roles?: (RoleState & Located)[];
  eligibility?: (EligibilityState & Located)[];
  reviews?: (ReviewState & Located)[];
}

export interface FieldChange {
  field: string;
  from?: unknown;
  to?: unknown;
}

export interface Change {
  action: "create" | "update" | "delete";
  kind: Kind;
  name: string;
  fields: FieldChange[];
}

export interface Plan {
  changes: Change[];
  notes: string[];
}

/** Facts from outside the catalog that a file is checked against. */
export interface CatalogFacts {
  /** Names of every principal (users and services). */
  principals: ReadonlySet<string>;
  /** Roles with activation requests on record: deleting them would lose history. */
  rolesWithHistory: ReadonlySet<string>;
}

/** A place in a file: ["roles", 0, "policy"] is roles[0].policy. */
export type Path = (string | number)[];

/** Where an entity of a desired state came from; absent for entities not from a file. */
export interface Located {
  /** The entry: ["roles", 3]. */
  at?: Path;
  /** Where each name the entry lists (members, owners, eligible user or group) is written. */
  refsAt?: Record<string, Path>;
}

/** A problem found in a file, located by its path; the YAML layer adds line and column. */
export interface PathProblem {
  path: Path;
  message: string;
  /** Point at the key rather than its value (unknown fields). */
  atKey?: boolean;
}
