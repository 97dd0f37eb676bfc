import type { PlatformRole } from "../authz/authz.types.js";

export interface IdentityPolicy {
  accessTokenTtlMs: number;
  refreshSessionTtlMs: number;
  throttle: { maxFailures: number; windowMs: number; lockoutMs: number };
}

export interface Principal {
  id: string;
  kind: "user" | "service";
  name: string;
  email: string | null;
  displayName: string | null;
  manager: string | null;
  status: "active" | "disabled";
  /** `scim:<service>` or `user:<administrator>`; null while active or for a disable from before migration 0033. */
  disabledBy: string | null;
  platformRoles: PlatformRole[];
  mfaEnrolled: boolean;
  groups: string[];
  createdAt: string;
}

export interface TokenPair {
  accessToken: string;
  accessTokenExpiresAt: string;
  refreshToken: string;
  refreshTokenExpiresAt: string;
  principal: Principal;
}

export const ACCESS_TOKEN_ISSUER = "stint";
export const ACCESS_TOKEN_AUDIENCE = "stint-api";
