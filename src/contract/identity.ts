/** Request and response shapes of the identity API, shared by server, CLI and web. */
import { z } from "zod";
import { durationText, isoTime, name, password, reason } from "./common.js";
import { changeRequestRef } from "./catalog-api.js";
import { webauthnAssertion } from "./passkeys.js";

export const platformRole = z.enum(["admin", "security", "auditor", "user"]);

export const principal = z.object({
  id: z.uuid(),
  kind: z.enum(["user", "service"]),
  name: z.string(),
  email: z.string().nullable(),
  displayName: z.string().nullable(),
  manager: z.string().nullable(),
  status: z.enum(["active", "disabled"]),
  /**
   * Who disabled it: `scim:<service>` (a SCIM deprovision, which SCIM may undo) or `user:<administrator>` (only an
   * administrator enables it). Null while active, and for a disable from before this was kept (an administrator's).
   */
  disabledBy: z.string().nullable(),
  platformRoles: z.array(platformRole),
  mfaEnrolled: z.boolean(),
  groups: z.array(z.string()),
  createdAt: isoTime,
});
export type PrincipalDto = z.infer<typeof principal>;

/**
 * 202 from creating or updating a user whose new platform roles include one that approves (admin, security) while
 * four-eyes is on: the user as it is now (made or changed without those roles) and the change request holding them.
 */
/** A one-time invite's code (finding 89): answered once, to the administrator who issued it; kept only hashed. */
export const inviteIssued = z.object({ code: z.string(), expiresAt: isoTime });
export type InviteIssuedDto = z.infer<typeof inviteIssued>;
/** 201 from creating a user: with `invite: true`, the invite the user redeems to choose their password. */
export const createdUser = principal.extend({ invite: inviteIssued.optional() });
export const heldUserWrite = z.object({
  user: principal,
  changeRequest: changeRequestRef,
  invite: inviteIssued.optional(),
});
export type HeldUserWriteDto = z.infer<typeof heldUserWrite>;
export const redeemInviteRequest = z.strictObject({ username: name, code: z.string().min(1).max(128), password });

export const loginRequest = z
  .strictObject({
    username: z.string().min(1).max(64),
    password: z.string().min(1).max(1024),
    otp: z.string().min(6).max(64).optional(),
    /** A passkey answer to the challenge that MFA_REQUIRED carried in `details.webauthn`. */
    webauthn: webauthnAssertion.optional(),
  })
  .refine((r) => r.otp === undefined || r.webauthn === undefined, {
    message: "give a one-time code or a passkey answer, not both",
    path: ["webauthn"],
  });

export const tokenPair = z.object({
  accessToken: z.string(),
  accessTokenExpiresAt: isoTime,
  refreshToken: z.string(),
  refreshTokenExpiresAt: isoTime,
  principal,
});
export type TokenPairDto = z.infer<typeof tokenPair>;

export const refreshRequest = z.strictObject({ refreshToken: z.string().min(1).max(512) });
export const logoutRequest = z.strictObject({ refreshToken: z.string().min(1).max(512).optional() });

export const setupRequest = z.strictObject({ code: z.string().min(1).max(128), username: name, password });
export const setupCheckRequest = z.strictObject({ code: z.string().min(1).max(128) });
export const setupCheckResult = z.object({ valid: z.literal(true) });

export const totpEnrollment = z.object({ secret: z.string(), otpauthUri: z.string() });
export const totpConfirmRequest = z.strictObject({ code: z.string().regex(/^\d{6}$/, "must be 6 digits") });
export const recoveryCodes = z.object({ recoveryCodes: z.array(z.string()) });

export const changePasswordRequest = z.strictObject({
  currentPassword: z.string().min(1).max(1024),
  newPassword: password,
});
export const setPasswordRequest = z.strictObject({ password });

export const createUserRequest = z.strictObject({
  name,
  kind: z.enum(["user", "service"]).default("user"),
  email: z.email().max(254).optional(),
  displayName: z.string().trim().min(1).max(200).optional(),
  manager: name.optional(),
  password: password.optional(),
  platformRoles: z.array(platformRole).min(1).max(4).optional(),
  /** Answer a one-time invite the user redeems to choose their own password (not with `password`). */
  invite: z.boolean().optional(),
});
export const updateUserRequest = z.strictObject({
  email: z.email().max(254).nullable().optional(),
  displayName: z.string().trim().min(1).max(200).nullable().optional(),
  manager: name.nullable().optional(),
  platformRoles: z.array(platformRole).min(1).max(4).optional(),
});
export const disableUserRequest = z.strictObject({ reason });
export const principalRef = z.object({ principal: name });
export const principalList = z.object({ items: z.array(principal) });

export const group = z.object({
  id: z.uuid(),
  name: z.string(),
  description: z.string().nullable(),
  members: z.array(z.string()),
  createdAt: isoTime,
});
export const createGroupRequest = z.strictObject({ name, description: z.string().trim().max(500).optional() });
export const groupMemberRequest = z.strictObject({ principal: name });
export const groupList = z.object({ items: z.array(group) });

/** Where a token's minter stands now: `disabled` by an admin, `deprovisioned` by SCIM (a leaver either way). */
export const minterStatus = z.enum(["active", "disabled", "deprovisioned"]);
export const apiToken = z.object({
  id: z.uuid(),
  name: z.string(),
  principal: z.string(),
  createdAt: isoTime,
  expiresAt: isoTime,
  lastUsedAt: isoTime.nullable(),
  revokedAt: isoTime.nullable(),
  /**
   * Who minted it, and whether they are still active; null when no person did (Stint itself). Every answer of this
   * server has it; optional so that the CLI still reads a server from before it.
   */
  minter: z.object({ name: z.string(), status: minterStatus }).nullable().optional(),
});
/** `GET /v1/tokens`: all tokens, or those one person minted, or those whose minter left (`minter=left`). */
export const tokenListQuery = z.strictObject({
  mintedBy: name.optional(),
  minter: z.enum(["left"]).optional(),
});
export const createTokenRequest = z.strictObject({
  name,
  /** The service identity the token acts as. */
  principal: name,
  expiresIn: durationText.default("30d"),
});
export const createdToken = apiToken.extend({ token: z.string() });
export const tokenList = z.object({ items: z.array(apiToken) });

export const stepUpRequest = z.strictObject({ otp: z.string().min(6).max(64) });
export const stepUpResult = z.object({ mfaAt: isoTime });
