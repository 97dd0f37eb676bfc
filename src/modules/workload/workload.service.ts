/**
 * Workload identity: trusts (admin-managed, audited) and the token exchange (a job's OIDC token for a
 * short-lived API token of the service identity that trusts it). The checks run as a pipeline of small named
 * steps, each refusal audited with its own code; see README.md for the invariants.
 */
import { decodeJwt, errors as joseErrors, jwtVerify, type JWTPayload } from "jose";
import type { AppStore } from "../../db/index.js";
import type { Clock } from "../../lib/clock.js";
import { parseDuration } from "../../lib/duration.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import type { AuditLog } from "../audit/audit.service.js";
import { ANONYMOUS, type Actor, type CallContext } from "../authz/authz.types.js";
import { authorize } from "../authz/authz.rules.js";
import { insertApiToken } from "../identity/api-token.js";
import { activeServiceIdentities, findServiceIdentity, lockServiceIdentity } from "../identity/service-identity.js";
import { createIssuerKeys, type IssuerKeys } from "./jwks.js";
import {
  auditedClaims,
  chooseTrust,
  CLOCK_TOLERANCE_S,
  jobTokenProblem,
  mintedExpiry,
  TOKEN_TTL_DEFAULT_MS,
  trustProblems,
} from "./workload.rules.js";
import * as workloadStore from "./workload.store.js";
import type { JobClaims, WorkloadTrust } from "./workload.types.js";

export interface WorkloadServiceDeps {
  store: Pick<AppStore, "db" | "transaction">;
  audit: Pick<AuditLog, "append" | "record">;
  clock: Clock;
  /** The issuers' key sets (a default one when not given). */
  issuerKeys?: IssuerKeys;
}

/** Algorithms a job token may be signed with (never `none`, never HMAC: the key is public). */
const ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"];
const MAX_SUBJECT_TOKEN_CHARS = 16_384;

export interface ExchangeInput {
  subjectToken: string;
  /** The service identity to act as, when several trust the job. */
  service?: string | undefined;
}

export interface ExchangeResult {
  accessToken: string;
  expiresAt: string;
  expiresIn: number;
  service: string;
  tokenId: string;
}

export function createWorkloadService(deps: WorkloadServiceDeps) {
  const { store, audit, clock } = deps;
  const issuerKeys = deps.issuerKeys ?? createIssuerKeys();

  async function requireService(db: typeof store.db, name: string) {
    const row = await findServiceIdentity(db, name);
    if (!row) throw new StintError("NOT_FOUND", `There is no service identity named ${name}.`);
    return row;
  }

  /** The trusts naming an issuer, of active service identities only, with their names. */
  async function trustsOfIssuer(issuer: string): Promise<WorkloadTrust[]> {
    const records = await workloadStore.trustsOfIssuer(store.db, issuer);
    const active = await activeServiceIdentities(store.db, [...new Set(records.map((r) => r.principalId))]);
    return records.flatMap((r) => {
      const service = active.get(r.principalId);
      return service === undefined ? [] : [{ ...r, service }];
    });
  }

  /** Audits a refused exchange (in its own transaction) and throws its error. */
  async function refuse(
    context: CallContext,
    error: StintError,
    reason: string,
    details: Record<string, unknown>,
  ): Promise<never> {
    await audit.record(ANONYMOUS, context, {
      action: "auth.token_exchange",
      outcome: "denied",
      subject: typeof details.service === "string" ? `service:${details.service}` : undefined,
      reason,
      details: { code: error.code, ...details },
    });
    throw error;
  }

  async function verified(
    token: string,
    issuer: string,
    trusts: WorkloadTrust[],
    context: CallContext,
  ): Promise<JobClaims> {
    const audiences = [...new Set(trusts.flatMap((t) => t.audiences))];
    const keys = await issuerKeys.keysOf(issuer).catch(async (error: unknown) => {
      const stint = error instanceof StintError ? error : new StintError("WORKLOAD_ISSUER_UNAVAILABLE");
      return refuse(context, stint, "issuer keys unavailable", { issuer });
    });
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer,
        audience: audiences,
        algorithms: ALGORITHMS,
        clockTolerance: CLOCK_TOLERANCE_S,
        currentDate: clock.now(),
      }));
    } catch (error) {
      // A refetch of the key set (an unknown kid, old keys) that failed or was refused.
      if (error instanceof StintError) return refuse(context, error, "issuer keys unavailable", { issuer });
      if (error instanceof joseErrors.JWTExpired)
        return refuse(context, new StintError("WORKLOAD_TOKEN_EXPIRED"), "job token expired", { issuer });
      const reason =
        error instanceof joseErrors.JWKSNoMatchingKey
          ? "signed by a key the issuer does not publish"
          : error instanceof joseErrors.JWSSignatureVerificationFailed
            ? "bad signature"
            : error instanceof joseErrors.JWTClaimValidationFailed
              ? `claim ${error.claim} does not check out`
              : "not a valid token";
      return refuse(context, new StintError("WORKLOAD_TOKEN_INVALID"), reason, { issuer });
    }
    const problem = jobTokenProblem(payload, Math.floor(clock.now().getTime() / 1000));
    if (problem === "MISSING_CLAIMS")
      return refuse(
        context,
        new StintError("WORKLOAD_TOKEN_INVALID", "The job token lacks exp, iat or jti."),
        "missing claims",
        {
          issuer,
        },
      );
    if (problem)
      return refuse(
        context,
        new StintError(
          "WORKLOAD_TOKEN_EXPIRED",
          problem === "TOO_LONG_LIVED"
            ? "The job token lived longer than an hour: it is not a job token."
            : problem === "NOT_YET_VALID"
              ? "The job token is not valid yet: check the clocks."
              : undefined,
        ),
        problem.toLowerCase().replaceAll("_", " "),
        { issuer },
      );
    const aud = typeof payload.aud === "string" ? [payload.aud] : (payload.aud ?? []);
    return { ...payload, iss: issuer, aud, jti: payload.jti!, iat: payload.iat!, exp: payload.exp! } as JobClaims;
  }

  return {
    async listTrusts(actor: Actor, service: string): Promise<WorkloadTrust[]> {
      authorize(actor, "tokens.read");
      const principal = await requireService(store.db, service);
      return (await workloadStore.trustsOfService(store.db, principal.id)).map((t) => ({
        ...t,
        service: principal.name,
      }));
    },

    async createTrust(
      actor: Actor,
      service: string,
      input: {
        name: string;
        issuer: string;
        audiences: string[];
        conditions: Record<string, string>;
        tokenTtl?: string | undefined;
      },
      context: CallContext,
    ): Promise<WorkloadTrust> {
      authorize(actor, "tokens.write");
      let tokenTtlMs = TOKEN_TTL_DEFAULT_MS;
      if (input.tokenTtl !== undefined) {
        try {
          tokenTtlMs = parseDuration(input.tokenTtl);
        } catch {
          tokenTtlMs = Number.NaN;
        }
      }
      const candidate = { ...input, issuer: input.issuer.replace(/\/+$/, ""), tokenTtlMs };
      const problems = trustProblems(candidate);
      if (problems.length > 0)
        throw new StintError(
          "VALIDATION_FAILED",
          `The trust is not valid: ${problems[0]!.path} ${problems[0]!.message}.`,
          {
            issues: problems,
          },
        );
      const now = clock.now();
      return store.transaction(async (tx) => {
        const principal = await requireService(tx, service);
        const trust: WorkloadTrust = {
          id: newId(),
          principalId: principal.id,
          service,
          name: candidate.name,
          issuer: candidate.issuer,
          audiences: candidate.audiences,
          conditions: candidate.conditions,
          tokenTtlMs,
          createdAt: now.toISOString(),
        };
        const created = await workloadStore.insertTrust(tx, {
          ...trust,
          createdBy: actor.kind === "principal" ? actor.id : null,
          createdAt: now,
        });
        if (!created) throw new StintError("ALREADY_EXISTS", `${service} already has a trust named ${candidate.name}.`);
        await audit.append(tx, actor, context, {
          action: "workload.trust.create",
          outcome: "success",
          subject: `service:${service}`,
          details: {
            trust: trust.name,
            issuer: trust.issuer,
            audiences: trust.audiences,
            conditions: trust.conditions,
            tokenTtlMs,
          },
        });
        return trust;
      });
    },

    async deleteTrust(actor: Actor, service: string, name: string, context: CallContext): Promise<void> {
      authorize(actor, "tokens.write");
      await store.transaction(async (tx) => {
        const principal = await requireService(tx, service);
        const deleted = await workloadStore.deleteTrust(tx, principal.id, name);
        if (!deleted) throw new StintError("NOT_FOUND", `${service} has no trust named ${name}.`);
        await audit.append(tx, actor, context, {
          action: "workload.trust.delete",
          outcome: "success",
          subject: `service:${service}`,
          details: { trust: name, issuer: deleted.issuer },
        });
      });
    },

    /** RFC 8693 token exchange: a job's OIDC token for a short-lived API token of the service that trusts it. */
    async exchange(input: ExchangeInput, context: CallContext): Promise<ExchangeResult> {
      const token = input.subjectToken;
      if (token.length > MAX_SUBJECT_TOKEN_CHARS)
        return refuse(context, new StintError("WORKLOAD_TOKEN_INVALID", "The job token is too long."), "too long", {});
      let issuer: string;
      try {
        const unverified = decodeJwt(token);
        if (typeof unverified.iss !== "string") throw new Error("no iss");
        issuer = unverified.iss.replace(/\/+$/, "");
      } catch {
        return refuse(context, new StintError("WORKLOAD_TOKEN_INVALID"), "not a JWT with an issuer", {});
      }
      // Only issuers a trust names are ever contacted.
      const trusts = await trustsOfIssuer(issuer);
      if (trusts.length === 0)
        return refuse(context, new StintError("WORKLOAD_NO_TRUST"), "no trust names the issuer", {
          issuer: issuer.slice(0, 200),
        });
      const claims = await verified(token, issuer, trusts, context);
      const named = Object.fromEntries(trusts.flatMap((t) => Object.keys(t.conditions)).map((c) => [c, "*"]));
      const choice = chooseTrust(trusts, claims, input.service);
      if ("refused" in choice) {
        const details = { issuer, claims: auditedClaims(claims, { conditions: named }), service: input.service };
        if (choice.refused === "AMBIGUOUS")
          return refuse(
            context,
            new StintError(
              "WORKLOAD_AMBIGUOUS",
              `Several service identities trust this job (${choice.services.join(", ")}); name one with service.`,
            ),
            "several service identities match",
            details,
          );
        return refuse(context, new StintError("WORKLOAD_NO_TRUST"), "no trust matches the claims", details);
      }
      const { trust } = choice;
      const now = clock.now();
      const expiresAt = mintedExpiry(now, trust);
      const kept = auditedClaims(claims, trust);
      let replayed = false;
      const result = await store
        .transaction(async (tx) => {
          const principal = await lockServiceIdentity(tx, trust.principalId);
          if (!principal || principal.status !== "active")
            throw new StintError("WORKLOAD_NO_TRUST", "The service identity that trusts this job is disabled.");
          const fresh = await workloadStore.useJti(tx, {
            issuer,
            jti: claims.jti,
            keepUntil: new Date((claims.exp + CLOCK_TOLERANCE_S) * 1000),
            principalId: principal.id,
            usedAt: now,
          });
          if (!fresh) {
            replayed = true;
            throw new StintError("WORKLOAD_TOKEN_REPLAYED");
          }
          const minted = await insertApiToken(tx, {
            principalId: principal.id,
            name: `exchange:${trust.name}`,
            createdBy: null,
            now,
            expiresAt,
          });
          const actor: Actor = {
            kind: "principal",
            id: principal.id,
            name: principal.name,
            principalKind: "service",
            roles: [],
            tokenId: minted.id,
          };
          await audit.append(tx, actor, context, {
            action: "auth.token_exchange",
            outcome: "success",
            subject: `service:${principal.name}`,
            details: {
              issuer,
              trust: trust.name,
              tokenId: minted.id,
              expiresAt: expiresAt.toISOString(),
              claims: kept,
            },
          });
          return {
            accessToken: minted.token,
            expiresAt: expiresAt.toISOString(),
            expiresIn: Math.round((expiresAt.getTime() - now.getTime()) / 1000),
            service: principal.name,
            tokenId: minted.id,
          };
        })
        .catch(async (error: unknown) => {
          if (error instanceof StintError && (replayed || error.code === "WORKLOAD_NO_TRUST"))
            return refuse(context, error, replayed ? "jti already exchanged" : "service identity disabled", {
              issuer,
              service: trust.service,
              claims: kept,
            });
          throw error;
        });
      return result;
    },
  };
}

export type WorkloadService = ReturnType<typeof createWorkloadService>;
