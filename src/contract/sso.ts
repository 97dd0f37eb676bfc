/** Single sign-on (OIDC): request and response schemas shared by the server, the CLI and the web UI. */
import { z } from "zod";

export const providerParam = z.strictObject({ provider: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/) });

export const providerList = z.object({
  items: z.array(z.object({ id: z.string(), displayName: z.string() })),
});

export const startQuery = z.strictObject({
  /** The S256 PKCE challenge of the client that will redeem the sign-in's one-time code. */
  code_challenge: z.string().regex(/^[A-Za-z0-9_-]{43}$/, "must be an S256 PKCE challenge (43 base64url characters)"),
  /** A CLI's loopback address (http://127.0.0.1:PORT/…); none: the web UI. */
  redirect_uri: z.string().min(1).max(200).optional(),
});

export const redeemRequest = z.strictObject({
  code: z.string().min(1).max(128),
  codeVerifier: z.string().min(43).max(128),
});

export const deviceStartResult = z.object({
  deviceCode: z.string(),
  userCode: z.string(),
  verificationUri: z.string(),
  verificationUriComplete: z.string().optional(),
  interval: z.number().int(),
  expiresIn: z.number().int(),
});

export const deviceTokenRequest = z.strictObject({ deviceCode: z.string().min(1).max(128) });
