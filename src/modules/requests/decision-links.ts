/**
 * One-time decision links for notifications. A link token names one request
 * and one action, expires, and works once; it is not a credential: the
 * approver must still be signed in and named by the policy when deciding.
 */
import { SignJWT, jwtVerify } from "jose";
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import type { Clock } from "../../lib/clock.js";
import { StintError } from "../../lib/errors.js";
import { randomToken } from "../../lib/security.js";
import type { Keyring } from "../keys/keys.service.js";

export const DECISION_LINK_AUDIENCE = "stint-decision-link";
export const DECISION_LINK_TTL_MS = 24 * 3_600_000;

export interface DecisionLinks {
  sign(requestId: string, action: "approve" | "deny"): Promise<string>;
  /** Verifies a link token for this request and action and marks it used, in the caller's transaction. */
  consume(
    tx: Kysely<Database>,
    token: string,
    requestId: string,
    action: "approve" | "deny",
    principalId: string,
  ): Promise<void>;
}

export function createDecisionLinks(deps: {
  keyring: Pick<Keyring, "current" | "publicKeys">;
  clock: Clock;
}): DecisionLinks {
  const invalid = () =>
    new StintError("VALIDATION_FAILED", "The decision link is not valid, has expired or was already used.");
  return {
    async sign(requestId, action) {
      const key = deps.keyring.current("token");
      const now = deps.clock.now();
      return new SignJWT({ rid: requestId, act: action })
        .setProtectedHeader({ alg: "EdDSA", kid: key.id })
        .setIssuer("stint")
        .setAudience(DECISION_LINK_AUDIENCE)
        .setIssuedAt(Math.floor(now.getTime() / 1000))
        .setExpirationTime(Math.floor((now.getTime() + DECISION_LINK_TTL_MS) / 1000))
        .setJti(randomToken(16))
        .sign(key.privateKey);
    },
    async consume(tx, token, requestId, action, principalId) {
      let payload;
      try {
        ({ payload } = await jwtVerify(
          token,
          (header) => {
            const key = header.kid ? deps.keyring.publicKeys("token").get(header.kid) : undefined;
            if (!key) throw invalid();
            return key;
          },
          { issuer: "stint", audience: DECISION_LINK_AUDIENCE, algorithms: ["EdDSA"], currentDate: deps.clock.now() },
        ));
      } catch {
        throw invalid();
      }
      if (payload.rid !== requestId || payload.act !== action || typeof payload.jti !== "string") throw invalid();
      const inserted = await tx
        .insertInto("used_decision_links")
        .values({ jti: payload.jti, request_id: requestId, used_by: principalId, used_at: deps.clock.now() })
        .onConflict((oc) => oc.column("jti").doNothing())
        .executeTakeFirst();
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 0) throw invalid();
    },
  };
}
