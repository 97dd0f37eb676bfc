/**
 * Credential custody when a target is defined (API or file): what it may name as `credential` and
 * `options.session.secret`, and what follows from a changed endpoint. Checked and applied inside the
 * catalog write's transaction; the decisions are custody.rules.ts.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import type { AuditInput } from "../audit/audit.types.js";
import { can } from "../authz/authz.rules.js";
import type { Actor } from "../authz/authz.types.js";
import { roleSessionOf, sessionOptionsOf } from "../connectors/session-options.rules.js";
import { targetConfig } from "./catalog.rules.js";
import type { TargetRow } from "./catalog.store.js";
import {
  allowanceMac,
  credentialPathProblem,
  endpointOf,
  sessionSecretDecision,
  type SessionSecretDecision,
} from "./custody.rules.js";
import * as custodyStore from "./custody.store.js";

export interface TargetDefinition {
  name: string;
  kind: string;
  address: string | null;
  credential: string | null;
  options: Record<string, unknown>;
}

export interface CustodyCheck {
  problems: { field: "credential" | "options"; message: string }[];
  endpoint: string;
  session: { path: string; decision: SessionSecretDecision } | null;
}

/** Checks a target definition against what is stored; `existing` is the target's row before an update. */
export async function checkCustody(
  tx: Kysely<Database>,
  actor: Actor,
  target: TargetDefinition,
  existing: TargetRow | null,
): Promise<CustodyCheck> {
  const problems: CustodyCheck["problems"] = [];
  const endpoint = endpointOf(target);
  const previous = existing ? targetConfig(existing.config) : null;
  if (target.credential !== null) {
    const stored = await custodyStore.storedCredential(tx, target.credential);
    const problem = credentialPathProblem({
      targetName: target.name,
      path: target.credential,
      previousPath: previous?.credential ?? null,
      storedFor: stored ? { targetId: stored.target_id } : null,
      targetId: existing?.id ?? null,
    });
    if (problem) problems.push({ field: "credential", message: `credential.secret ${problem}` });
  }
  const options = sessionOptionsOf(target.options);
  let session: CustodyCheck["session"] = null;
  if (options) {
    const facts = await custodyStore.sessionSecretFacts(tx, options.secret);
    const decision = sessionSecretDecision({
      targetName: target.name,
      targetId: existing?.id ?? null,
      path: options.secret,
      endpoint,
      ...facts,
      actor: { roles: actor.kind === "principal" ? actor.roles : [], admin: can(actor, "vault.operate") },
    });
    session = { path: options.secret, decision };
    // A moved endpoint drops the allowance (below) rather than refusing the change.
    if (!decision.ok && !decision.stale)
      problems.push({ field: "options", message: `options.session.secret ${decision.problem}` });
  }
  return { problems, endpoint, session };
}

/**
 * Why a role may not name its session secret (`entitlement.session.secret`), or null. The same decision
 * as a target's options.session.secret, for the role's target: never a break-glass secret, never one
 * allowed for another target, otherwise only what its author could hand out. Unlike a target's
 * definition it grants no allowance: the vault releases the secret only once an admin allows it for
 * the target (`stint secret allow`), checked again at every session open. `target.id` is null for a
 * target the same file creates.
 */
export async function roleSessionProblem(
  tx: Kysely<Database>,
  actor: Actor,
  entitlement: Record<string, unknown>,
  target: Omit<TargetDefinition, "credential"> & { id: string | null },
): Promise<string | null> {
  const session = roleSessionOf(entitlement);
  if (!session) return null;
  const facts = await custodyStore.sessionSecretFacts(tx, session.secret);
  const decision = sessionSecretDecision({
    targetName: target.name,
    targetId: target.id,
    path: session.secret,
    endpoint: endpointOf(target),
    ...facts,
    actor: { roles: actor.kind === "principal" ? actor.roles : [], admin: can(actor, "vault.operate") },
  });
  // Stale: the allowance is this target's, made for an endpoint it left; the vault refuses it until an
  // admin allows it again, as for the target's own session secret.
  return decision.ok || decision.stale ? null : `entitlement.session.secret ${decision.problem}`;
}

/**
 * After the target is written: a moved endpoint forgets the stored credential and the session allowances
 * made for the old one; a session secret the author may hand out is allowed. Returns the audit events.
 */
export async function applyCustody(
  tx: Kysely<Database>,
  target: { id: string; name: string },
  check: CustodyCheck,
  endpointMoved: boolean,
  grantedBy: string,
  now: Date,
  allowanceKey: Uint8Array,
): Promise<AuditInput[]> {
  const events: AuditInput[] = [];
  const subject = `target:${target.name}`;
  if (endpointMoved) {
    const dropped = await custodyStore.dropCredentials(tx, target.id);
    if (dropped.length > 0)
      events.push({
        action: "target.credential_invalidated",
        outcome: "success",
        subject,
        reason: "the target's address or endpoint options changed: set the credential again",
        details: { secrets: dropped },
      });
  }
  const staleSessions = await custodyStore.dropStaleAllowances(tx, target.id, check.endpoint);
  const granted =
    check.session?.decision.ok && check.session.decision.allowance === "grant" ? check.session.path : null;
  if (granted !== null)
    await custodyStore.allow(tx, {
      path: granted,
      targetId: target.id,
      endpoint: check.endpoint,
      grantedBy,
      now,
      mac: allowanceMac(allowanceKey, { path: granted, targetId: target.id, endpoint: check.endpoint }),
    });
  const lost = staleSessions.filter((path) => path !== granted);
  if (lost.length > 0)
    events.push({
      action: "target.session_secret_invalidated",
      outcome: "success",
      subject,
      reason: "the target's address or endpoint options changed: an admin must allow its session secret again",
      details: { secrets: lost },
    });
  if (granted !== null)
    events.push({
      action: "secret.allowed",
      outcome: "success",
      subject: `secret:${granted}`,
      details: { target: target.name, by: "definition" },
    });
  return events;
}
