/**
 * The audit log. `append` runs inside the caller's transaction: the change and
 * its events commit together or not at all. Each append locks the chain head,
 * which totally orders the chain.
 */
import type { Kysely } from "kysely";
import type { AppStore, Database } from "../../db/index.js";
import type { Clock } from "../../lib/clock.js";
import { newId } from "../../lib/ids.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import type { Keyring } from "../keys/keys.service.js";
import { chain, checkpointMessage, createChainVerifier } from "./audit.rules.js";
import * as auditStore from "./audit.store.js";
import type { AuditEvent, AuditInput, VerifyResult } from "./audit.types.js";

export interface AuditLog {
  append(
    tx: Kysely<Database>,
    actor: Actor,
    context: CallContext,
    events: AuditInput | AuditInput[],
  ): Promise<AuditEvent[]>;
  /** Records an event in its own transaction (for denials and failures that change nothing else). */
  record(actor: Actor, context: CallContext, events: AuditInput | AuditInput[]): Promise<AuditEvent[]>;
  /** Signs a checkpoint over the current head (done every N events and at shutdown). */
  checkpoint(): Promise<{ seq: number } | null>;
  verify(onProgress?: (count: number) => void): Promise<VerifyResult>;
  /** Events after `afterSeq`, oldest first, in pages. */
  read(
    options: { afterSeq?: number; limit?: number; order?: "asc" | "desc"; beforeSeq?: number } & auditStore.EventFilter,
  ): Promise<AuditEvent[]>;
}

export function actorLabel(actor: Actor): { actor: string; actorId: string | null } {
  switch (actor.kind) {
    case "principal":
      return { actor: actor.name, actorId: actor.id };
    case "system":
      return { actor: `system:${actor.name}`, actorId: null };
    case "anonymous":
      return { actor: "anonymous", actorId: null };
  }
}

export function createAuditLog(deps: {
  store: Pick<AppStore, "db" | "transaction">;
  keyring: Pick<Keyring, "signDetached" | "verifyDetached">;
  clock: Clock;
  checkpointEvery?: number;
}): AuditLog {
  const { store, keyring, clock } = deps;
  const every = deps.checkpointEvery ?? 1000;

  async function signCheckpoint(tx: Kysely<Database>, head: { seq: number; hash: string }) {
    const { keyId, signature } = keyring.signDetached("audit", checkpointMessage(head.seq, head.hash));
    await auditStore.insertCheckpoint(tx, { ...head, keyId, signature, signedAt: clock.now() });
  }

  const append: AuditLog["append"] = async (tx, actor, context, input) => {
    const inputs = Array.isArray(input) ? input : [input];
    if (inputs.length === 0) return [];
    const head = await auditStore.lockHead(tx);
    const who = actorLabel(actor);
    const time = clock.now().toISOString();
    const events: AuditEvent[] = [];
    let prev = head;
    for (const item of inputs) {
      const event = chain(
        {
          id: newId(),
          time,
          ...who,
          action: item.action,
          subject: item.subject ?? null,
          outcome: item.outcome,
          reason: item.reason ?? null,
          correlationId: context.correlationId,
          sourceIp: context.sourceIp,
          userAgent: context.userAgent,
          details: item.details ?? {},
        },
        prev,
      );
      events.push(event);
      prev = event;
    }
    await auditStore.insertEvents(tx, events);
    await auditStore.moveHead(tx, { seq: prev.seq, hash: prev.hash });
    if (Math.floor(prev.seq / every) > Math.floor(head.seq / every)) await signCheckpoint(tx, prev);
    return events;
  };

  return {
    append,
    record: (actor, context, events) => store.transaction((tx) => append(tx, actor, context, events)),

    async checkpoint() {
      return store.transaction(async (tx) => {
        const head = await auditStore.lockHead(tx);
        if (head.seq === 0) return null;
        await signCheckpoint(tx, head);
        return { seq: head.seq };
      });
    },

    async verify(onProgress) {
      // Checkpoints first, then the head: a checkpoint commits with the head it covers, so every
      // checkpoint read here is at or below the head. Events appended later are left for the next run.
      const signed = await auditStore.listCheckpoints(store.db);
      const head = await auditStore.readHead(store.db);
      const checkpoints = signed.map((cp) => ({
        seq: cp.seq,
        hash: cp.hash,
        signatureValid: keyring.verifyDetached("audit", cp.key_id, checkpointMessage(cp.seq, cp.hash), cp.signature),
      }));
      const verifier = createChainVerifier(checkpoints);
      let after = 0;
      for (;;) {
        const rows = await auditStore.pageFrom(store.db, after, 5000);
        if (rows.length === 0) break;
        let going = true;
        for (const row of rows) {
          if (row.seq > head.seq) {
            going = false;
            break;
          }
          going = verifier.push(auditStore.toEvent(row));
          if (!going) break;
        }
        if (!going) break;
        after = rows.at(-1)!.seq;
        onProgress?.(after);
      }
      return verifier.finish(head);
    },

    async read({ afterSeq = 0, limit = 1000, order = "asc", beforeSeq, ...filter }) {
      const size = Math.min(limit, 10_000);
      const rows =
        order === "desc"
          ? await auditStore.pageBefore(store.db, beforeSeq, size, filter)
          : await auditStore.pageFrom(store.db, afterSeq, size, filter);
      return rows.map(auditStore.toEvent);
    },
  };
}
