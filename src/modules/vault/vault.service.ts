/**
 * The vault: secrets with versions under envelope encryption, reads bound to
 * active roles, exclusive check-outs, and the operator's seal/unseal/init and
 * key rotation. Values never reach a log line, an audit event or an error.
 *
 * The root key lives only in this process's memory: from the vault key file (or
 * STINT_VAULT_KEY) in key-file mode, or rebuilt from Shamir shares by an unseal
 * in shamir mode. Without it, secret operations answer SEALED (or
 * VAULT_KEY_INVALID for a key that does not match) and nothing else is affected.
 */
import { createCheckouts } from "./vault.checkout.js";
import { createVaultContext, type VaultServiceDeps } from "./vault.context.js";
import { createOperator } from "./vault.operator.js";
import { createReads } from "./vault.read.js";
import { createRotations } from "./vault.rotation.js";
import { createSecrets } from "./vault.secrets.js";

export type { VaultServiceDeps } from "./vault.context.js";

/**
 * Wires the use cases over one context (vault.context.ts): secrets and their versions (vault.secrets.ts),
 * reads (vault.read.ts), check-outs and the break-glass reveal (vault.checkout.ts), rotation
 * (vault.rotation.ts) and the operator's seal, unseal, init and key rotation (vault.operator.ts).
 */
export function createVaultService(deps: VaultServiceDeps) {
  const ctx = createVaultContext(deps);
  const rotations = createRotations(ctx);
  return {
    ...createSecrets(ctx),
    ...createReads(ctx),
    ...createCheckouts(ctx, rotations.rotate),
    ...rotations,
    ...createOperator(ctx),
  };
}

export type VaultService = ReturnType<typeof createVaultService>;
