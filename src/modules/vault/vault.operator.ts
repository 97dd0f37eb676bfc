/**
 * The operator's vault: status, init (shamir mode: a new root key split into shares, the KEKs re-wrapped
 * under it), unseal and seal, and the rotation of the key-encryption key.
 */
import { StintError } from "../../lib/errors.js";
import { authorize } from "../authz/authz.rules.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { integrity, type VaultContext } from "./vault.context.js";
import {
  binding,
  combineShares,
  newKey,
  parseShare,
  rewrapKey,
  splitRoot,
  unwrapKek,
  verifierFor,
  verifies,
  wrapKek,
  grantCredentialBinding,
  preCreatedBinding,
} from "./vault.crypto.js";
import * as vaultStore from "./vault.store.js";

export function createOperator(ctx: VaultContext) {
  const { deps, store, audit, clock, memory } = ctx;
  const { forgetAll, rootKey, tellKeks } = memory;
  // Shares given towards an unseal, on this node.
  let pendingShares: Uint8Array[] = [];

  async function status() {
    const config = await vaultStore.config(store.db);
    const keks = await vaultStore.keks(store.db);
    let sealed = memory.root === null;
    if (sealed && config?.mode !== "shamir" && deps.fileKey) {
      sealed = !(config ? verifies(deps.fileKey, config.verifier) : true);
    }
    return {
      mode: config?.mode ?? ("key-file" as const),
      sealed,
      progress: pendingShares.length,
      threshold: config?.threshold ?? null,
      shares: config?.shares ?? null,
      keyVersion: keks.filter((k) => k.state === "active").at(-1)?.version ?? null,
    };
  }

  async function init(actor: Actor, context: CallContext, input: { shares: number; threshold: number }) {
    authorize(actor, "vault.operate");
    const config = await vaultStore.config(store.db);
    if (config?.mode === "shamir") throw new StintError("CONFLICT", "The vault is already initialized with shares.");
    const current = config ? await rootKey() : null;
    const next = newKey();
    const shares = await splitRoot(next, input.shares, input.threshold);
    await store.transaction(async (tx) => {
      const now = clock.now();
      const keks = await vaultStore.keks(tx);
      if (keks.length === 0) await vaultStore.insertKek(tx, 1, wrapKek(next, 1, newKey()), now);
      for (const kek of keks) {
        if (!current) throw new StintError("SEALED");
        await vaultStore.rewrapKek(
          tx,
          kek.version,
          wrapKek(next, kek.version, unwrapKek(current, kek.version, kek.wrapped)),
        );
      }
      await vaultStore.writeConfig(
        tx,
        { mode: "shamir", shares: input.shares, threshold: input.threshold, verifier: verifierFor(next) },
        now,
      );
      await tellKeks(tx);
      await audit.append(tx, actor, context, {
        action: "vault.initialized",
        outcome: "success",
        details: { mode: "shamir", shares: input.shares, threshold: input.threshold },
      });
    });
    forgetAll();
    memory.root = next;
    pendingShares = [];
    return { shares, threshold: input.threshold };
  }

  /** One share towards the threshold; at the threshold the rebuilt key must match the verifier. */
  async function unseal(actor: Actor, context: CallContext, share: string) {
    authorize(actor, "vault.operate");
    const config = await vaultStore.config(store.db);
    if (config?.mode !== "shamir" || !config.threshold)
      throw new StintError("CONFLICT", "The vault is not in sealed (shamir) mode: there is nothing to unseal.");
    // The share is checked before anything else: garbage must never earn a 200, sealed or not.
    const parsed = parseShare(share, config.threshold);
    if (!parsed)
      throw new StintError(
        "VALIDATION_FAILED",
        "That is not an unseal share of this vault (stint-share- followed by the hex printed by stint operator init).",
      );
    if (memory.root)
      throw new StintError(
        "CONFLICT",
        "The vault is already unsealed on this node: no share is needed (stint operator status shows it).",
      );
    if (!pendingShares.some((s) => Buffer.from(s).equals(parsed))) pendingShares.push(parsed);
    if (pendingShares.length >= config.threshold) {
      const candidate = await combineShares(pendingShares, config.threshold);
      pendingShares = [];
      const ok = verifies(candidate, config.verifier);
      await audit.record(actor, context, { action: "vault.unsealed", outcome: ok ? "success" : "failed" });
      if (!ok) throw new StintError("VAULT_KEY_INVALID", "Those shares do not rebuild the vault key; start again.");
      memory.root = candidate;
    } else {
      await audit.record(actor, context, {
        action: "vault.unseal_share",
        outcome: "success",
        details: { progress: pendingShares.length, threshold: config.threshold },
      });
    }
    return status();
  }

  async function seal(actor: Actor, context: CallContext) {
    authorize(actor, "vault.operate");
    const config = await vaultStore.config(store.db);
    if (config?.mode !== "shamir")
      throw new StintError(
        "CONFLICT",
        "Only a vault initialized with shares can be sealed (its key would come back from the key file).",
      );
    memory.root = null;
    pendingShares = [];
    forgetAll();
    await audit.record(actor, context, { action: "vault.sealed", outcome: "success" });
    return status();
  }

  /** A new KEK; every data key re-wrapped under it in one transaction; payloads untouched. */
  async function rotateKey(actor: Actor, context: CallContext) {
    authorize(actor, "vault.operate");
    const key = await rootKey();
    const rotated = await store.transaction(async (tx) => {
      const now = clock.now();
      const keks = await vaultStore.keks(tx);
      const version = (keks.at(-1)?.version ?? 0) + 1;
      const next = newKey();
      await vaultStore.insertKek(tx, version, wrapKek(key, version, next), now);
      const unwrapped = new Map(keks.map((k) => [k.version, unwrapKek(key, k.version, k.wrapped)]));
      const versions = await vaultStore.allVersions(tx);
      try {
        for (const v of versions) {
          const bound = binding(v.secret_id, v.path, v.version);
          const wrapped = rewrapKey(unwrapped.get(v.kek_version)!, next, bound, v.wrapped_key);
          await vaultStore.setWrappedKey(tx, v.secret_id, v.version, wrapped, version);
        }
        for (const g of await vaultStore.allGrantCredentials(tx)) {
          const wrapped = rewrapKey(unwrapped.get(g.kek_version)!, next, grantCredentialBinding(g), g.wrapped_key);
          await vaultStore.setGrantCredentialKey(tx, g.grant_id, wrapped, version);
        }
        for (const p of await vaultStore.allPreCreated(tx)) {
          const wrapped = rewrapKey(unwrapped.get(p.kek_version)!, next, preCreatedBinding(p.id), p.wrapped_key);
          await vaultStore.setPreCreatedKey(tx, p.id, wrapped, version);
        }
      } catch (error) {
        integrity(error);
      }
      await vaultStore.retireKeksBefore(tx, version);
      await tellKeks(tx);
      await audit.append(tx, actor, context, {
        action: "vault.key_rotated",
        outcome: "success",
        details: { keyVersion: version, rewrapped: versions.length },
      });
      return { keyVersion: version, rewrapped: versions.length };
    });
    // This node seals with the new KEK from now on, without waiting for its own "kek" message.
    forgetAll();
    return rotated;
  }

  return { status, init, unseal, seal, rotateKey };
}
