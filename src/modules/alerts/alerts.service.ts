/**
 * Anomaly alerts: one consumer per cluster (the lease) reads the chained audit log after its cursor, a batch at
 * a time, and in one transaction per batch runs the pure rules over each event, writes each new alert with its
 * `alert.raised` audit event, its notification (outbox) and its configured action (a review item, or an outbox
 * job that revokes the activation), saves what the rules learned and moves the cursor. A failed batch moves
 * nothing and is read again; an event is judged once (the states' seq, and one alert per rule and event).
 */
import type { Kysely } from "kysely";
import { Counter, Gauge, type Registry } from "prom-client";
import type { AppStore, Database } from "../../db/index.js";
import type { Clock } from "../../lib/clock.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import type { Logger } from "../../lib/logger.js";
import type { AuditLog } from "../audit/audit.service.js";
import { authorize } from "../authz/authz.rules.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import type { OutboxHandlers, OutboxService } from "../outbox/index.js";
import type { OpenReviewItem } from "../reviews/index.js";
import { evaluate, keysOf, notificationEvent } from "./alerts.rules.js";
import * as alertStore from "./alerts.store.js";
import type { AlertDraft, AlertRule, AlertsConfig, AlertSeverity, KeyState } from "./alerts.types.js";

export const ALERTS_ACTOR: Actor = { kind: "system", name: "alerts" };
export const ALERTS_REVOKE = "alerts.revoke";
/** How long a review item opened by an alert has before it is due. */
const REVIEW_DUE_MS = 3 * 86_400_000;

/** What an alert's notification carries (the notify module's shape, without its time). */
export interface AlertNotice {
  event: string;
  severity: AlertSeverity;
  title: string;
  text: string;
  fields: { label: string; value: string }[];
  links: { label: string; url: string }[];
  occurredAt: string;
}

export interface AlertServiceDeps {
  store: Pick<AppStore, "db" | "transaction">;
  audit: Pick<AuditLog, "append">;
  clock: Clock;
  config: AlertsConfig;
  /** This node's name in the lease row. */
  holder: string;
  outbox: Pick<OutboxService, "enqueue">;
  /** Writes the notification to the configured channels in `tx` (absent: no channel is configured). */
  notify?: ((tx: Kysely<Database>, notice: AlertNotice, dedupeKey: string) => Promise<void>) | undefined;
  /** The reviews module's function that opens a review item in `tx`. */
  openReviewItem: (tx: Kysely<Database>, item: OpenReviewItem) => Promise<void>;
  /** The requests module's revoke (run by the outbox job an alert with `action: revoke` writes). */
  revoke: (requestId: string, reason: string) => Promise<void>;
  publicUrl?: string | undefined;
  registry?: Registry | undefined;
  logger?: Pick<Logger, "info" | "warn" | "error"> | undefined;
  /** Poll interval while caught up (default 1 s). */
  pollMs?: number | undefined;
  /** Lease TTL (default 10 s). */
  leaseMs?: number | undefined;
}

export interface AlertView {
  id: string;
  rule: AlertRule;
  severity: AlertSeverity;
  status: "open" | "acknowledged";
  title: string;
  text: string;
  principal: string | null;
  subject: string | null;
  eventId: string;
  eventSeq: number;
  eventTime: string;
  raisedAt: string;
  action: "none" | "review" | "revoke";
  reviewItemId: string | null;
  details: Record<string, unknown>;
  acknowledgedAt: string | null;
  acknowledgedBy: string | null;
  ackNote: string | null;
}

function view(row: alertStore.AlertRow): AlertView {
  return {
    id: row.id,
    rule: row.rule,
    severity: row.severity,
    status: row.status,
    title: row.title,
    text: row.text,
    principal: row.principal,
    subject: row.subject,
    eventId: row.eventId,
    eventSeq: row.eventSeq,
    eventTime: row.eventTime.toISOString(),
    raisedAt: row.raisedAt.toISOString(),
    action: row.action,
    reviewItemId: row.reviewItemId,
    details: row.details,
    acknowledgedAt: row.acknowledgedAt?.toISOString() ?? null,
    acknowledgedBy: row.acknowledgedBy,
    ackNote: row.ackNote,
  };
}

/* eslint-disable no-control-regex -- replacing control characters is the point */
const CONTROL = /[\u0000-\u001f\u007f]+/g;
const CONTROL_BUT_NEWLINE_TAB = /[\u0000-\u0008\u000b-\u001f\u007f]+/g;
/* eslint-enable no-control-regex */

/** Notification text is validated strictly (one-line titles, no control characters): make sure it passes. */
function oneLine(value: string, max: number): string {
  return value.replace(CONTROL, " ").trim().slice(0, max) || "-";
}
function printable(value: string, max: number): string {
  return value.replace(CONTROL_BUT_NEWLINE_TAB, " ").trim().slice(0, max) || "-";
}

class LeaseLost extends Error {}

export function createAlertService(deps: AlertServiceDeps) {
  const { store, audit, clock, config, holder } = deps;
  const pollMs = deps.pollMs ?? 1000;
  const leaseMs = deps.leaseMs ?? 10_000;
  const logger = deps.logger ?? { info: () => undefined, warn: () => undefined, error: () => undefined };
  const existing = deps.registry?.getSingleMetric("stint_alerts_raised_total");
  const raisedTotal =
    (existing as Counter<"rule"> | undefined) ??
    new Counter({
      name: "stint_alerts_raised_total",
      help: "Anomaly alerts raised, by rule.",
      labelNames: ["rule"],
      registers: deps.registry ? [deps.registry] : [],
    });

  const existingLag = deps.registry?.getSingleMetric("stint_alerts_lag_events");
  const lagEvents =
    (existingLag as Gauge | undefined) ??
    new Gauge({
      name: "stint_alerts_lag_events",
      help: "Chained audit events the anomaly rules have not judged yet (the head's seq minus the consumer's cursor).",
      registers: deps.registry ? [deps.registry] : [],
    });
  let lagAt = 0;
  /** At most every 5 s: one read of the head (the caller's cursor is known). */
  async function refreshLag(cursorSeq: number): Promise<void> {
    if (Date.now() - lagAt < 5000) return;
    lagAt = Date.now();
    const { headSeq } = await alertStore.lagFrom(store.db, cursorSeq);
    lagEvents.set(Math.max(0, headSeq - cursorSeq));
  }

  async function raise(tx: Kysely<Database>, event: { id: string; seq: number; time: string }, draft: AlertDraft) {
    const now = clock.now();
    const id = newId();
    const inserted = await alertStore.insertAlert(tx, {
      id,
      rule: draft.rule,
      severity: draft.severity,
      eventId: event.id,
      eventSeq: event.seq,
      eventTime: new Date(event.time),
      principal: draft.principal,
      subject: draft.subject,
      title: oneLine(draft.title, 150),
      text: printable(draft.text, 2000),
      details: draft.details,
      action: draft.action,
      raisedAt: now,
    });
    if (!inserted) return;
    raisedTotal.inc({ rule: draft.rule });
    const context: CallContext = { correlationId: `alert:${id}`, sourceIp: null, userAgent: null };
    let reviewItemId: string | null = null;
    if (draft.action === "review") {
      reviewItemId = newId();
      await deps.openReviewItem(tx, {
        id: reviewItemId,
        kind: "anomaly-alert",
        subject: draft.subject ?? `alert:${id}`,
        principal: draft.principal,
        reason: oneLine(draft.title, 1000),
        createdAt: now,
        dueAt: new Date(now.getTime() + REVIEW_DUE_MS),
      });
      await alertStore.setReviewItem(tx, id, reviewItemId);
    }
    const revoke = draft.action === "revoke" && draft.requestId !== null;
    if (revoke)
      await deps.outbox.enqueue(tx, {
        kind: ALERTS_REVOKE,
        idempotencyKey: `alert-revoke:${id}`,
        payload: { alertId: id, requestId: draft.requestId, rule: draft.rule },
      });
    await audit.append(tx, ALERTS_ACTOR, context, {
      action: "alert.raised",
      outcome: "success",
      subject: `alert:${id}`,
      reason: oneLine(draft.title, 1000),
      details: {
        rule: draft.rule,
        severity: draft.severity,
        eventId: event.id,
        eventSeq: event.seq,
        principal: draft.principal,
        about: draft.subject,
        action: draft.action,
        ...(reviewItemId ? { reviewItemId } : {}),
        ...(revoke ? { revokes: draft.requestId } : {}),
      },
    });
    if (deps.notify) {
      const fields = [
        { label: "Rule", value: draft.rule },
        ...(draft.principal ? [{ label: "Who", value: draft.principal }] : []),
        ...(draft.subject ? [{ label: "About", value: draft.subject }] : []),
        ...(draft.action !== "none" ? [{ label: "Action", value: draft.action }] : []),
      ];
      await deps.notify(
        tx,
        {
          event: notificationEvent(draft.rule),
          severity: draft.severity,
          title: oneLine(draft.title, 150),
          text: printable(draft.text, 2000),
          fields,
          links: deps.publicUrl ? [{ label: "Open alerts", url: `${deps.publicUrl.replace(/\/$/, "")}/alerts` }] : [],
          occurredAt: event.time,
        },
        `alert:${draft.rule}:${event.id}`,
      );
    }
  }

  let ensured = false;
  let leader = false;
  let leaseCheckedAt = 0;

  /** Takes or renews the lease, at most every third of its life while held (each cursor move renews it too). */
  async function holdLease(): Promise<boolean> {
    const at = Date.now();
    if (leader && at - leaseCheckedAt < leaseMs / 3) return true;
    leader = await alertStore.takeLease(store.db, holder, leaseMs);
    leaseCheckedAt = at;
    return leader;
  }

  /** One batch: the events after the cursor, judged, learned from and the cursor moved, in one transaction. */
  async function runOnce(): Promise<number> {
    if (!config.enabled) return 0;
    if (!ensured) {
      await alertStore.ensureCursor(store.db, config.startAt);
      ensured = true;
    }
    if (!(await holdLease())) return 0;
    const cursor = await alertStore.readCursor(store.db);
    const events = await alertStore.eventsAfter(store.db, cursor?.seq ?? 0, config.batchSize);
    await refreshLag(events.at(-1)?.seq ?? cursor?.seq ?? 0).catch(() => undefined);
    if (events.length === 0) return 0;
    await store.transaction(async (tx) => {
      const states = await alertStore.loadStates(tx, [...new Set(events.flatMap(keysOf))]);
      const changed = new Map<string, KeyState>();
      const now = clock.now().getTime();
      for (const event of events) {
        const fresh = now - new Date(event.time).getTime() <= config.learnOnlyOlderThan;
        const result = evaluate(event, states, config, fresh);
        for (const [key, state] of result.states) {
          states.set(key, state);
          changed.set(key, state);
        }
        for (const draft of result.alerts) await raise(tx, event, draft);
      }
      await alertStore.saveStates(tx, changed, clock.now());
      if (!(await alertStore.advance(tx, holder, events.at(-1)!.seq, leaseMs))) {
        leader = false;
        throw new LeaseLost();
      }
    });
    leaseCheckedAt = Date.now();
    return events.length;
  }

  let running = false;
  let loop: Promise<void> | undefined;
  let wake: (() => void) | undefined;
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });

  async function run() {
    let failures = 0;
    while (running) {
      try {
        const done = await runOnce();
        failures = 0;
        if (done === 0) await sleep(pollMs);
      } catch (error) {
        failures++;
        if (!(error instanceof LeaseLost))
          logger.warn({ err: (error as Error).message, failures }, "anomaly alert batch failed; retrying");
        await sleep(Math.min(60_000, 500 * 2 ** Math.min(failures, 7)));
      }
    }
  }

  return {
    runOnce,
    async start(): Promise<void> {
      if (!config.enabled || running) return;
      await alertStore.ensureCursor(store.db, config.startAt);
      ensured = true;
      running = true;
      loop = run();
    },
    async stop(): Promise<void> {
      running = false;
      wake?.();
      await loop;
      leader = false;
      await alertStore.releaseLease(store.db, holder).catch(() => undefined);
    },

    async list(
      actor: Actor,
      filter: { status?: "open" | "acknowledged"; rule?: AlertRule; principal?: string; limit: number },
    ): Promise<AlertView[]> {
      authorize(actor, "alerts.read");
      return (await alertStore.listAlerts(store.db, filter)).map(view);
    },

    async get(actor: Actor, id: string): Promise<AlertView> {
      authorize(actor, "alerts.read");
      const row = await alertStore.findAlert(store.db, id);
      if (!row) throw new StintError("NOT_FOUND", "There is no such alert.");
      return view(row);
    },

    /** Marks an alert seen and dealt with, with an optional note; audited. */
    async ack(actor: Actor, id: string, note: string | null, context: CallContext): Promise<AlertView> {
      authorize(actor, "alerts.ack");
      const by = actor.kind === "principal" ? actor.name : "system";
      return store.transaction(async (tx) => {
        const row = await alertStore.findAlert(tx, id, true);
        if (!row) throw new StintError("NOT_FOUND", "There is no such alert.");
        if (row.status === "acknowledged")
          throw new StintError(
            "CONFLICT",
            `The alert was already acknowledged by ${row.acknowledgedBy ?? "someone"} at ${row.acknowledgedAt?.toISOString() ?? "?"}.`,
          );
        await alertStore.acknowledge(tx, id, by, note, clock.now());
        await audit.append(tx, actor, context, {
          action: "alert.acknowledged",
          outcome: "success",
          subject: `alert:${id}`,
          reason: note,
          details: { rule: row.rule, principal: row.principal },
        });
        return view((await alertStore.findAlert(tx, id))!);
      });
    },

    /** The outbox job of `action: revoke`: ends the activation (nothing to do when it already ended). */
    handlers: {
      [ALERTS_REVOKE]: async (payload) => {
        const requestId = String(payload.requestId);
        try {
          await deps.revoke(requestId, `anomaly alert (${String(payload.rule)}): ${String(payload.alertId)}`);
        } catch (error) {
          const code = (error as { code?: string }).code;
          if (code === "NOT_ACTIVE" || code === "NOT_FOUND") return;
          throw error;
        }
      },
    } satisfies OutboxHandlers,
  };
}

export type AlertService = ReturnType<typeof createAlertService>;
