/**
 * Who may talk on Stint's channels. On PostgreSQL any role that can connect to the database may
 * `pg_notify` any channel: without a check, a role with no table privileges could forge an activation
 * on `stint_access` or end brokered sessions on `stint_sessions`. A notification carries the process id
 * of the backend that sent it (set by the server, not forgeable); this gate delivers a notification only
 * when that backend runs as Stint's own database role (or a role that is a member of it, which holds
 * Stint's table privileges anyway), and drops the others.
 *
 * Verdicts are cached per process id (the per-message hot path is a Map lookup): "ours" for
 * `OURS_TTL_MS`, no longer than node-postgres keeps an idle pool connection (10 s), so a pool backend that
 * falls idle closes only after its verdict expired and its pid cannot be reused by another role's backend
 * under our verdict; "foreign" and "gone" briefly (a flood from one backend costs one lookup a second).
 * Notifications are delivered in the order heard: while one waits for its lookup, those after it wait too.
 */
import { Counter } from "prom-client";
import type { Logger } from "./logger.js";

export const OURS_TTL_MS = 10_000;
export const OTHERS_TTL_MS = 1_000;

/** Whether the backend `pid` runs as our role: true, false, or null when it exists no more. */
export type SenderLookup = (pid: number) => Promise<boolean | null>;

export interface SenderGateOptions {
  lookup: SenderLookup;
  deliver: (payload: string) => void;
  /** A notification from another role was dropped. */
  onRejected: () => void;
  /** A notification was dropped because its sender could not be checked (it exited, or the lookup failed). */
  onUnverified: () => void;
  now?: () => number;
}

type Verdict = "ours" | "foreign" | "gone";

/** The SQL that answers `SenderLookup` on the listening connection (pg_stat_activity is readable by every role). */
export const SENDER_LOOKUP_SQL =
  "select coalesce(pg_has_role(usesysid, session_user, 'MEMBER'), false) as ours from pg_stat_activity where pid = $1";

export function createSenderGate(options: SenderGateOptions) {
  const now = options.now ?? Date.now;
  const verdicts = new Map<number, { verdict: Verdict; until: number }>();
  const queue: { pid: number; payload: string }[] = [];
  let draining = false;

  /** Decides from the cache: false when a lookup is needed. */
  function decided(pid: number, payload: string): boolean {
    const cached = verdicts.get(pid);
    if (!cached || cached.until <= now()) return false;
    try {
      if (cached.verdict === "ours") options.deliver(payload);
      else if (cached.verdict === "foreign") options.onRejected();
      else options.onUnverified();
    } catch {
      // A handler's failure is its own; the next notifications still arrive.
    }
    return true;
  }

  async function drain() {
    draining = true;
    try {
      while (queue.length > 0) {
        const head = queue[0]!;
        if (decided(head.pid, head.payload)) {
          queue.shift();
          continue;
        }
        const ours = await options.lookup(head.pid).catch(() => null);
        const verdict: Verdict = ours === null ? "gone" : ours ? "ours" : "foreign";
        verdicts.set(head.pid, { verdict, until: now() + (verdict === "ours" ? OURS_TTL_MS : OTHERS_TTL_MS) });
        if (verdicts.size > 1000) for (const [pid, v] of verdicts) if (v.until <= now()) verdicts.delete(pid);
      }
    } finally {
      draining = false;
    }
  }

  return {
    /** A notification from backend `pid`. */
    heard(pid: number, payload: string): void {
      if (queue.length === 0 && decided(pid, payload)) return;
      queue.push({ pid, payload });
      if (!draining) void drain();
    },
  };
}

const REJECTED_LOG_EVERY_MS = 10_000;

/**
 * Counts (`stint_notify_rejected_total{channel}`) and logs, at most once per channel every 10 s, the
 * notifications `store` dropped as sent by another role. The payload is never logged (an attacker's text).
 */
export function watchRejectedNotifications(
  store: { onNotifyRejected?(listener: (channel: string) => void): () => void },
  logger: Pick<Logger, "warn">,
): Counter<"channel"> {
  const counter = new Counter({
    name: "stint_notify_rejected_total",
    help: "Notifications dropped because the database role that sent them is not Stint's (a forgery attempt)",
    labelNames: ["channel"],
    registers: [],
  });
  const lastLogged = new Map<string, { at: number; dropped: number }>();
  store.onNotifyRejected?.((channel) => {
    counter.inc({ channel });
    const seen = lastLogged.get(channel) ?? { at: Number.NEGATIVE_INFINITY, dropped: 0 };
    seen.dropped += 1;
    lastLogged.set(channel, seen);
    if (Date.now() - seen.at < REJECTED_LOG_EVERY_MS) return;
    logger.warn(
      { channel, dropped: seen.dropped },
      "notifications from a database role other than Stint's were dropped (someone with access to the database tried to forge them)",
    );
    seen.at = Date.now();
    seen.dropped = 0;
  });
  return counter;
}
