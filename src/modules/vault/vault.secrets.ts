/**
 * Secrets and their versions: put (a new version; only an operator changes who may read, break-glass and
 * rotation), list, meta and versions; a value sealed for or opened from elsewhere (dynamic credentials);
 * session secrets injected for the target they are allowed for, and the operator's allowances.
 */
import { checkoutPolicy, type PutSecretBody, type SecretMetaDto } from "../../contract/vault.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import { actorLabel } from "../audit/audit.service.js";
import { authorize, can } from "../authz/authz.rules.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import {
  allowSessionSecret,
  disallowSessionSecret,
  findTarget,
  sessionSecretAllowance,
} from "../catalog/catalog.public.js";
import { targetConfig } from "../catalog/catalog.rules.js";
import { endpointOf, sessionSecretUsable } from "../catalog/custody.rules.js";
import { accessFields, integrity, iso, newValueFor, nextRotation, type VaultContext } from "./vault.context.js";
import { binding, generateValue, openVersion, sealVersion } from "./vault.crypto.js";
import { custodyChanges } from "./vault.rules.js";
import * as vaultStore from "./vault.store.js";

export function createSecrets(ctx: VaultContext) {
  const { store, audit, clock, memory, allowanceKey, principalOf, metaDto, mayUse, release } = ctx;
  const { activeKek, kekOf, rootKey, tellSecret } = memory;

  /** Seals a value that lives elsewhere (a dynamic credential) under the vault's current KEK, bound to `bound`. */
  async function sealValue(bound: string, value: string) {
    const kek = await activeKek(store.db);
    return { ...sealVersion(kek.key, bound, value), kekVersion: kek.version };
  }

  async function openValue(bound: string, sealed: { ciphertext: string; wrappedKey: string; kekVersion: number }) {
    try {
      return openVersion(await kekOf(store.db, sealed.kekVersion), bound, sealed);
    } catch (error) {
      return integrity(error);
    }
  }

  async function put(actor: Actor, context: CallContext, path: string, input: PutSecretBody): Promise<SecretMetaDto> {
    authorize(actor, "secrets.write");
    const who = principalOf(actor).name;
    const kindOf = input.kind;
    const value =
      input.value ?? (kindOf === "ssh-key" ? newValueFor("ssh-key") : generateValue(input.generate!.length));
    const kek = await activeKek(store.db);
    // Who may read it, its break-glass and its rotation target are the operator's: secrets.write adds versions.
    const operator = can(actor, "vault.operate");
    const custodyRefusal = (changed: string[]) =>
      new StintError(
        "FORBIDDEN",
        `Only an operator (admin) changes who may read ${path}, its break-glass or its rotation (asked: ${changed.join(", ")}).`,
      );
    const current = operator ? undefined : await vaultStore.findSecret(store.db, path);
    if (current) {
      const changed = custodyChanges(accessFields(current), accessFields(current, input));
      if (changed.length > 0) {
        await audit.record(actor, context, {
          action: "secret.version_added",
          outcome: "denied",
          subject: `secret:${path}`,
          reason: `only an operator changes ${changed.join(", ")}`,
        });
        throw custodyRefusal(changed);
      }
    }
    const row = await store.transaction(async (tx) => {
      const now = clock.now();
      const existing = await vaultStore.findSecret(tx, path, true);
      if (existing && !operator) {
        const changed = custodyChanges(accessFields(existing), accessFields(existing, input));
        if (changed.length > 0) throw custodyRefusal(changed);
      }
      const id = existing?.id ?? newId();
      // After any version a rotation left pending, not only after the current one.
      const version = existing ? (await vaultStore.maxVersion(tx, existing.id)) + 1 : 1;
      const sealed = sealVersion(kek.key, binding(id, path, version), value);
      const fields = {
        kind: input.kind ?? existing?.kind ?? "generic",
        description: input.description ?? existing?.description ?? null,
        owner: input.owner ?? existing?.owner ?? null,
        metadata: input.metadata ?? existing?.metadata ?? {},
        roles: input.roles ?? existing?.roles ?? [],
        platform_roles: input.platformRoles ?? existing?.platform_roles ?? [],
        checkout:
          input.checkout ?? (existing ? checkoutPolicy.parse(existing.checkout ?? {}) : checkoutPolicy.parse({})),
        current_version: version,
        break_glass: input.breakGlass ?? existing?.break_glass ?? false,
        rotation: input.rotation ?? existing?.rotation ?? null,
      };
      if (existing) await vaultStore.updateSecret(tx, id, { ...fields, updated_at: now });
      else
        await vaultStore.insertSecret(tx, {
          id,
          path,
          ...fields,
          rotation_due_at: null,
          created_at: now,
          updated_at: now,
        });
      await vaultStore.insertVersion(tx, {
        secret_id: id,
        version,
        ciphertext: sealed.ciphertext,
        wrapped_key: sealed.wrappedKey,
        kek_version: kek.version,
        source: input.generate ? "generate" : "put",
        created_by: who,
        created_at: now,
      });
      await tellSecret(tx, path);
      await audit.append(tx, actor, context, {
        action: existing ? "secret.version_added" : "secret.created",
        outcome: "success",
        subject: `secret:${path}`,
        details: {
          kind: fields.kind,
          version,
          generated: input.generate !== undefined,
          roles: fields.roles,
          platformRoles: fields.platform_roles,
        },
      });
      // A new rotation schedule starts now.
      if (fields.rotation?.every && !existing?.rotation_due_at)
        await vaultStore.setRotationDue(tx, id, nextRotation(fields, now)!);
      return (await vaultStore.findSecret(tx, path))!;
    });
    return metaDto(store.db, row);
  }

  async function list(actor: Actor): Promise<SecretMetaDto[]> {
    const principal = principalOf(actor);
    const rows = await vaultStore.listSecrets(store.db);
    const all = can(principal, "secrets.read");
    const visible: SecretMetaDto[] = [];
    for (const row of rows) if (all || (await mayUse(actor, row))) visible.push(await metaDto(store.db, row));
    return visible;
  }

  async function meta(actor: Actor, path: string): Promise<SecretMetaDto> {
    principalOf(actor);
    const row = await vaultStore.findSecret(store.db, path);
    if (!row || !(can(actor, "secrets.read") || (await mayUse(actor, row))))
      throw new StintError("NOT_FOUND", `There is no secret ${path} you may see.`);
    return metaDto(store.db, row);
  }

  async function versions(actor: Actor, path: string) {
    const shown = await meta(actor, path);
    const row = (await vaultStore.findSecret(store.db, path))!;
    const versions = await vaultStore.versionsOf(store.db, row.id);
    return {
      path,
      items: versions.map((v) => ({
        version: v.version,
        source: v.source,
        createdBy: v.created_by,
        createdAt: iso(v.created_at),
        current: v.version === shown.currentVersion,
      })),
    };
  }

  /**
   * The current value of a secret for the session broker to inject upstream towards `target`: no actor,
   * because the user never receives it; the caller audits the session that used it (path and version,
   * never the value). Only a secret allowed for that target at its endpoint as it is now, never break-glass.
   */
  async function injectValue(
    path: string,
    target: { id: string; kind: string; address: string | null; options: Record<string, unknown> },
  ): Promise<{ version: number; kind: string; value: string }> {
    await rootKey();
    const row = await vaultStore.findSecret(store.db, path);
    const allowance = await sessionSecretAllowance(store.db, path);
    const problem = allowanceKey
      ? sessionSecretUsable({
          key: allowanceKey,
          path,
          targetId: target.id,
          endpoint: endpointOf(target),
          secret: row ? { breakGlass: row.break_glass } : null,
          allowance: allowance
            ? { targetId: allowance.target_id, endpoint: allowance.endpoint, mac: allowance.mac }
            : null,
        })
      : "cannot be checked on this server";
    if (problem || !row)
      throw new StintError("NOT_FOUND", `The session secret ${path} ${problem ?? "is not in the vault"}.`);
    return {
      version: row.current_version,
      kind: row.kind,
      value: await release("session", row, row.current_version),
    };
  }

  /**
   * An operator's explicit grant: the target's sessions may inject this secret, at the target's endpoint
   * as it is now (a later address change needs the grant again). Never a break-glass secret; a secret is
   * used by one target at most.
   */
  async function allowForTarget(actor: Actor, context: CallContext, path: string, targetRef: string) {
    authorize(actor, "vault.operate");
    const by = actorLabel(actor).actor;
    return store.transaction(async (tx) => {
      const target = await findTarget(tx, targetRef);
      const row = await vaultStore.findSecret(tx, path, true);
      if (!target || !row) throw new StintError("NOT_FOUND", `There is no secret ${path} or no target ${targetRef}.`);
      if (row.break_glass)
        throw new StintError("BREAK_GLASS_ONLY", `${path} is a break-glass secret: no session may inject it.`);
      const held = await sessionSecretAllowance(tx, path);
      if (held && held.target_id !== target.id)
        throw new StintError(
          "CONFLICT",
          `${path} is already the session secret of another target; disallow it there first.`,
        );
      if (!allowanceKey) throw new StintError("CONFLICT", "Session secrets cannot be allowed on this server.");
      const now = clock.now();
      const endpoint = endpointOf({
        kind: target.kind,
        address: target.address,
        options: targetConfig(target.config).options,
      });
      await allowSessionSecret(tx, { path, targetId: target.id, endpoint, grantedBy: by, now }, allowanceKey);
      await audit.append(tx, actor, context, {
        action: "secret.allowed",
        outcome: "success",
        subject: `secret:${path}`,
        details: { target: target.name, by: "operator" },
      });
      return { path, target: target.name, grantedBy: by, createdAt: now.toISOString() };
    });
  }

  async function disallowForTarget(actor: Actor, context: CallContext, path: string, targetRef: string): Promise<void> {
    authorize(actor, "vault.operate");
    await store.transaction(async (tx) => {
      const target = await findTarget(tx, targetRef);
      const removed = target ? await disallowSessionSecret(tx, path, target.id) : false;
      if (!target || !removed) throw new StintError("NOT_FOUND", `${path} is not allowed for a target ${targetRef}.`);
      await audit.append(tx, actor, context, {
        action: "secret.disallowed",
        outcome: "success",
        subject: `secret:${path}`,
        details: { target: target.name },
      });
    });
  }

  return { sealValue, openValue, put, list, meta, versions, injectValue, allowForTarget, disallowForTarget };
}
