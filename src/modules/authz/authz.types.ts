export const PLATFORM_ROLES = ["admin", "security", "auditor", "user"] as const;
export type PlatformRole = (typeof PLATFORM_ROLES)[number];

/** Who is calling. Every service call receives one. */
export type Actor =
  | {
      kind: "principal";
      id: string;
      name: string;
      principalKind: "user" | "service";
      roles: readonly PlatformRole[];
      /** The refresh session behind the access token, or the API token id. */
      sessionId?: string | undefined;
      tokenId?: string | undefined;
      mfaAt?: Date | null | undefined;
      /** The session's last passkey (WebAuthn, user verified) check; mfaAt is the last MFA of any kind. */
      webauthnAt?: Date | null | undefined;
    }
  | { kind: "anonymous" }
  | { kind: "system"; name: string };

export const SYSTEM: Actor = { kind: "system", name: "system" };
export const ANONYMOUS: Actor = { kind: "anonymous" };

/** Where a call came from; carried into audit events. */
export interface CallContext {
  correlationId: string;
  sourceIp: string | null;
  userAgent: string | null;
}

export const NO_CONTEXT: CallContext = { correlationId: "internal", sourceIp: null, userAgent: null };
