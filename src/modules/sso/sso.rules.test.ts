import { describe, expect, it } from "vitest";
import {
  groupNamesOf,
  identityFromClaims,
  isLoopbackRedirect,
  MAX_GROUPS,
  nameFrom,
  providerMfaAt,
  refusalOfClientError,
} from "./sso.rules.js";
import type { SsoProvider } from "./sso.types.js";

const provider: SsoProvider = {
  id: "corp",
  displayName: "Corp",
  issuer: "https://idp.example.com",
  clientId: "stint",
  clientSecret: undefined,
  scopes: ["openid"],
  usernameClaim: "preferred_username",
  groupsClaim: "groups",
  allowedEmailDomains: ["example.com"],
  mfaAmr: ["mfa"],
  mfaAcr: ["urn:example:loa:2"],
};
const NOW = new Date("2026-12-05T12:00:00Z");

describe("names made of claim values", () => {
  it("lower-cases and makes other characters dots; a leading non-letter gets the prefix", () => {
    expect(nameFrom("Ada.Lovelace@Contoso.com")).toBe("ada.lovelace.contoso.com");
    expect(nameFrom("0f8fad5b-d9cb-469f-a165-70867728950e", "g")).toBe("g0f8fad5b-d9cb-469f-a165-70867728950e");
    expect(nameFrom("  Oncall Team ")).toBe("oncall.team");
    expect(nameFrom("///")).toBeNull();
    expect(nameFrom("x".repeat(200))).toHaveLength(64);
  });

  it("takes only strings from a groups claim, each once, at most MAX_GROUPS", () => {
    expect(groupNamesOf(["DBA", "dba", 7, null, "Ops Team"])).toEqual(["dba", "ops.team"]);
    expect(groupNamesOf("solo")).toEqual(["solo"]);
    expect(groupNamesOf({ not: "a list" })).toEqual([]);
    expect(groupNamesOf(Array.from({ length: 500 }, (_, i) => `g${i}`))).toHaveLength(MAX_GROUPS);
  });
});

describe("identityFromClaims", () => {
  const claims = { sub: "s1", preferred_username: "Alice", email: "alice@example.com", groups: ["a"] };
  const refusedBy = (p: SsoProvider, over: Record<string, unknown>) =>
    (identityFromClaims(p, p.issuer, { ...claims, ...over }, NOW) as { refused?: string }).refused;
  it("accepts an allowed domain and names the user from usernameClaim", () => {
    const result = identityFromClaims(provider, provider.issuer, claims, NOW);
    expect(result).toMatchObject({ identity: { name: "alice", subject: "s1", groups: ["a"], mfaAt: null } });
  });
  it("refuses another domain, a look-alike domain, no e-mail, an unverified e-mail, no usable name", () => {
    const refused = (over: Record<string, unknown>) =>
      (identityFromClaims(provider, provider.issuer, { ...claims, ...over }, NOW) as { refused?: string }).refused;
    expect(refused({ email: "alice@evil.com" })).toBe("SSO_EMAIL_DOMAIN_DENIED");
    expect(refused({ email: "alice@example.com.evil.com" })).toBe("SSO_EMAIL_DOMAIN_DENIED");
    expect(refused({ email: "alice@sub.example.com" })).toBe("SSO_EMAIL_DOMAIN_DENIED");
    expect(refused({ email: undefined })).toBe("SSO_CLAIM_MISSING");
    expect(refused({ email_verified: false })).toBe("SSO_CLAIM_MISSING");
    expect(refused({ preferred_username: "@@@" })).toBe("SSO_CLAIM_MISSING");
    expect(refused({ sub: undefined })).toBe("SSO_CLAIM_MISSING");
  });
  it("never keeps an e-mail the provider says is unverified, and never names a user from one", () => {
    const open = { ...provider, allowedEmailDomains: [] };
    const emailOf = (over: Record<string, unknown>, p = open) =>
      (identityFromClaims(p, p.issuer, { ...claims, ...over }, NOW) as { identity?: { email: string | null } }).identity
        ?.email;
    expect(emailOf({ email_verified: true })).toBe("alice@example.com");
    // Entra sends no email_verified at all: the address is the provider's word.
    expect(emailOf({})).toBe("alice@example.com");
    expect(emailOf({ email_verified: false })).toBeNull();
    // Amazon Cognito's strings.
    expect(emailOf({ email_verified: "false" })).toBeNull();
    expect(emailOf({ email_verified: "True" })).toBe("alice@example.com");
    expect(refusedBy(provider, { email_verified: "false" })).toBe("SSO_CLAIM_MISSING");
    const byEmail = { ...open, usernameClaim: "email" };
    expect(refusedBy(byEmail, { email_verified: false })).toBe("SSO_CLAIM_MISSING");
    expect(identityFromClaims(byEmail, byEmail.issuer, claims, NOW)).toMatchObject({
      identity: { name: "alice.example.com", email: "alice@example.com" },
    });
  });
  it("an Entra overage (groups elsewhere) leaves memberships alone; an absent claim is no groups", () => {
    const overage = identityFromClaims(
      provider,
      provider.issuer,
      { ...claims, groups: undefined, _claim_names: { groups: "src1" } },
      NOW,
    );
    expect(overage).toMatchObject({ identity: { groups: null } });
    const none = identityFromClaims(provider, provider.issuer, { ...claims, groups: undefined }, NOW);
    expect(none).toMatchObject({ identity: { groups: [] } });
  });

  it("counts the provider's MFA only for configured amr/acr values, at its auth_time", () => {
    const authTime = Math.floor(NOW.getTime() / 1000) - 60;
    expect(providerMfaAt(provider, { amr: ["pwd"] }, NOW)).toBeNull();
    expect(providerMfaAt(provider, { amr: ["pwd", "mfa"], auth_time: authTime }, NOW)).toEqual(
      new Date(authTime * 1000),
    );
    expect(providerMfaAt(provider, { acr: "urn:example:loa:2", auth_time: authTime }, NOW)).toEqual(
      new Date(authTime * 1000),
    );
    expect(providerMfaAt({ mfaAmr: [], mfaAcr: [] }, { amr: ["mfa"], auth_time: authTime }, NOW)).toBeNull();
    // Without an auth_time the MFA's age is unknown: not counted.
    expect(providerMfaAt(provider, { amr: ["mfa"] }, NOW)).toBeNull();
    expect(providerMfaAt(provider, { acr: "urn:example:loa:2" }, NOW)).toBeNull();
    // An auth_time in the future is not believed; a few seconds ahead is the provider's clock.
    expect(providerMfaAt(provider, { amr: ["mfa"], auth_time: authTime + 3600 }, NOW)).toBeNull();
    expect(providerMfaAt(provider, { amr: ["mfa"], auth_time: authTime + 90 }, NOW)).toEqual(NOW);
  });
});

describe("redirects a CLI may ask for", () => {
  it("only loopback http with a port, no query or credentials", () => {
    expect(isLoopbackRedirect("http://127.0.0.1:53123/callback")).toBe(true);
    expect(isLoopbackRedirect("http://[::1]:53123/callback")).toBe(true);
    expect(isLoopbackRedirect("http://127.0.0.1/callback")).toBe(false);
    expect(isLoopbackRedirect("https://127.0.0.1:1/cb")).toBe(false);
    expect(isLoopbackRedirect("http://127.0.0.1.evil.com:1/cb")).toBe(false);
    expect(isLoopbackRedirect("http://u:p@127.0.0.1:1/cb")).toBe(false);
    expect(isLoopbackRedirect("http://127.0.0.1:1/cb?next=https://evil")).toBe(false);
  });
});

describe("library errors to codes", () => {
  const ope = (code: string, message: string, claim?: string) => ({
    name: "ClientError",
    code,
    message: "x",
    cause: { code, message, cause: claim ? { claim } : {} },
  });
  it("maps each validation failure to its own code", () => {
    expect(refusalOfClientError(ope("OAUTH_JWT_CLAIM_COMPARISON_FAILED", 'unexpected JWT "iss"', "iss")).refused).toBe(
      "SSO_ISSUER_MISMATCH",
    );
    expect(refusalOfClientError(ope("OAUTH_JWT_CLAIM_COMPARISON_FAILED", "aud", "aud")).refused).toBe(
      "SSO_AUDIENCE_MISMATCH",
    );
    expect(refusalOfClientError(ope("OAUTH_JWT_CLAIM_COMPARISON_FAILED", "nonce", "nonce")).refused).toBe(
      "SSO_NONCE_MISMATCH",
    );
    expect(refusalOfClientError(ope("OAUTH_JWT_TIMESTAMP_CHECK_FAILED", "exp", "exp")).refused).toBe(
      "SSO_TOKEN_EXPIRED",
    );
    expect(refusalOfClientError(ope("OAUTH_INVALID_RESPONSE", "JWT signature verification failed")).refused).toBe(
      "SSO_BAD_SIGNATURE",
    );
    expect(refusalOfClientError({ name: "AuthorizationResponseError", error: "access_denied" }).refused).toBe(
      "SSO_PROVIDER_DENIED",
    );
    expect(refusalOfClientError(new Error("anything else")).refused).toBe("SSO_TOKEN_INVALID");
  });
});
