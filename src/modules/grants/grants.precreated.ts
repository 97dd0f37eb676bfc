/**
 * Logins pre-created at a target ahead of demand (the target's `options.preCreatedLogins`, PostgreSQL): a stock of
 * unusable logins (NOLOGIN, no membership) whose password is already set at the target and sealed here, so an
 * activation of a `dynamic: true` role only hands one out (LOGIN, validity, membership): no SCRAM hashing by the
 * target and no sealing on its path. The stock is topped up by an outbox job in its own lane (`precreate:<target>`),
 * queued beside each such provisioning's target call; its logins' creation is audited (`login.precreated`, names only), and so is
 * the hand-out (the activation's `request.activated` names the login, which `login.precreated` listed). Taken by the submit's
 * transaction (precreated.store `claimPreCreated`): one login for one grant, never put back; dropped as any minted
 * login when the grant ends or fails.
 */
import { randomBytes } from "node:crypto";
import { newId } from "../../lib/ids.js";
import { SYSTEM } from "../authz/authz.types.js";
import { targetConfig } from "../catalog/catalog.rules.js";
import { ConnectorError } from "../connectors/index.js";
import { generateValue, preCreatedBinding } from "../vault/vault.crypto.js";
import { systemContext, type GrantContext } from "./grants.context.js";
import * as grantStore from "./grants.store.js";
import { JOB } from "./grants.types.js";
import * as preStore from "./precreated.store.js";

/** A row left `creating` this long ago belongs to a fill whose node died: its login is dropped, the row deleted. */
const STALE_CREATING_MS = 5 * 60_000;
/** Attempts of one fill; the next activation queues another anyway. */
const FILL_ATTEMPTS = 3;
/**
 * A fill runs this long after the activation that queued it: not while its requester reads the credentials and
 * signs in, which the target's PBKDF2 on new logins' secrets would compete with.
 */
const FILL_DELAY_MS = 250;

/** How many logins a target's options ask to keep ready (0: none; the connector checks the value, 0–32). */
export function preCreatedCount(config: unknown): number {
  const value = targetConfig(config).options.preCreatedLogins;
  return Number.isInteger(value) && (value as number) > 0 ? Math.min(value as number, 32) : 0;
}

/** `stint_pre_5d0c…`: not the requester's name (made before anyone asked), unique per login. */
export function preCreatedLogin(): string {
  return `stint_pre_${randomBytes(8).toString("hex")}`;
}

export function precreateLane(targetId: string): string {
  return `precreate:${targetId}`;
}

export function createPreCreation(ctx: GrantContext) {
  const { deps, store, audit, clock, outbox, call } = ctx;

  /** Queues a top-up of the target's stock (one statement; `key` makes it once per activation). */
  async function queueFill(targetId: string, key: string): Promise<void> {
    await outbox.enqueue(store.db, {
      kind: JOB.preCreate,
      idempotencyKey: `precreate:${key}`,
      payload: { targetId },
      maxAttempts: FILL_ATTEMPTS,
      lane: precreateLane(targetId),
      notBefore: new Date(clock.now().getTime() + FILL_DELAY_MS),
    });
  }

  /**
   * Tops the target's stock up to its `preCreatedLogins`: the rows first (`creating`, each password sealed bound to
   * its row), then the logins at the target in one call, then the rows made ready with their audit event; only when
   * at most half the stock is left, so logins are made a few at a time, in one round trip to the target. A fill
   * whose node died in between leaves rows `creating`: a later fill drops their logins (unusable meanwhile) and
   * deletes them. Two fills at once (two nodes) make a few logins too many, which the next activations use.
   */
  async function fillJob(payload: Record<string, unknown>, signal: AbortSignal): Promise<void> {
    const targetId = String(payload.targetId);
    const row = await grantStore.findTarget(store.db, targetId);
    if (!row || !deps.vault) return;
    const size = preCreatedCount(row.config);
    const now = clock.now();
    const held = await preStore.preCreatedOf(store.db, targetId, new Date(now.getTime() - STALE_CREATING_MS));
    const missing = size - held.ready - held.creating;
    if (held.stale.length === 0 && (missing <= 0 || held.ready + held.creating > Math.floor(size / 2))) return;
    const { connector, target } = await ctx.connectorTarget(store.db, row);
    if (!connector.preCreateLogins) return;
    for (const stale of held.stale)
      await call(connector.kind, "drop_login", () =>
        connector.dropLogin!(target, { login: stale.login }, { signal, operationId: `precreate:${stale.id}` }),
      );
    await preStore.deletePreCreated(
      store.db,
      held.stale.map((stale) => stale.id),
    );
    if (missing <= 0) return;
    const made: { id: string; login: string; password: string; minted?: ReturnType<typeof mint> }[] = [];
    const mint = () => connector.mintPassword?.(() => generateValue(32));
    for (let i = 0; i < missing; i++) {
      const minted = mint();
      made.push({
        id: newId(),
        login: preCreatedLogin(),
        password: minted?.password ?? generateValue(32),
        ...(minted ? { minted } : {}),
      });
    }
    const sealed = await Promise.all(made.map((m) => deps.vault!.sealValue(preCreatedBinding(m.id), m.password)));
    await preStore.insertCreating(
      store.db,
      made.map((m, i) => ({ id: m.id, targetId, login: m.login, ...sealed[i]!, now })),
    );
    try {
      await call(connector.kind, "precreate_logins", () =>
        connector.preCreateLogins!(
          target,
          made.map(({ login, password, minted }) => ({ login, password, ...(minted ? { minted } : {}) })),
          { signal, operationId: `precreate:${targetId}` },
        ),
      );
    } catch (error) {
      // Refused: the one transaction at the target made nothing. Otherwise the rows stay `creating` until stale.
      if (error instanceof ConnectorError && error.reason === "refused")
        await preStore.deletePreCreated(
          store.db,
          made.map((m) => m.id),
        );
      throw error;
    }
    await store.transaction(async (tx) => {
      await preStore.markReady(
        tx,
        made.map((m) => m.id),
      );
      await audit.append(tx, SYSTEM, systemContext(`precreate:${targetId}`), {
        action: "login.precreated",
        outcome: "success",
        subject: `target:${targetId}`,
        details: { target: row.name, logins: made.map((m) => m.login) },
      });
    });
  }

  return { queueFill, fillJob };
}
