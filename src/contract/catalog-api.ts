/**
 * The catalog API (targets, policies, roles, eligibility) and configuration as
 * code: request and response shapes, and the schema of the YAML file itself.
 * Shared by server, CLI and web. Names are usable wherever an id is.
 */
import { z } from "zod";
import { isoTime, name, reason } from "./common.js";
import { policySpec, riskTier, targetKind } from "./catalog.js";
import { reviewDefinition } from "./reviews.js";

/** A name or a UUID, in a path or a reference field. */
export const ref = z.string().min(1).max(64);
export const refParam = z.strictObject({ ref });
export const idParam = z.strictObject({ id: z.uuid() });

export const description = z
  .string()
  .trim()
  .min(1)
  .max(500)
  .refine(
    (s) => ![...s].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f),
    "must be one line without control characters",
  );

const labelKey = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$/, "must be lower-case letters, digits, '.', '_', '/' or '-'");
export const labels = z
  .record(labelKey, z.string().max(200))
  .refine((value) => Object.keys(value).length <= 50, "must have at most 50 labels");
export const address = z.string().trim().min(1).max(500);
/** What activating a role grants at its target; its shape belongs to the target's connector. */
export const entitlement = z
  .record(z.string().max(100), z.unknown())
  .refine((value) => JSON.stringify(value).length <= 16_384, "must be at most 16 KiB as JSON");
export const owners = z.array(name).max(20);

/** Where a target's admin credential is kept: a vault path such as `targets/app-db/admin`. */
export const secretPath = z
  .string()
  .max(200)
  .regex(
    /^[a-z0-9][a-z0-9._-]*(\/[a-z0-9][a-z0-9._-]*)*$/,
    "must be lower-case path segments (letters, digits, '.', '_', '-') separated by '/'",
  );
export const targetCredential = z.strictObject({ secret: secretPath });
/** How a Stint principal maps to a login at the target. */
export const identityMapping = z.strictObject({
  /** `{{name}}`, `{{email}}` and `{{emailLocal}}` are replaced; the default is the Stint name. */
  template: z.string().min(1).max(300).default("{{name}}"),
  /** Exceptions to the template: Stint name → login. */
  map: z.record(name, z.string().min(1).max(300)).default({}),
});
export type IdentityMapping = z.output<typeof identityMapping>;
export const DEFAULT_IDENTITY: IdentityMapping = { template: "{{name}}", map: {} };
/** Kind-specific settings of a target; each connector checks its own. */
export const targetOptions = z
  .record(z.string().max(100), z.unknown())
  .refine((value) => JSON.stringify(value).length <= 16_384, "must be at most 16 KiB as JSON");

// ---------------------------------------------------------------------------
// Targets

export const targetInput = z.strictObject({
  name,
  kind: targetKind,
  address: address.optional(),
  labels: labels.default({}),
  credential: targetCredential.optional(),
  identity: identityMapping.optional(),
  options: targetOptions.default({}),
});
export type TargetInput = z.output<typeof targetInput>;

export const target = z.object({
  id: z.uuid(),
  name: z.string(),
  kind: targetKind,
  address: z.string().nullable(),
  labels: z.record(z.string(), z.string()),
  /** Where the admin credential is read from (never the credential itself), and whether one is stored there. */
  credential: z.object({ secret: z.string(), stored: z.boolean() }).nullable(),
  identity: z.object({ template: z.string(), map: z.record(z.string(), z.string()) }),
  options: z.record(z.string(), z.unknown()),
  /**
   * What the definition weakens (TLS off towards another host, an unchecked certificate, a weaker sign-in opted
   * into), one sentence each, as `stint diff`/`apply` note them; empty when nothing.
   */
  warnings: z.array(z.string()),
  createdAt: isoTime,
  updatedAt: isoTime,
});
export type TargetDto = z.infer<typeof target>;
export const targetList = z.object({ items: z.array(target) });

// ---------------------------------------------------------------------------
// Policies

export const policyInput = z.strictObject({
  name,
  description: description.optional(),
  spec: policySpec,
});
export type PolicyInput = z.output<typeof policyInput>;

export const policy = z.object({
  id: z.uuid(),
  name: z.string(),
  description: z.string().nullable(),
  spec: policySpec,
  /** The roles that use this policy. */
  roles: z.array(z.string()),
  createdAt: isoTime,
  updatedAt: isoTime,
});
export type PolicyDto = z.infer<typeof policy>;
export const policyList = z.object({ items: z.array(policy) });

// ---------------------------------------------------------------------------
// Roles

export const roleInput = z.strictObject({
  name,
  description: description.optional(),
  /** The target's name or id. */
  target: ref,
  /** The policy's name or id. */
  policy: ref,
  entitlement: entitlement.default({}),
  risk: riskTier,
  /** Groups that own the role. */
  owners: owners.default([]),
});
export type RoleInput = z.output<typeof roleInput>;

export const role = z.object({
  id: z.uuid(),
  name: z.string(),
  description: z.string().nullable(),
  target: z.string(),
  policy: z.string(),
  entitlement: z.record(z.string(), z.unknown()),
  risk: riskTier,
  owners: z.array(z.string()),
  createdAt: isoTime,
  updatedAt: isoTime,
});
export type RoleDto = z.infer<typeof role>;
export const roleList = z.object({ items: z.array(role) });

// ---------------------------------------------------------------------------
// Eligibility

export const eligibilityInput = z
  .strictObject({
    /** The role's name or id. */
    role: ref,
    /** A user or service (name or id); give this or `group`. */
    principal: ref.optional(),
    /** A group (name or id); give this or `principal`. */
    group: ref.optional(),
    /** Default: now. */
    startsAt: isoTime.optional(),
    /** Default: no end. */
    endsAt: isoTime.nullable().optional(),
    reason: reason.optional(),
  })
  .refine((e) => (e.principal === undefined) !== (e.group === undefined), {
    message: "give exactly one of principal or group",
    path: ["principal"],
  });
export type EligibilityInput = z.output<typeof eligibilityInput>;

/** Replaces the dates and the reason; an omitted startsAt keeps the current one. */
export const eligibilityUpdate = z.strictObject({
  startsAt: isoTime.optional(),
  endsAt: isoTime.nullable().optional(),
  reason: reason.nullable().optional(),
});
export type EligibilityUpdate = z.output<typeof eligibilityUpdate>;

export const eligibilityRemoval = z.strictObject({ reason: reason.optional() });

export const eligibilityStatus = z.enum(["scheduled", "active", "ended"]);

export const eligibility = z.object({
  id: z.uuid(),
  role: z.string(),
  principal: z.string().nullable(),
  group: z.string().nullable(),
  startsAt: isoTime,
  endsAt: isoTime.nullable(),
  status: eligibilityStatus,
  grantedBy: z.string(),
  reason: z.string().nullable(),
  createdAt: isoTime,
});
export type EligibilityDto = z.infer<typeof eligibility>;
export const eligibilityList = z.object({ items: z.array(eligibility) });

export const eligibilityQuery = z.strictObject({
  role: ref.optional(),
  principal: ref.optional(),
  group: ref.optional(),
});

// ---------------------------------------------------------------------------
// Configuration as code

export const configRequest = z.strictObject({ yaml: z.string().max(1_000_000) });

/** One problem of a configuration file; line and column are 1-based. */
export const configProblem = z.object({
  line: z.number().int(),
  column: z.number().int(),
  /** Where in the file, like roles[0].policy; empty for a syntax error. */
  path: z.string(),
  message: z.string(),
});
export type ConfigProblem = z.infer<typeof configProblem>;

export const changeKind = z.enum(["group", "policy", "target", "role", "eligibility", "review"]);
export const changeAction = z.enum(["create", "update", "delete"]);

export const fieldChange = z.object({
  field: z.string(),
  from: z.unknown().optional(),
  to: z.unknown().optional(),
});

export const planChange = z.object({
  action: changeAction,
  kind: changeKind,
  /** The name; for eligibility `role/user:name` or `role/group:name`. */
  name: z.string(),
  fields: z.array(fieldChange),
});
export type PlanChangeDto = z.infer<typeof planChange>;

export const configPlan = z.object({
  changes: z.array(planChange),
  summary: z.object({ create: z.number().int(), update: z.number().int(), delete: z.number().int() }),
  /** Things worth knowing that are not changes (e.g. what prune would delete). */
  notes: z.array(z.string()),
});
export type ConfigPlanDto = z.infer<typeof configPlan>;

/** A change request a held apply became (four-eyes; docs/four-eyes.md). */
export const changeRequestRef = z.object({
  id: z.string(),
  status: z.literal("pending"),
  /** The highest risk tier among the widening changes that held it. */
  tier: z.enum(["low", "medium", "high", "critical"]),
  expiresAt: z.string(),
});
export type ChangeRequestRefDto = z.infer<typeof changeRequestRef>;

/** 202: a one-object write that widens access at a four-eyes tier, held as a change request (nothing changed yet). */
export const heldWrite = z.object({ changeRequest: changeRequestRef });
export type HeldWriteDto = z.infer<typeof heldWrite>;

/** Whether a one-object write's answer is a held change request rather than the written object. */
export function isHeldWrite(value: unknown): value is HeldWriteDto {
  return typeof value === "object" && value !== null && "changeRequest" in value && !("id" in value);
}

/** `applied: false` with `changeRequest`: the plan widens access and waits for a second admin. */
export const configApplyResult = configPlan.extend({
  applied: z.boolean(),
  changeRequest: changeRequestRef.optional(),
});
export type ConfigApplyResultDto = z.infer<typeof configApplyResult>;

export const configExport = z.object({ yaml: z.string() });

// ---------------------------------------------------------------------------
// The YAML file (docs/configuration-as-code.md)

/** A date (the whole day, UTC) or a time with an offset. */
export const configTime = z
  .string()
  .refine(
    (s) => z.iso.date().safeParse(s).success || isoTime.safeParse(s).success,
    "must be a date like 2027-11-24 or a time with an offset like 2027-11-24T18:00:00Z",
  );

export const configGroup = z.strictObject({
  name,
  description: description.optional(),
  members: z.array(name).max(10_000).default([]),
});

export const configPolicy = z.strictObject({
  name,
  description: description.optional(),
  ...policySpec.shape,
});

export const configTarget = z.strictObject({
  name,
  kind: targetKind,
  address: address.optional(),
  labels: labels.default({}),
  credential: targetCredential.optional(),
  identity: identityMapping.optional(),
  options: targetOptions.default({}),
});

export const configRole = z.strictObject({
  name,
  description: description.optional(),
  target: name,
  policy: name,
  risk: riskTier,
  owners: owners.default([]),
  entitlement: entitlement.default({}),
});

export const configEligibility = z
  .strictObject({
    role: name,
    users: z.array(name).max(10_000).default([]),
    groups: z.array(name).max(1000).default([]),
    from: configTime.optional(),
    until: configTime.optional(),
    reason: reason.optional(),
  })
  .refine((e) => e.users.length + e.groups.length > 0, "must name at least one user or group");

/** The top level; each list is checked item by item so that every problem is reported at once. */
export const configFileTop = z.strictObject({
  apiVersion: z.literal("stint/v1"),
  /** Delete what the file does not list (only for the kinds the file lists). */
  prune: z.boolean().default(false),
  groups: z.array(z.unknown()).optional(),
  policies: z.array(z.unknown()).optional(),
  targets: z.array(z.unknown()).optional(),
  roles: z.array(z.unknown()).optional(),
  eligibility: z.array(z.unknown()).optional(),
  /** Recurring access review campaigns (src/modules/reviews). */
  reviews: z.array(z.unknown()).optional(),
});

export const CONFIG_SECTIONS = {
  groups: configGroup,
  policies: configPolicy,
  targets: configTarget,
  roles: configRole,
  eligibility: configEligibility,
  reviews: reviewDefinition,
} as const;
export type ConfigSection = keyof typeof CONFIG_SECTIONS;
