/**
 * Many pending events of one kind at once (`AuditLog.appendUniform`: the scheduler's expiries): one action,
 * outcome, reason, time, actor and context, each event with its own id, subject and details. The MAC texts are
 * the ones `append` writes (`pendingMessage`), made from a template built once per batch out of
 * `canonicalParts` itself, so the layout of the text stays defined in one place (`audit.rules.ts`); the events
 * go in one INSERT whose shared columns travel once and each event as `[id, subject, mac, details]`, all in
 * one JSON text under a constant, prepared statement (no array per column, no object per event, nothing
 * escaped value by value), with notifications sent by the same statement.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { oneParameter } from "../../lib/constant-sql.js";
import { PREPARED } from "../../lib/db.js";
import { newId } from "../../lib/ids.js";
import { canonicalParts, pendingMessageOf } from "./audit.rules.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import type { PendingAuditEvent } from "./audit.types.js";

/** `AuditLog.appendUniform`: see there. */
export type AppendUniform = (
  tx: Kysely<Database>,
  actor: Actor,
  context: CallContext,
  batch: {
    action: string;
    outcome: PendingAuditEvent["outcome"];
    reason: string | null;
    subjects: readonly string[];
    /** Each event's details as their canonical JSON (`canonicalDetailsText`), in the order of `subjects`. */
    details: readonly string[];
    /** Notifications sent by the same statement (delivered at commit), in this order. */
    notify?: readonly { channel: string; payload: string }[];
    /** The events' time (ISO); the clock's now by default. */
    time?: string;
  },
) => Promise<number>;

/** Every column of the batch's events but id, subject and details. */
export type SharedColumns = Omit<PendingAuditEvent, "id" | "subject" | "details">;

/** The MAC text of a batch's event is `beforeDetails + details + beforeId + id + beforeSubject + subject + end`. */
export interface UniformTemplate {
  beforeDetails: string;
  beforeId: string;
  beforeSubject: string;
  end: string;
}

const SURROGATE = /[\ud800-\udfff]/;

/**
 * The template of `shared`'s events, cut out of the MAC text of a probe event (empty id and subject, no
 * details): JSON escapes every quote inside a value, so `"details":{},"id":""` and `"subject":""` with bare
 * quotes occur in that text exactly once, as its keys. Null when `canonicalParts` takes the general path
 * (a shared field that is not a plain string or null): the batch then takes `append`.
 */
export function uniformTemplate(shared: SharedColumns): UniformTemplate | null {
  const parts = canonicalParts({ ...shared, id: "", subject: "", details: {} });
  if (!parts) return null;
  const text = pendingMessageOf(parts);
  const details = text.indexOf('"details":{},"id":""');
  const subject = text.indexOf('"subject":""');
  if (details < 0 || subject < details || text.indexOf('"subject":""', subject + 1) >= 0) return null;
  return {
    beforeDetails: text.slice(0, details + '"details":'.length),
    beforeId: ',"id":',
    beforeSubject: text.slice(details + '"details":{},"id":""'.length, subject + '"subject":'.length),
    end: text.slice(subject + '"subject":""'.length),
  };
}

/**
 * One event's MAC text: `details` is its details' canonical JSON (`canonicalDetailsText`); null when the id or
 * subject holds a surrogate (the general path decides those).
 */
export function uniformMessage(template: UniformTemplate, id: string, subject: string, details: string): string | null {
  if (SURROGATE.test(id) || SURROGATE.test(subject)) return null;
  return (
    template.beforeDetails +
    details +
    template.beforeId +
    JSON.stringify(id) +
    template.beforeSubject +
    JSON.stringify(subject) +
    template.end
  );
}

/**
 * The batch's rows as one JSON array text, each `[id, subject, mac, details]`, with a fresh id and its MAC
 * (`mac` of its text) each; null when an event cannot take the template (see `uniformMessage`).
 */
export function uniformRows(
  template: UniformTemplate,
  subjects: readonly string[],
  details: readonly string[],
  mac: (message: string) => string,
): string | null {
  let rows = "[";
  for (let i = 0; i < subjects.length; i++) {
    const id = newId();
    const subject = subjects[i]!;
    const message = uniformMessage(template, id, subject, details[i]!);
    if (message === null) return null;
    // A UUID and a hex MAC need no escape.
    rows += `${i === 0 ? "" : ","}["${id}",${JSON.stringify(subject)},"${mac(message)}",${details[i]}]`;
  }
  return `${rows}]`;
}

/** `notify`'s payloads as a JSON text of `[channel, payload]` pairs, in order. */
const notifications = (notify: readonly { channel: string; payload: string }[]) =>
  JSON.stringify(notify.map((m) => [m.channel, m.payload]));

/**
 * The batch's INSERT and its notifications, from one JSON text `[shared, rows, notify]`: `shared` the shared
 * columns (`[time, actor, actorId, action, outcome, reason, correlationId, sourceIp, userAgent]`), `rows` as
 * `uniformRows` writes them, `notify` as `notifications` does. Constant and prepared: nothing built, and no
 * array escaped element by element, per call.
 */
const INSERT_UNIFORM = oneParameter<{ inserted: number; notified: number }>(`${PREPARED} with p as (
    select $1::jsonb as j
  ), events as (
    select e->>0 as id, e->>1 as subject, e->>2 as mac, e->3 as details, n
    from p, jsonb_array_elements(p.j->1) with ordinality as t(e, n)
  ), inserted as (
    insert into audit_pending (id, time, actor, actor_id, action, subject, outcome, reason, correlation_id,
      source_ip, user_agent, details, mac)
    select id::uuid, (s->>0)::timestamptz, s->>1, (s->>2)::uuid, s->>3, subject, s->>4, s->>5, s->>6, s->>7,
      s->>8, details, mac
    from events, (select j->0 as s from p) as shared order by n
    returning 1
  )
  select (select count(*) from inserted)::int as inserted,
    (select count(*) from (select pg_notify(m->>0, m->>1) from p, jsonb_array_elements(p.j->2)
      with ordinality as t(m, n) order by n) sent)::int as notified`);

/** `notify`'s payloads (`notifications`) to their channels, in order. */
const NOTIFY_ALL = oneParameter(
  `${PREPARED} select pg_notify(m->>0, m->>1) from jsonb_array_elements($1::jsonb) with ordinality as t(m, n) order by n`,
);

/**
 * Inserts the rows (`uniformRows`) into `audit_pending` with the shared columns, in their order, and sends
 * `notify`'s payloads to their channels, in this order, in the same statement (delivered at commit, like
 * every NOTIFY): one JSON parameter under a constant text (`INSERT_UNIFORM`). Returns how many events were
 * inserted.
 */
export async function insertUniform(
  tx: Kysely<Database>,
  shared: SharedColumns,
  rows: string,
  notify: readonly { channel: string; payload: string }[],
): Promise<number> {
  const columns = JSON.stringify([
    shared.time,
    shared.actor,
    shared.actorId,
    shared.action,
    shared.outcome,
    shared.reason,
    shared.correlationId,
    shared.sourceIp,
    shared.userAgent,
  ]);
  const { rows: result } = await INSERT_UNIFORM(`[${columns},${rows},${notifications(notify)}]`).execute(tx);
  return result[0]?.inserted ?? 0;
}

/** `notify`'s payloads to their channels, in this order, in one statement (delivered at commit). */
export async function notifyAll(
  tx: Kysely<Database>,
  notify: readonly { channel: string; payload: string }[],
): Promise<void> {
  if (notify.length === 0) return;
  await NOTIFY_ALL(notifications(notify)).execute(tx);
}

/** A details object's canonical JSON, as the MAC and the hash cover it (what `uniformMessage` takes). */
export function canonicalDetailsText(details: Record<string, unknown>): string {
  const probe = {
    time: "",
    actor: "",
    actorId: null,
    action: "",
    outcome: "success" as const,
    reason: null,
    correlationId: null,
    sourceIp: null,
    userAgent: null,
  };
  const parts = canonicalParts({ ...probe, id: "", subject: null, details });
  if (!parts) throw new Error("audit details cannot be encoded");
  const head = parts.head;
  return head.slice(head.indexOf('"details":') + '"details":'.length, head.lastIndexOf(',"id":"",'));
}
