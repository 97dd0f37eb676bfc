/**
 * Secret reads: decided and opened from memory while the access index vouches for its messages, the read's
 * audit event group-committed with other reads' (audit-batch.ts) and the value returned only after it
 * committed; everything memory cannot decide alone is decided from the database (README.md).
 */
import { checkoutPolicy } from "../../contract/vault.js";
import { StintError } from "../../lib/errors.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { createAuditBatcher } from "./audit-batch.js";
import { iso, type VaultContext } from "./vault.context.js";
import type { CachedValue } from "./vault.memory.js";
import * as vaultStore from "./vault.store.js";

export function createReads(ctx: VaultContext) {
  const { deps, store, audit, memory, principalOf, mayUse, refuse, assertReleasable, release } = ctx;
  const { cachedSecret, cachedValue, forgetSecret, rootKey } = memory;
  const index = deps.index;

  const readAudit = createAuditBatcher<vaultStore.HeldCopy>({
    store,
    audit,
    allowed: { copy: vaultStore.heldCopy, condition: vaultStore.COPY_IS_CURRENT },
    ...deps.readAudit,
  });

  /**
   * A read decided and opened from memory, or null when memory cannot decide it alone: not allowed by the
   * copy (denials are made from the database row), break-glass, exclusive, missing, not opening, or found
   * stale when its audit event was committed (then nothing was recorded or returned).
   */
  async function readFromMemory(actor: Actor, context: CallContext, path: string, version?: number) {
    const cached = await cachedSecret(path);
    if (!cached || cached.row.break_glass || cached.exclusive || !(await mayUse(actor, cached.row))) return null;
    const row = cached.row;
    const wanted = version ?? row.current_version;
    let opened: CachedValue | undefined;
    try {
      opened = await cachedValue(row, wanted);
    } catch {
      return null; // the database read answers (INTEGRITY_FAILED for a version that does not open)
    }
    if (opened === undefined) return null;
    const recorded = await readAudit.record(
      actor,
      context,
      { action: "secret.read", outcome: "success", subject: `secret:${path}`, details: { version: wanted } },
      { row, version: wanted, sealed: opened.sealed },
    );
    if (!recorded) {
      forgetSecret(path); // stale or altered in the database: read again from there
      return null;
    }
    // One answer per version kept (and one serialised body per answer: vault.routes.ts).
    const kept = opened.answer;
    if (kept !== undefined && kept.kind === row.kind && kept.path === path) return kept;
    return (opened.answer = Object.freeze({ path, version: wanted, kind: row.kind, value: opened.value }));
  }

  /** A read decided and opened from the database: every refusal, and whatever memory could not answer. */
  async function readFromDatabase(actor: Actor, context: CallContext, path: string, version?: number) {
    const principal = principalOf(actor);
    const row = await vaultStore.findSecret(store.db, path);
    if (!row || !(await mayUse(actor, row)))
      return refuse(
        actor,
        context,
        "secret.read",
        path,
        `There is no secret ${path} that you may read now (activate a role that lists it).`,
      );
    await assertReleasable("read", row, { actor, context });
    const policy = checkoutPolicy.parse(row.checkout ?? {});
    if (policy.exclusive) {
      const open = await vaultStore.openCheckout(store.db, row.id);
      if (!open || open.holder_id !== principal.id)
        throw new StintError(
          "CHECKED_OUT",
          open
            ? `${path} is checked out by ${open.holder_name} until ${iso(open.expires_at)}.`
            : `${path} is exclusive: check it out first (stint secret checkout ${path}).`,
          open ? { holder: open.holder_name, until: iso(open.expires_at) } : undefined,
        );
    }
    const wanted = version ?? row.current_version;
    const value = await release("read", row, wanted, { actor, context });
    await readAudit.record(actor, context, {
      action: "secret.read",
      outcome: "success",
      subject: `secret:${path}`,
      details: { version: wanted },
    });
    return { path, version: wanted, kind: row.kind, value };
  }

  /**
   * Reads a value (the current version unless one is named). Exclusive secrets need the reader's check-out.
   * While the access index vouches for itself the decision and the sealed value come from memory, and the
   * read's audit event is committed with other reads' (group commit) after checking, in that transaction,
   * that the copy used is what the database holds; the value is returned only after that commit. Anything
   * else (a refusal, break-glass, an exclusive secret, a stale copy) is decided from the database.
   */
  async function read(actor: Actor, context: CallContext, path: string, version?: number) {
    return (await readFromMemoryOnly(actor, context, path, version)) ?? readFromDatabase(actor, context, path, version);
  }

  /**
   * `read` as far as memory decides it: the value, after its event committed, or null when `read` would
   * go on to the database (and then nothing was recorded); throws what `read` throws before or in the
   * memory's part (UNAUTHENTICATED, SEALED, a failed audit batch). The HTTP fast path's read.
   */
  async function readFromMemoryOnly(actor: Actor, context: CallContext, path: string, version?: number) {
    principalOf(actor);
    await rootKey();
    return index?.view() ? readFromMemory(actor, context, path, version) : null;
  }

  return {
    read,
    readFromMemoryOnly,
    /** How the reads' audit events were group-committed so far (for the benchmark). */
    readAuditStats: () => readAudit.stats(),
  };
}
