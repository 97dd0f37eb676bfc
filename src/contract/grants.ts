/**
 * Grants at real targets, reconciliation, discovery and conversion of standing
 * access, target credentials and tests. Shared by server, CLI and web.
 */
import { z } from "zod";
import { changeRequestRef } from "./catalog-api.js";
import { isoTime, name, reason } from "./common.js";

export const targetParams = z.strictObject({ ref: z.string().min(1).max(64) });

export const grant = z.object({
  id: z.uuid(),
  requestId: z.uuid(),
  role: z.string(),
  target: z.string(),
  principal: z.string(),
  login: z.string().nullable(),
  state: z.string(),
  attempts: z.number().int(),
  lastError: z.string().nullable(),
  nextAttemptAt: isoTime.nullable(),
  since: isoTime,
});
export const grantListQuery = z.strictObject({
  /** Only grants whose last attempt failed or that have waited over a minute. */
  stuck: z.enum(["true", "false"]).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});
export const grantList = z.object({ items: z.array(grant) });

export const reconcileBody = z.strictObject({ target: z.string().min(1).max(64).optional() });
export const driftKind = z.enum(["unexpected", "missing"]);
export const reconcileReport = z.object({
  items: z.array(
    z.object({
      target: z.string(),
      kind: z.string(),
      ok: z.boolean(),
      error: z.string().nullable(),
      roles: z.array(z.object({ role: z.string(), holders: z.number().int(), skipped: z.string().nullable() })),
      drift: z.array(
        z.object({
          role: z.string(),
          login: z.string(),
          kind: driftKind,
          action: z.enum(["reported", "removing", "reprovisioning"]),
          new: z.boolean(),
          since: isoTime,
        }),
      ),
      resolved: z.array(z.object({ role: z.string(), login: z.string(), kind: driftKind })),
    }),
  ),
});

export const discoveredAccess = z.object({
  login: z.string(),
  privilege: z.string(),
  entitlement: z.record(z.string(), z.unknown()).nullable(),
  lastActivity: isoTime.nullable(),
  principal: z.string().nullable(),
});
export const discoveryList = z.object({ target: z.string(), items: z.array(discoveredAccess) });

export const convertBody = z.strictObject({
  /** The role whose eligibility replaces the standing access; it must be at this target. */
  role: name,
  /** Only these logins; without it, every standing access that the role grants. */
  logins: z.array(z.string().min(1).max(300)).min(1).max(1000).optional(),
  dryRun: z.boolean().default(false),
  reason,
});
export const convertResult = z.object({
  dryRun: z.boolean(),
  role: z.string(),
  converted: z.array(
    z.object({
      login: z.string(),
      principal: z.string(),
      privilege: z.string(),
      eligibility: z.enum(["created", "existing"]),
    }),
  ),
  skipped: z.array(z.object({ login: z.string(), reason: z.string() })),
  /**
   * 202: the eligibility it would create widens access at a four-eyes tier, so it is held as this change request
   * and nothing was changed (no eligibility, no removal); once a second admin approves it, the same conversion
   * again removes the standing access (its eligibility then exists).
   */
  changeRequest: changeRequestRef.optional(),
});

export const targetTest = z.object({ target: z.string(), ok: z.boolean(), detail: z.string() });

export const credentialBody = z.strictObject({
  /** The admin password, private key or signing secret. Never returned, never logged. */
  secret: z.string().min(1).max(16_384),
});
export const credentialResult = z.object({ secret: z.string() });

export const credentialsParams = z.strictObject({ role: name });
export const credentialsQuery = z.strictObject({
  /**
   * Seconds to wait (at most 30) for a request of the role still on its way (pending, approved, provisioning)
   * to become active: asked right after the submit, the answer comes the moment the login works.
   */
  wait: z.coerce.number().int().min(0).max(30).optional(),
});
/** A login minted for the caller's activation (a role with `dynamic: true`). */
export const dbCredentials = z.object({
  host: z.string(),
  port: z.number().int(),
  database: z.string().nullable(),
  user: z.string(),
  password: z.string(),
  expiresAt: isoTime,
});
