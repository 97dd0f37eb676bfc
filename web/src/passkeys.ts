/**
 * Passkeys in the browser (@simplewebauthn/browser): the server issues every challenge and keeps it; this
 * only hands the options to navigator.credentials and the answer back.
 */
import {
  browserSupportsWebAuthn,
  startAuthentication,
  startRegistration,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
} from "@simplewebauthn/browser";
import type { PasskeyDto, WebauthnOptionsDto } from "../../src/contract/passkeys.js";
import { api } from "./api.js";

export { browserSupportsWebAuthn };

/** The browser's answer to a challenge the server issued (sign-in second factor, step-up). */
export async function answerChallenge(issued: WebauthnOptionsDto) {
  const response = await startAuthentication({
    optionsJSON: issued.options as unknown as PublicKeyCredentialRequestOptionsJSON,
  });
  return { challengeId: issued.challengeId, response };
}

export async function registerPasskey(name: string): Promise<PasskeyDto> {
  const issued = await api<WebauthnOptionsDto>("POST", "/v1/me/webauthn/registration-options");
  const response = await startRegistration({
    optionsJSON: issued.options as unknown as PublicKeyCredentialCreationOptionsJSON,
  });
  return api<PasskeyDto>("POST", "/v1/me/webauthn/credentials", { challengeId: issued.challengeId, name, response });
}

/** Steps up this tab's session, or the CLI session of a hand-off. */
export async function stepUpWithPasskey(handoff?: string): Promise<void> {
  const issued = await api<WebauthnOptionsDto>("POST", "/v1/auth/webauthn/step-up-options", handoff ? { handoff } : {});
  await api("POST", "/v1/auth/webauthn/step-up", await answerChallenge(issued));
}

/** A sentence for what the browser itself refused (the user cancelled, no authenticator, timeout). */
export function browserProblem(error: unknown): string {
  const name = (error as { name?: string }).name;
  if (name === "NotAllowedError") return "The passkey prompt was cancelled or timed out; try again.";
  if (name === "InvalidStateError") return "This authenticator is already registered for your account.";
  return error instanceof Error ? error.message : String(error);
}
