/**
 * The device authorization grant (RFC 8628) for the CLI on a machine without a browser: Stint starts it at the
 * provider and keeps the device code sealed; the CLI polls Stint with a handle of its own; the sign-in is the
 * same transaction as the code flow's (sso.service.ts `signInAndThen`).
 */
import type { Kysely } from "kysely";
import * as oidc from "openid-client";
import type { Database } from "../../db/schema.js";
import { StintError, type ErrorCode } from "../../lib/errors.js";
import { open, randomToken, seal, sha256Hex } from "../../lib/security.js";
import type { CallContext } from "../authz/authz.types.js";
import type { TokenPair } from "../identity/identity.types.js";
import { refusalOfClientError } from "./sso.rules.js";
import type { SsoServiceDeps } from "./sso.service.js";
import * as ssoStore from "./sso.store.js";
import type { SsoIdentity, SsoProvider } from "./sso.types.js";

type Db = Kysely<Database>;

export const DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

export interface DeviceStart {
  deviceCode: string;
  userCode: string;
  verificationUri: string;
  verificationUriComplete: string | undefined;
  interval: number;
  expiresIn: number;
}

/** A StintError raised inside the library's fetch (the address policy, a timeout) comes back wrapped: unwrap it. */
export function throwIfStint(error: unknown): void {
  if (error instanceof StintError) throw error;
  const cause = (error as { cause?: unknown } | null)?.cause;
  if (cause instanceof StintError) throw cause;
}

/** What the device grant takes from the SSO service. */
export interface DeviceFlowDeps {
  deps: SsoServiceDeps;
  /** Seals the provider's device code at rest. */
  deviceKey: Uint8Array;
  refuse(
    context: CallContext,
    provider: string,
    refusal: { code: ErrorCode; reason: string; details?: Record<string, unknown> },
  ): Promise<never>;
  signInAndThen<T>(
    provider: SsoProvider,
    claims: Record<string, unknown>,
    context: CallContext,
    then: (tx: Db, principal: { principalId: string }, identity: SsoIdentity) => Promise<T>,
  ): Promise<T>;
}

export function createDeviceFlow({ deps, deviceKey, refuse, signInAndThen }: DeviceFlowDeps) {
  const { store, clock, clients } = deps;
  return {
    /** Starts a device authorization grant at the provider (Stint holds the client secret and the device code). */
    async deviceStart(providerId: string, context: CallContext): Promise<DeviceStart> {
      const provider = clients.provider(providerId);
      const config = await clients.configOf(provider.id);
      let response: oidc.DeviceAuthorizationResponse;
      try {
        response = await oidc.initiateDeviceAuthorization(config, { scope: provider.scopes.join(" ") });
      } catch (error) {
        throwIfStint(error);
        const refusal = refusalOfClientError(error);
        return refuse(context, provider.id, {
          code: refusal.refused === "SSO_PROVIDER_DENIED" ? "SSO_PROVIDER_DENIED" : "SSO_PROVIDER_UNAVAILABLE",
          reason: `device authorization: ${refusal.reason}`,
        });
      }
      const handle = randomToken(32);
      const codeHash = sha256Hex(handle);
      const now = clock.now();
      const expiresIn = Math.min(Math.max(Number(response.expires_in) || 600, 60), 1800);
      const interval = Math.min(Math.max(Number(response.interval) || 5, 1), 60);
      await store.transaction(async (tx) => {
        await ssoStore.sweep(tx, now);
        await ssoStore.insertHandoff(tx, {
          codeHash,
          kind: "device",
          provider: provider.id,
          principalId: null,
          clientChallenge: null,
          deviceCodeSealed: seal(deviceKey, response.device_code, `sso-device:${codeHash}`),
          pollIntervalS: interval,
          amr: null,
          mfaAt: null,
          now,
          expiresAt: new Date(now.getTime() + expiresIn * 1000),
        });
      });
      return {
        deviceCode: handle,
        userCode: response.user_code,
        verificationUri: response.verification_uri,
        verificationUriComplete: response.verification_uri_complete,
        interval,
        expiresIn,
      };
    },

    /** One poll of a device grant: a session once the person confirmed, SSO_AUTHORIZATION_PENDING until then. */
    async devicePoll(handle: string, context: CallContext): Promise<TokenPair> {
      const now = clock.now();
      const codeHash = sha256Hex(handle);
      const handoff = await ssoStore.lockHandoff(store.db, codeHash, "device", now);
      if (!handoff || !handoff.device_code_sealed) throw new StintError("SSO_CODE_INVALID");
      const provider = clients.provider(handoff.provider);
      // Stint asks the provider at most once per interval, whatever the client does (RFC 8628 slow_down).
      if (!(await ssoStore.claimPoll(store.db, codeHash, now))) {
        const slower = Math.min((handoff.poll_interval_s ?? 5) + 5, 60);
        await ssoStore.setPollInterval(store.db, codeHash, slower);
        throw new StintError("SSO_AUTHORIZATION_PENDING", "Polling too fast: wait longer between polls.", {
          interval: slower,
        });
      }
      const config = await clients.configOf(provider.id);
      const deviceCode = open(deviceKey, handoff.device_code_sealed, `sso-device:${codeHash}`).toString();
      let tokens: Awaited<ReturnType<typeof oidc.genericGrantRequest>>;
      try {
        tokens = await oidc.genericGrantRequest(config, DEVICE_GRANT, { device_code: deviceCode });
      } catch (error) {
        throwIfStint(error);
        const providerError = (error as { error?: unknown }).error;
        const interval = handoff.poll_interval_s ?? 5;
        if (providerError === "authorization_pending")
          throw new StintError("SSO_AUTHORIZATION_PENDING", undefined, { interval });
        if (providerError === "slow_down") {
          await ssoStore.setPollInterval(store.db, codeHash, interval + 5);
          throw new StintError("SSO_AUTHORIZATION_PENDING", "Polling too fast: wait longer between polls.", {
            interval: interval + 5,
          });
        }
        // Anything else ends the grant (expired, denied, or an answer that does not validate).
        await ssoStore.useHandoff(store.db, codeHash, now);
        const refusal = refusalOfClientError(error);
        return refuse(context, provider.id, {
          code: refusal.refused,
          reason: `device grant: ${refusal.reason}`,
          details: typeof providerError === "string" ? { error: providerError.slice(0, 64) } : {},
        });
      }
      const claims = tokens.claims() as Record<string, unknown> | undefined;
      if (!claims) {
        await ssoStore.useHandoff(store.db, codeHash, now);
        return refuse(context, provider.id, { code: "SSO_TOKEN_INVALID", reason: "no ID token" });
      }
      return signInAndThen(provider, claims, context, async (tx, signedIn, identity) => {
        // The grant is used once: a concurrent poll that got tokens too finds it used here.
        const live = await ssoStore.lockHandoff(tx, codeHash, "device", now);
        if (!live) throw new StintError("SSO_CODE_INVALID");
        await ssoStore.useHandoff(tx, codeHash, now);
        return deps.identity.openSession(
          tx,
          signedIn.principalId,
          { amr: identity.amr, mfaAt: identity.mfaAt },
          context,
        );
      });
    },
  };
}
