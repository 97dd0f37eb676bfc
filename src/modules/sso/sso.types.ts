/** Single sign-on providers as the configuration gives them, and the values the service passes around. */
import { z } from "zod";

const claimName = z.string().regex(/^[A-Za-z0-9_.:/-]{1,128}$/, "must be a claim name");

export const ssoProviderSchema = z
  .strictObject({
    /** Short id used in URLs (`/v1/auth/sso/<id>/…`) and by `stint login --sso <id>`. */
    id: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, "must be a short lower-case id (a-z, 0-9, -)"),
    /** What the sign-in page's button says: "Sign in with <displayName>". */
    displayName: z.string().trim().min(1).max(64),
    /** The issuer exactly as its discovery document names it: https, or http on a loopback address. */
    issuer: z
      .string()
      .regex(/^https?:\/\/[^\s]+$/, "must be an http(s) URL")
      .refine((v) => issuerProblem(v) === null, "must be https (http only on a loopback address)"),
    clientId: z.string().min(1).max(256),
    /** The client secret itself (prefer clientSecretFile or clientSecretEnv). */
    clientSecret: z.string().min(1).max(4096).optional(),
    /** A file holding the client secret (its first line). */
    clientSecretFile: z.string().min(1).optional(),
    /** The environment variable holding the client secret. */
    clientSecretEnv: z
      .string()
      .regex(/^[A-Z_][A-Z0-9_]*$/, "must be an environment variable name")
      .optional(),
    scopes: z.array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/)).default(["openid", "profile", "email"]),
    /** The claim whose value becomes the Stint user name (lower-cased, safe characters). */
    usernameClaim: claimName.default("preferred_username"),
    /** The claim listing the user's groups; synced to groups of source `oidc` at every sign-in. */
    groupsClaim: claimName.optional(),
    /** When not empty: only e-mail addresses of these domains may sign in. */
    allowedEmailDomains: z.array(z.string().regex(/^[a-z0-9.-]+\.[a-z]{2,}$/i, "must be a domain")).default([]),
    /** `amr` values of the provider that count as MFA (e.g. mfa, otp, hwk); empty: the provider's MFA is not counted. */
    mfaAmr: z.array(z.string().min(1).max(64)).default([]),
    /** `acr` values of the provider that count as MFA. */
    mfaAcr: z.array(z.string().min(1).max(256)).default([]),
    /**
     * The SCIM connection (a service identity of `scimServices`) that provisions this provider's people: one
     * account per person, whichever of SCIM or a sign-in saw them first. `match: userName` pairs SCIM's
     * `userName` with the `usernameClaim` value (case aside); `match: externalId` pairs SCIM's `externalId` with
     * the token's `sub`. Only accounts of this service and of this issuer are ever paired.
     */
    scim: z
      .strictObject({
        service: z.string().regex(/^[a-z][a-z0-9._-]{0,63}$/, "must be a service identity's name"),
        match: z.enum(["userName", "externalId"]).default("userName"),
      })
      .optional(),
  })
  .refine((p) => p.scopes.includes("openid"), { message: "scopes must include openid", path: ["scopes"] })
  .refine((p) => [p.clientSecret, p.clientSecretFile, p.clientSecretEnv].filter((v) => v !== undefined).length <= 1, {
    message: "give the client secret one way: clientSecret, clientSecretFile or clientSecretEnv",
    path: ["clientSecret"],
  });

export type SsoProviderConfig = z.output<typeof ssoProviderSchema>;

/** A provider with its client secret read (none: a public client, PKCE only). */
export type SsoProvider = Omit<SsoProviderConfig, "clientSecret" | "clientSecretFile" | "clientSecretEnv"> & {
  clientSecret: string | undefined;
};

/** https anywhere; http only on a loopback address (a provider on the same host, tests). */
export function issuerProblem(issuer: string): string | null {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    return "not a URL";
  }
  if (url.search || url.hash || url.username || url.password) return "has a query, fragment or credentials";
  if (url.protocol === "https:") return null;
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (url.protocol === "http:" && (host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host)))
    return null;
  return "not https";
}

/** Whether two spellings name one issuer (as openid-client compares them: the URL's serialization). */
export function sameIssuer(a: string, b: string): boolean {
  try {
    return new URL(a).href === new URL(b).href;
  } catch {
    return false;
  }
}

/** What a verified ID token (and the provider's configuration) say about who signed in. */
export interface SsoIdentity {
  issuer: string;
  subject: string;
  name: string;
  /** The usernameClaim value as the provider sent it (a SCIM `userName` is matched to it). */
  username: string;
  email: string | null;
  displayName: string | null;
  /**
   * The groups of the claim; null when the provider said they are elsewhere (Entra's overage: more groups than
   * fit in a token, `_claim_names.groups`): memberships are then left as they are, not emptied.
   */
  groups: string[] | null;
  /** When the provider's MFA counts: the time of it (the provider's auth_time, or now). */
  mfaAt: Date | null;
  amr: string[];
}
