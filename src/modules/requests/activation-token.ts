/**
 * Activation tokens: a short-lived JWT listing the caller's active roles, so a
 * resource can check them offline against /.well-known/jwks.json. Its `exp`
 * never goes beyond the earliest end of the activations it lists.
 */
import { SignJWT } from "jose";
import type { Clock } from "../../lib/clock.js";
import { StintError } from "../../lib/errors.js";
import { randomToken } from "../../lib/security.js";
import type { Actor } from "../authz/authz.types.js";
import type { Keyring } from "../keys/keys.service.js";
import type { RequestService } from "./requests.service.js";

export const ACTIVATION_TOKEN_AUDIENCE = "stint-activation";
export const ACTIVATION_TOKEN_MAX_MS = 15 * 60_000;

export function createActivationTokenIssuer(deps: {
  requests: Pick<RequestService, "activeRoles">;
  keyring: Pick<Keyring, "current">;
  clock: Clock;
}) {
  return {
    async issue(actor: Actor) {
      if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
      const now = deps.clock.now();
      const active = await deps.requests.activeRoles(actor);
      if (active.length === 0) throw new StintError("NOT_ACTIVE", "You have no active role to put in a token.");
      const earliest = Math.min(...active.map((a) => new Date(a.expires_at!).getTime()));
      const expiresAt = new Date(Math.min(earliest, now.getTime() + ACTIVATION_TOKEN_MAX_MS));
      const roles = active.map((a) => ({
        role: a.role_name,
        expiresAt: new Date(a.expires_at!).toISOString(),
        requestId: a.id,
      }));
      const key = deps.keyring.current("token");
      const token = await new SignJWT({ name: actor.name, roles: roles.map((r) => r.role), activations: roles })
        .setProtectedHeader({ alg: "EdDSA", kid: key.id, typ: "JWT" })
        .setSubject(actor.id)
        .setIssuer("stint")
        .setAudience(ACTIVATION_TOKEN_AUDIENCE)
        .setIssuedAt(Math.floor(now.getTime() / 1000))
        // Whole seconds, rounded down: the token never outlives the earliest activation.
        .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
        .setJti(randomToken(16))
        .sign(key.privateKey);
      return { token, expiresAt: new Date(Math.floor(expiresAt.getTime() / 1000) * 1000).toISOString(), roles };
    },
  };
}

export type ActivationTokenIssuer = ReturnType<typeof createActivationTokenIssuer>;
