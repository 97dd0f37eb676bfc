/** Request and response shapes of workload identity (trusts, RFC 8693 token exchange). */
import { z } from "zod";
import { durationText, isoTime, name } from "./common.js";

export const TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";
export const JWT_TOKEN_TYPES = [
  "urn:ietf:params:oauth:token-type:jwt",
  "urn:ietf:params:oauth:token-type:id_token",
] as const;
export const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token" as const;

/** RFC 8693 §2.1, JSON or application/x-www-form-urlencoded; `service` names the identity when several trust the job. */
export const tokenExchangeRequest = z.object({
  grant_type: z.literal(TOKEN_EXCHANGE_GRANT),
  subject_token: z.string().min(1).max(16_384),
  subject_token_type: z.enum(JWT_TOKEN_TYPES),
  service: name.optional(),
  // Parameters of RFC 8693 Stint does not use are accepted and ignored (clients send them).
  audience: z.string().max(512).optional(),
  resource: z.string().max(512).optional(),
  scope: z.string().max(512).optional(),
  requested_token_type: z.literal(ACCESS_TOKEN_TYPE).optional(),
});

export const tokenExchangeResult = z.object({
  access_token: z.string(),
  issued_token_type: z.literal(ACCESS_TOKEN_TYPE),
  token_type: z.literal("Bearer"),
  expires_in: z.number().int(),
  expires_at: isoTime,
  service: z.string(),
});
export type TokenExchangeResultDto = z.infer<typeof tokenExchangeResult>;

const claimName = z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, "must be a claim name");

export const createTrustRequest = z.strictObject({
  name,
  issuer: z.string().min(1).max(512),
  audiences: z.array(z.string().min(1).max(512)).min(1).max(10),
  conditions: z.record(claimName, z.string().min(1).max(256)),
  tokenTtl: durationText.optional(),
});

export const trust = z.object({
  id: z.uuid(),
  service: z.string(),
  name: z.string(),
  issuer: z.string(),
  audiences: z.array(z.string()),
  conditions: z.record(z.string(), z.string()),
  tokenTtlMs: z.number().int(),
  createdAt: isoTime,
});
export type TrustDto = z.infer<typeof trust>;
export const trustList = z.object({ items: z.array(trust) });
