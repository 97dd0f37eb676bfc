/** A service identity's trust in an external OIDC issuer (see README.md). */
export interface WorkloadTrust {
  id: string;
  principalId: string;
  /** The service identity's name. */
  service: string;
  /** The trust's own name, unique per service identity. */
  name: string;
  issuer: string;
  audiences: string[];
  /** Claim name → exact value or a `*`/`?` glob; every one must hold. */
  conditions: Record<string, string>;
  tokenTtlMs: number;
  createdAt: string;
}

/** The claims of a verified job token that the exchange reads. */
export interface JobClaims {
  iss: string;
  sub?: string;
  aud: string[];
  jti: string;
  iat: number;
  exp: number;
  [claim: string]: unknown;
}
