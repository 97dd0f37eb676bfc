/** Request and response shapes of the passkey (WebAuthn) API, shared by server, CLI and web. */
import { z } from "zod";
import { isoTime } from "./common.js";

/** base64url without padding, bounded: WebAuthn fields are small (an attestation object a few KiB). */
const b64url = (max: number) =>
  z
    .string()
    .max(max)
    .regex(/^[A-Za-z0-9_-]*$/, "must be base64url");

const transport = z.string().min(1).max(32);
const extensionResults = z
  .record(z.string().max(64), z.unknown())
  .refine((r) => Object.keys(r).length <= 16, "too many extension results");

/** What `navigator.credentials.create()` answers, as @simplewebauthn/browser's startRegistration returns it. */
export const registrationResponse = z.strictObject({
  id: b64url(1366).min(1),
  rawId: b64url(1366).min(1),
  type: z.literal("public-key"),
  response: z.strictObject({
    clientDataJSON: b64url(8192).min(1),
    attestationObject: b64url(16384).min(1),
    authenticatorData: b64url(8192).optional(),
    transports: z.array(transport).max(10).optional(),
    publicKeyAlgorithm: z.number().int().optional(),
    publicKey: b64url(8192).optional(),
  }),
  clientExtensionResults: extensionResults.default({}),
  authenticatorAttachment: z.enum(["platform", "cross-platform"]).optional(),
});

/** What `navigator.credentials.get()` answers, as @simplewebauthn/browser's startAuthentication returns it. */
export const authenticationResponse = z.strictObject({
  id: b64url(1366).min(1),
  rawId: b64url(1366).min(1),
  type: z.literal("public-key"),
  response: z.strictObject({
    clientDataJSON: b64url(8192).min(1),
    authenticatorData: b64url(8192).min(1),
    signature: b64url(2048).min(1),
    userHandle: b64url(512).optional(),
  }),
  clientExtensionResults: extensionResults.default({}),
  authenticatorAttachment: z.enum(["platform", "cross-platform"]).optional(),
});
export type AuthenticationResponseDto = z.infer<typeof authenticationResponse>;

/** A challenge issued by the server (kept there, single use) and the options to hand to the browser. */
export const webauthnOptions = z.object({
  challengeId: z.uuid(),
  options: z.record(z.string(), z.unknown()),
});
export type WebauthnOptionsDto = z.infer<typeof webauthnOptions>;

export const passkeyName = z
  .string()
  .trim()
  .min(1)
  .max(64)
  .refine((s) => ![...s].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f), {
    message: "must not contain control characters",
  });

export const passkey = z.object({
  id: z.uuid(),
  name: z.string(),
  createdAt: isoTime,
  lastUsedAt: isoTime.nullable(),
  backedUp: z.boolean(),
  transports: z.array(z.string()),
});
export type PasskeyDto = z.infer<typeof passkey>;
export const passkeyList = z.object({ items: z.array(passkey) });

export const registerPasskeyRequest = z.strictObject({
  challengeId: z.uuid(),
  name: passkeyName,
  response: registrationResponse,
});
export const renamePasskeyRequest = z.strictObject({ name: passkeyName });

/** A passkey answer to a challenge the server issued (sign-in second factor, step-up). */
export const webauthnAssertion = z.strictObject({ challengeId: z.uuid(), response: authenticationResponse });
export type WebauthnAssertionDto = z.infer<typeof webauthnAssertion>;

export const stepUpOptionsRequest = z.strictObject({
  /** A CLI session's hand-off: the answer steps up that session instead of the caller's. */
  handoff: z.uuid().optional(),
});
export const webauthnStepUpResult = z.object({ mfaAt: isoTime, method: z.literal("webauthn") });

export const stepUpHandoff = z.object({
  id: z.uuid(),
  /** The Stint web page that performs the step-up. */
  url: z.string(),
  /** Shown by the CLI and the page: the person checks both match. */
  matchCode: z.string(),
  expiresAt: isoTime,
});
export const stepUpHandoffStatus = z.object({
  id: z.uuid(),
  status: z.enum(["pending", "completed", "expired"]),
  matchCode: z.string(),
  requestedFrom: z.object({ sourceIp: z.string().nullable(), userAgent: z.string().nullable() }),
  createdAt: isoTime,
  expiresAt: isoTime,
  completedAt: isoTime.nullable(),
});
export type StepUpHandoffStatusDto = z.infer<typeof stepUpHandoffStatus>;
