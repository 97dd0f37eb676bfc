/**
 * Passkeys (WebAuthn, @simplewebauthn/server): enrolment of several credentials per user, the assertion
 * check used as the second factor at sign-in and for step-up, and the hand-off of a CLI session's step-up
 * to a browser. Challenges live in the database (any node verifies what another issued), are bound to
 * their principal and purpose, expire, and are used once whatever the answer. Every change and every
 * refusal is audited; a change commits with its audit event.
 */
import { randomBytes } from "node:crypto";
import type { Kysely } from "kysely";
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type RegistrationResponseJSON,
} from "@simplewebauthn/server";
import { isoBase64URL } from "@simplewebauthn/server/helpers";
import type { z } from "zod";
import type { AppStore, Database } from "../../db/index.js";
import type { Clock } from "../../lib/clock.js";
import { StintError, type ErrorCode } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import { constantTimeEqual } from "../../lib/security.js";
import type { AccessIndex } from "../access-index/access-index.service.js";
import type { AuditLog } from "../audit/audit.service.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { sessionOpenedAt } from "../identity/membership-reads.js";
import type * as c from "../../contract/passkeys.js";
import {
  challengeProblem,
  counterWentBack,
  factorChangeNeeds,
  handoffOpen,
  matchCode,
  nextCounter,
  type ChallengePurpose,
  type RelyingParty,
} from "./passkeys.rules.js";
import * as passkeyStore from "./passkeys.store.js";

export interface PasskeyServiceDeps {
  store: Pick<AppStore, "db" | "transaction">;
  audit: Pick<AuditLog, "append" | "record">;
  clock: Clock;
  relyingParty: RelyingParty;
  /** How long a challenge may be answered. */
  challengeTtlMs: number;
  /** How long a CLI hand-off waits for the browser. */
  handoffTtlMs?: number;
  /** Where the web UI is, for the hand-off link. */
  publicUrl: string;
  index?: Pick<AccessIndex, "send">;
}

type Principal = Extract<Actor, { kind: "principal" }>;
type Failure = { failed: string; code: ErrorCode; message?: string };
export type AssertionOutcome = { method: "webauthn"; credential: { id: string; name: string } } | Failure;

const CEREMONY_TIMEOUT_MS = 120_000;
const HANDOFF_GONE = {
  failed: "hand-off unknown, expired or done",
  code: "NOT_FOUND",
  message: "That step-up link is unknown, expired or already used; run the command again.",
} as const;

function principalOf(actor: Actor): Principal {
  if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
  return actor;
}

function toDto(row: passkeyStore.CredentialRow): z.infer<typeof c.passkey> {
  return {
    id: row.id,
    name: row.name,
    createdAt: new Date(row.created_at).toISOString(),
    lastUsedAt: row.last_used_at ? new Date(row.last_used_at).toISOString() : null,
    backedUp: row.backed_up,
    transports: row.transports,
  };
}

/** What the library says when an answer does not check out; never a secret (origins, ids, flags). */
function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message.slice(0, 300) : "verification failed";
}

export function createPasskeyService(deps: PasskeyServiceDeps) {
  const { store, audit, clock, relyingParty: rp, index } = deps;
  const handoffTtlMs = deps.handoffTtlMs ?? 5 * 60_000;

  async function deny(actor: Actor, context: CallContext, action: string, reason: string, error: StintError) {
    await audit.record(actor, context, {
      action,
      outcome: "denied",
      subject: actor.kind === "principal" ? `user:${actor.name}` : undefined,
      reason,
    });
    return error;
  }

  async function issueChallenge(
    db: Kysely<Database>,
    input: {
      principalId: string;
      purpose: ChallengePurpose;
      challenge: string;
      sessionId?: string | null;
      handoffId?: string | null;
    },
  ): Promise<string> {
    const now = clock.now();
    const id = newId();
    await passkeyStore.insertChallenge(db, {
      id,
      principal_id: input.principalId,
      purpose: input.purpose,
      challenge: input.challenge,
      session_id: input.sessionId ?? null,
      handoff_id: input.handoffId ?? null,
      created_at: now,
      expires_at: new Date(now.getTime() + deps.challengeTtlMs),
    });
    return id;
  }

  /** Options for `navigator.credentials.get()` naming the principal's credentials, user verification required. */
  async function assertionOptions(
    db: Kysely<Database>,
    principalId: string,
    purpose: "login" | "step_up",
    bind: { sessionId?: string | null; handoffId?: string | null } = {},
  ): Promise<c.WebauthnOptionsDto | undefined> {
    const credentials = await passkeyStore.listCredentials(db, principalId);
    if (credentials.length === 0) return undefined;
    const options = await generateAuthenticationOptions({
      rpID: rp.id,
      allowCredentials: credentials.map((cred) => ({
        id: cred.credential_id,
        transports: cred.transports as never,
      })),
      userVerification: "required",
      timeout: Math.min(CEREMONY_TIMEOUT_MS, deps.challengeTtlMs),
    });
    const challengeId = await issueChallenge(db, { principalId, purpose, challenge: options.challenge, ...bind });
    return { challengeId, options: options as unknown as Record<string, unknown> };
  }

  /**
   * Checks a passkey answer inside the caller's transaction: the challenge (locked, marked used whatever
   * the outcome), the signature, origin, RP ID and user verification (by @simplewebauthn/server), then the
   * signature counter under the credential's row lock. A counter going back is refused and audited as
   * `webauthn.clone_detected` in the same transaction. The caller commits even on failure (the challenge
   * stays used) and audits its own outcome.
   */
  async function checkAssertion(
    tx: Kysely<Database>,
    input: {
      principal: { id: string; name: string };
      purpose: "login" | "step_up";
      assertion: c.WebauthnAssertionDto;
      actor: Actor;
      context: CallContext;
    },
  ): Promise<AssertionOutcome & { challenge?: { sessionId: string | null; handoffId: string | null } }> {
    const now = clock.now();
    const { principal, assertion } = input;
    const challenge = await passkeyStore.lockChallenge(tx, assertion.challengeId);
    const problem = challengeProblem(challenge, { principalId: principal.id, purpose: input.purpose, now });
    if (problem || !challenge) return { failed: problem ?? "unknown challenge", code: "WEBAUTHN_CHALLENGE_INVALID" };
    await passkeyStore.useChallenge(tx, challenge.id, now);
    const bound = { sessionId: challenge.session_id, handoffId: challenge.handoff_id };

    const credential = await passkeyStore.lockCredential(tx, assertion.response.id);
    if (!credential || credential.principal_id !== principal.id)
      return { failed: "a credential that is not this account's", code: "WEBAUTHN_INVALID", challenge: bound };
    let challengeMatched = false;
    let verified;
    try {
      verified = await verifyAuthenticationResponse({
        response: assertion.response as AuthenticationResponseJSON,
        expectedChallenge: (presented) => (challengeMatched = constantTimeEqual(presented, challenge.challenge)),
        expectedOrigin: rp.origins,
        expectedRPID: rp.id,
        // The library's own counter check is replaced by ours (its own error code and audit event).
        credential: {
          id: credential.credential_id,
          publicKey: isoBase64URL.toBuffer(credential.public_key),
          counter: 0,
          transports: credential.transports as never,
        },
        requireUserVerification: true,
      });
    } catch (error) {
      if (!challengeMatched)
        return {
          failed: "the answer was made for another challenge",
          code: "WEBAUTHN_CHALLENGE_INVALID",
          challenge: bound,
        };
      return { failed: reasonOf(error), code: "WEBAUTHN_INVALID", challenge: bound };
    }
    if (!verified.verified || !verified.authenticationInfo.userVerified)
      return { failed: "the authenticator did not verify the user", code: "WEBAUTHN_INVALID", challenge: bound };
    const stored = Number(credential.sign_count);
    const presented = verified.authenticationInfo.newCounter;
    if (counterWentBack(stored, presented)) {
      await audit.append(tx, input.actor, input.context, {
        action: "webauthn.clone_detected",
        outcome: "denied",
        subject: `user:${principal.name}`,
        reason: `signature counter ${presented} is not above the stored ${stored}: a copy of the key is in use`,
        details: { credential: credential.id, credentialName: credential.name, stored, presented },
      });
      return { failed: "signature counter went back", code: "WEBAUTHN_CLONED_AUTHENTICATOR", challenge: bound };
    }
    await passkeyStore.touchCredential(tx, credential.id, nextCounter(stored, presented), now);
    return { method: "webauthn", credential: { id: credential.id, name: credential.name }, challenge: bound };
  }

  /** Whether the principal has a second factor already (adding or removing one then needs fresh MFA). */
  async function hasFactor(db: Kysely<Database>, principalId: string): Promise<boolean> {
    return (
      (await passkeyStore.hasConfirmedTotp(db, principalId)) ||
      (await passkeyStore.countCredentials(db, principalId)) > 0
    );
  }

  async function requireFreshMfaForFactorChange(actor: Principal, context: CallContext, action: string) {
    const needs = factorChangeNeeds({
      hasFactor: await hasFactor(store.db, actor.id),
      mfaAt: actor.mfaAt ?? null,
      signedInAt: await sessionOpenedAt(store.db, actor.sessionId),
      now: clock.now(),
    });
    if (needs === "step-up")
      throw await deny(
        actor,
        context,
        action,
        "changing a second factor needs an MFA check within the last 15 minutes",
        new StintError(
          "MFA_STEP_UP_REQUIRED",
          "Changing your passkeys needs a second-factor check within the last 15 minutes: step up first.",
        ),
      );
    if (needs === "sign-in")
      throw await deny(
        actor,
        context,
        action,
        "a first second factor needs a sign-in within the last 15 minutes",
        new StintError("SIGN_IN_AGAIN"),
      );
  }

  return {
    checkAssertion,

    /** Whether the principal has any passkey (sign-in then asks for one). */
    async hasPasskeys(db: Kysely<Database>, principalId: string): Promise<boolean> {
      return (await passkeyStore.countCredentials(db, principalId)) > 0;
    },

    /** A sign-in challenge, issued only after the password checked out. */
    loginOptions(principalId: string): Promise<c.WebauthnOptionsDto | undefined> {
      return store.transaction((tx) => assertionOptions(tx, principalId, "login"));
    },

    async list(actor: Actor): Promise<z.infer<typeof c.passkey>[]> {
      const principal = principalOf(actor);
      return (await passkeyStore.listCredentials(store.db, principal.id)).map(toDto);
    },

    async registrationOptions(actor: Actor, context: CallContext): Promise<c.WebauthnOptionsDto> {
      const principal = principalOf(actor);
      if (principal.principalKind !== "user" || !principal.sessionId)
        throw await deny(
          actor,
          context,
          "webauthn.registration_started",
          "not a signed-in user session",
          new StintError("FORBIDDEN", "Passkeys belong to people signed in with a session, not to tokens."),
        );
      await requireFreshMfaForFactorChange(principal, context, "webauthn.registration_started");
      const existing = await passkeyStore.listCredentials(store.db, principal.id);
      const options = await generateRegistrationOptions({
        rpName: rp.name,
        rpID: rp.id,
        userName: principal.name,
        userID: new TextEncoder().encode(principal.id),
        userDisplayName: principal.name,
        attestationType: "none",
        excludeCredentials: existing.map((cred) => ({ id: cred.credential_id, transports: cred.transports })),
        authenticatorSelection: { residentKey: "preferred", userVerification: "required" },
        timeout: Math.min(CEREMONY_TIMEOUT_MS, deps.challengeTtlMs),
      });
      const challengeId = await store.transaction(async (tx) => {
        const id = await issueChallenge(tx, {
          principalId: principal.id,
          purpose: "register",
          challenge: options.challenge,
        });
        await audit.append(tx, actor, context, {
          action: "webauthn.registration_started",
          outcome: "success",
          subject: `user:${principal.name}`,
        });
        return id;
      });
      return { challengeId, options: options as unknown as Record<string, unknown> };
    },

    async register(
      actor: Actor,
      input: z.infer<typeof c.registerPasskeyRequest>,
      context: CallContext,
    ): Promise<z.infer<typeof c.passkey>> {
      const principal = principalOf(actor);
      await requireFreshMfaForFactorChange(principal, context, "webauthn.registered");
      const now = clock.now();
      const outcome = await store.transaction(async (tx): Promise<Failure | { row: passkeyStore.CredentialRow }> => {
        const challenge = await passkeyStore.lockChallenge(tx, input.challengeId);
        const problem = challengeProblem(challenge, { principalId: principal.id, purpose: "register", now });
        if (problem || !challenge)
          return { failed: problem ?? "unknown challenge", code: "WEBAUTHN_CHALLENGE_INVALID" };
        await passkeyStore.useChallenge(tx, challenge.id, now);
        let challengeMatched = false;
        let verified;
        try {
          verified = await verifyRegistrationResponse({
            response: input.response as RegistrationResponseJSON,
            expectedChallenge: (presented) => (challengeMatched = constantTimeEqual(presented, challenge.challenge)),
            expectedOrigin: rp.origins,
            expectedRPID: rp.id,
            requireUserVerification: true,
          });
        } catch (error) {
          return challengeMatched
            ? { failed: reasonOf(error), code: "WEBAUTHN_INVALID" }
            : { failed: "the answer was made for another challenge", code: "WEBAUTHN_CHALLENGE_INVALID" };
        }
        if (!verified.verified) return { failed: "registration did not verify", code: "WEBAUTHN_INVALID" };
        const info = verified.registrationInfo;
        if (await passkeyStore.credentialIdTaken(tx, info.credential.id))
          return { failed: "this authenticator's credential is already registered", code: "ALREADY_EXISTS" };
        const id = newId();
        await passkeyStore.insertCredential(tx, {
          id,
          principal_id: principal.id,
          credential_id: info.credential.id,
          public_key: isoBase64URL.fromBuffer(info.credential.publicKey),
          sign_count: info.credential.counter,
          transports: (info.credential.transports ?? []).slice(0, 10),
          name: input.name,
          aaguid: info.aaguid,
          backed_up: info.credentialBackedUp,
          created_at: now,
          last_used_at: null,
        });
        await audit.append(tx, actor, context, {
          action: "webauthn.registered",
          outcome: "success",
          subject: `user:${principal.name}`,
          details: { credential: id, name: input.name, aaguid: info.aaguid, backedUp: info.credentialBackedUp },
        });
        const rows = await passkeyStore.listCredentials(tx, principal.id);
        return { row: rows.find((r) => r.id === id)! };
      });
      if ("failed" in outcome)
        throw await deny(actor, context, "webauthn.registered", outcome.failed, new StintError(outcome.code));
      return toDto(outcome.row);
    },

    async rename(actor: Actor, id: string, name: string, context: CallContext): Promise<z.infer<typeof c.passkey>> {
      const principal = principalOf(actor);
      const row = await store.transaction(async (tx) => {
        const found = await passkeyStore.findCredential(tx, principal.id, id);
        if (!found) return undefined;
        await passkeyStore.renameCredential(tx, id, name);
        await audit.append(tx, actor, context, {
          action: "webauthn.renamed",
          outcome: "success",
          subject: `user:${principal.name}`,
          details: { credential: id, from: found.name, to: name },
        });
        return { ...found, name };
      });
      if (!row) throw await deny(actor, context, "webauthn.renamed", "no such passkey", new StintError("NOT_FOUND"));
      return toDto(row);
    },

    async remove(actor: Actor, id: string, context: CallContext): Promise<void> {
      const principal = principalOf(actor);
      await requireFreshMfaForFactorChange(principal, context, "webauthn.removed");
      const removed = await store.transaction(async (tx) => {
        const found = await passkeyStore.findCredential(tx, principal.id, id);
        if (!found) return false;
        await passkeyStore.deleteCredential(tx, id);
        await audit.append(tx, actor, context, {
          action: "webauthn.removed",
          outcome: "success",
          subject: `user:${principal.name}`,
          details: { credential: id, name: found.name },
        });
        return true;
      });
      if (!removed)
        throw await deny(actor, context, "webauthn.removed", "no such passkey", new StintError("NOT_FOUND"));
    },

    /** Step-up options for the caller's session, or for a CLI session's hand-off the caller opened. */
    async stepUpOptions(
      actor: Actor,
      input: { handoff?: string | undefined },
      context: CallContext,
    ): Promise<c.WebauthnOptionsDto> {
      const principal = principalOf(actor);
      if (!principal.sessionId)
        throw new StintError("UNAUTHENTICATED", "Step-up needs a signed-in session, not an API token.");
      const now = clock.now();
      const result = await store.transaction(async (tx) => {
        let sessionId = principal.sessionId!;
        if (input.handoff) {
          const handoff = await passkeyStore.findHandoff(tx, input.handoff, principal.id);
          if (!handoffOpen(handoff, now)) return { missing: true };
          sessionId = handoff.session_id;
        }
        return {
          options: await assertionOptions(tx, principal.id, "step_up", {
            sessionId,
            handoffId: input.handoff ?? null,
          }),
        };
      });
      if ("missing" in result)
        throw await deny(
          actor,
          context,
          "auth.step_up",
          HANDOFF_GONE.failed,
          new StintError("NOT_FOUND", HANDOFF_GONE.message),
        );
      if (!result.options)
        throw await deny(
          actor,
          context,
          "auth.step_up",
          "no passkey registered",
          new StintError("NOT_FOUND", "This account has no passkey: register one first (Account → Passkeys)."),
        );
      return result.options;
    },

    /**
     * Step-up with a passkey: the session the challenge was bound to (the caller's, or the CLI session of a
     * hand-off) gets a fresh MFA time and a fresh passkey time, in the transaction of the audit event.
     */
    async stepUp(
      actor: Actor,
      assertion: c.WebauthnAssertionDto,
      context: CallContext,
    ): Promise<{ mfaAt: string; method: "webauthn" }> {
      const principal = principalOf(actor);
      if (!principal.sessionId)
        throw new StintError("UNAUTHENTICATED", "Step-up needs a signed-in session, not an API token.");
      const now = clock.now();
      const outcome = await store.transaction(async (tx) => {
        const checked = await checkAssertion(tx, { principal, purpose: "step_up", assertion, actor, context });
        if ("failed" in checked) return checked;
        const sessionId = checked.challenge?.sessionId ?? principal.sessionId!;
        const handoffId = checked.challenge?.handoffId ?? null;
        // The hand-off, locked, must still be pending now the answer is in: it may have expired since its
        // challenge was issued, or another answer may have completed it.
        if (handoffId && !handoffOpen(await passkeyStore.findHandoff(tx, handoffId, principal.id, true), now))
          return HANDOFF_GONE;
        if (!(await passkeyStore.liveSession(tx, sessionId, principal.id, now)))
          return { failed: "the session to step up has ended", code: "UNAUTHENTICATED" as const };
        if (handoffId) await passkeyStore.completeHandoff(tx, handoffId, now);
        await passkeyStore.markSessionStepUp(tx, sessionId, now);
        await index?.send(tx, { t: "ses", sid: sessionId });
        await audit.append(tx, actor, context, {
          action: "auth.step_up",
          outcome: "success",
          subject: `user:${principal.name}`,
          details: {
            sessionId,
            method: "webauthn",
            credential: checked.credential.id,
            credentialName: checked.credential.name,
            ...(handoffId ? { handoff: handoffId, from: principal.sessionId } : {}),
          },
        });
        return checked;
      });
      if ("failed" in outcome)
        throw await deny(actor, context, "auth.step_up", outcome.failed, new StintError(outcome.code, outcome.message));
      return { mfaAt: now.toISOString(), method: "webauthn" };
    },

    /** A CLI session asks a browser to step it up: a link to the web page and a code to compare. */
    async createHandoff(actor: Actor, context: CallContext): Promise<z.infer<typeof c.stepUpHandoff>> {
      const principal = principalOf(actor);
      if (!principal.sessionId)
        throw new StintError("UNAUTHENTICATED", "Step-up needs a signed-in session, not an API token.");
      const now = clock.now();
      const id = newId();
      const code = matchCode(randomBytes(8));
      const expiresAt = new Date(now.getTime() + handoffTtlMs);
      await store.transaction(async (tx) => {
        await passkeyStore.insertHandoff(tx, {
          id,
          principal_id: principal.id,
          session_id: principal.sessionId!,
          match_code: code,
          source_ip: context.sourceIp,
          user_agent: context.userAgent ? context.userAgent.slice(0, 200) : null,
          created_at: now,
          expires_at: expiresAt,
          completed_at: null,
        });
        await audit.append(tx, actor, context, {
          action: "auth.step_up_handoff",
          outcome: "success",
          subject: `user:${principal.name}`,
          details: { handoff: id, sessionId: principal.sessionId },
        });
      });
      const base = deps.publicUrl.replace(/\/+$/, "");
      return { id, url: `${base}/step-up/${id}`, matchCode: code, expiresAt: expiresAt.toISOString() };
    },

    /** The hand-off as its owner sees it (the CLI polling, the page showing where it came from). */
    async handoffStatus(actor: Actor, id: string): Promise<c.StepUpHandoffStatusDto> {
      const principal = principalOf(actor);
      const row = await passkeyStore.findHandoff(store.db, id, principal.id);
      // Someone else's hand-off answers like one that does not exist.
      if (!row) throw new StintError("NOT_FOUND");
      const now = clock.now();
      const status = row.completed_at ? "completed" : new Date(row.expires_at) <= now ? "expired" : "pending";
      return {
        id: row.id,
        status,
        matchCode: row.match_code,
        requestedFrom: { sourceIp: row.source_ip, userAgent: row.user_agent },
        createdAt: new Date(row.created_at).toISOString(),
        expiresAt: new Date(row.expires_at).toISOString(),
        completedAt: row.completed_at ? new Date(row.completed_at).toISOString() : null,
      };
    },
  };
}

export type PasskeyService = ReturnType<typeof createPasskeyService>;
