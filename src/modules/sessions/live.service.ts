/**
 * Live watching and moderation: who may join a live session (live.rules.ts), the audit trail of joining,
 * leaving and terminating, and the end of a moderated session when its moderator terminates it or the
 * last moderator leaves. The sockets are the routes' (live.routes.ts); the fan-out is the hub's.
 */
import type { AppStore } from "../../db/index.js";
import type { Clock } from "../../lib/clock.js";
import { StintError } from "../../lib/errors.js";
import type { Logger } from "../../lib/logger.js";
import type { LiveMode, WatchableSession } from "../../contract/live.js";
import type { AuditLog } from "../audit/audit.service.js";
import { can } from "../authz/authz.rules.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import type { LiveHub, LiveSessionInfo, LiveSocket, Watcher } from "./live-hub.js";
import { mayModerate, mayWatch, type LiveViewer } from "./live.rules.js";
import type { BusMessage } from "./sessions.bus.js";
import * as sessionStore from "./sessions.store.js";

export interface LiveServiceDeps {
  store: Pick<AppStore, "db" | "transaction">;
  audit: Pick<AuditLog, "append" | "record">;
  clock: Clock;
  logger: Logger;
  hub: LiveHub;
  /** This node's name, as sessions record it. */
  node: string;
  /** The sessions bus channel (a terminate ends the session where it is relayed, as a kill does). */
  channel: string;
}

export type LiveService = ReturnType<typeof createLiveService>;

export function createLiveService(deps: LiveServiceDeps) {
  const { store, audit, clock, logger, hub, node } = deps;
  /** Where each watcher's audit events come from (its sign-in's call context). */
  const contexts = new WeakMap<Watcher, { actor: Actor; ctx: CallContext }>();

  async function viewerOf(actor: Actor): Promise<LiveViewer | null> {
    if (actor.kind !== "principal") return null;
    const groups = await store.db
      .selectFrom("group_members")
      .innerJoin("groups", "groups.id", "group_members.group_id")
      .select("groups.name")
      .where("group_members.principal_id", "=", actor.id)
      .execute();
    return {
      id: actor.id,
      name: actor.name,
      groups: groups.map((g) => g.name),
      readsSessions: can(actor, "sessions.read"),
    };
  }

  const subject = (info: LiveSessionInfo) => ({ user: info.user, role: info.role, target: info.target });

  /** Ends a moderated session for good: marked killed by `by`, audited in the same transaction, then the bus. */
  async function endModerated(
    actor: Actor,
    ctx: CallContext,
    info: LiveSessionInfo,
    event: { action: string; reason: string; by: string; details: Record<string, unknown> },
  ) {
    await store.transaction(async (tx) => {
      const marked = await sessionStore.markKilled(tx, info.id, {
        now: clock.now(),
        by: event.by,
        reason: event.reason,
      });
      await audit.append(tx, actor, ctx, {
        action: event.action,
        outcome: "success",
        subject: `session:${info.id}`,
        reason: event.reason,
        details: { ...subject(info), ...event.details, ended: marked !== undefined },
      });
      if (marked) {
        const message: BusMessage = {
          type: "kill",
          sessionId: info.id,
          by: event.by,
          reason: event.reason,
          at: Date.now(),
        };
        await sessionStore.notify(tx, deps.channel, message);
      }
    });
    // This node relays it: end it now, whether or not the notification comes back first.
    info.abort({ reason: "killed", message: `${event.by} ended this session: ${event.reason}` });
  }

  hub.setLeaveListener((info, watcher, how) => {
    const who = contexts.get(watcher);
    if (!who) return;
    const moderator = watcher.mode === "moderate";
    const details = {
      ...subject(info),
      ...(how.tooSlow ? { tooSlow: true } : {}),
      ...(how.sessionEnded ? { sessionEnded: true } : {}),
    };
    if (how.lastModerator) {
      const reason = `${watcher.viewer.name}, the last moderator, left`;
      endModerated(who.actor, who.ctx, info, {
        action: "session.moderator_left",
        reason,
        by: watcher.viewer.name,
        details: { ...details, last: true },
      }).catch((error: unknown) => {
        logger.error({ err: error, session: info.id }, "could not end a session its last moderator left");
        // Fail closed: a moderated session does not go on without a moderator.
        info.abort({ reason: "killed", message: `${reason}; this session is over.` });
      });
      return;
    }
    audit
      .record(who.actor, who.ctx, {
        action: moderator ? "session.moderator_left" : "session.watch_ended",
        outcome: "success",
        subject: `session:${info.id}`,
        details,
      })
      .catch((error: unknown) => logger.error({ err: error, session: info.id }, "could not audit a watcher leaving"));
  });

  return {
    /**
     * Joins a live session as a watcher or moderator. Refused (FORBIDDEN, the same for a session that does
     * not exist) unless the rules allow it; SELF_MODERATION for the session's own user; SESSION_ELSEWHERE
     * when another node relays it (said only to those who may read sessions). Audited either way.
     */
    async join(actor: Actor, ctx: CallContext, id: string, mode: LiveMode, socket: LiveSocket) {
      const viewer = await viewerOf(actor);
      const info = hub.session(id);
      const refuse = async (code: "FORBIDDEN" | "SELF_MODERATION" | "SESSION_ELSEWHERE", message: string) => {
        await audit
          .record(actor, ctx, {
            action: mode === "moderate" ? "session.moderator_refused" : "session.watch_refused",
            outcome: "denied",
            subject: `session:${id}`,
            reason: message,
            details: { code },
          })
          .catch((error: unknown) => logger.error({ err: error }, "could not audit a refused watcher"));
        throw new StintError(code, message);
      };
      const forbidden = `There is no live session ${id} that you may ${mode}.`;
      if (!viewer) return refuse("FORBIDDEN", forbidden);
      if (!info) {
        if (viewer.readsSessions) {
          const row = await sessionStore.findSession(store.db, id);
          if (row && row.ended_at === null && row.node !== node)
            return refuse(
              "SESSION_ELSEWHERE",
              `Session ${id} is relayed by the Stint node ${row.node}; open it through that node.`,
            );
        }
        return refuse("FORBIDDEN", forbidden);
      }
      if (mode === "moderate") {
        if (viewer.id === info.facts.userId)
          return refuse("SELF_MODERATION", "Nobody moderates their own session; another moderator must join.");
        if (!mayModerate(viewer, info.facts)) return refuse("FORBIDDEN", forbidden);
      } else if (!mayWatch(viewer, info.facts)) {
        return refuse("FORBIDDEN", forbidden);
      }
      const watcher: Watcher = { viewer, mode, socket };
      contexts.set(watcher, { actor, ctx });
      const attached = hub.attach(id, watcher);
      if (!attached) return refuse("FORBIDDEN", forbidden);
      await audit
        .record(actor, ctx, {
          action: mode === "moderate" ? "session.moderator_joined" : "session.watch_started",
          outcome: "success",
          subject: `session:${id}`,
          details: { ...subject(info), ...(attached.firstModerator ? { admitted: true } : {}) },
        })
        .catch((error: unknown) => logger.error({ err: error, session: id }, "could not audit a watcher joining"));
      return {
        watcher,
        leave: attached.leave,
        /** A moderator's Terminate: the session ends, marked killed by them, audited. */
        terminate: async (reason: string | undefined) => {
          if (mode !== "moderate") throw new StintError("FORBIDDEN", "Only a moderator terminates a session.");
          await endModerated(actor, ctx, info, {
            action: "session.moderator_terminated",
            reason: reason ?? `terminated by the moderator ${viewer.name}`,
            by: viewer.name,
            details: {},
          });
        },
      };
    },

    /**
     * Whether `actor` may still watch (or moderate) a session they joined, by the rules as they are now: the
     * routes ask again every few seconds, with the watcher's current token. FORBIDDEN when not; a session
     * already over is the hub's to close.
     */
    async mayStay(actor: Actor, id: string, mode: LiveMode): Promise<void> {
      const info = hub.session(id);
      if (!info) return;
      const viewer = await viewerOf(actor);
      const allowed = viewer !== null && (mode === "moderate" ? mayModerate : mayWatch)(viewer, info.facts);
      if (!allowed) throw new StintError("FORBIDDEN", `You may no longer ${mode} session ${id}.`);
    },

    /** The live sessions on this node the caller may watch (and moderate). */
    async watchable(actor: Actor): Promise<WatchableSession[]> {
      const viewer = await viewerOf(actor);
      if (!viewer) return [];
      return hub
        .sessions()
        .filter((info) => mayWatch(viewer, info.facts))
        .map((info) => ({
          id: info.id,
          kind: info.kind,
          user: info.user,
          role: info.role,
          target: info.target,
          startedAt: info.startedAt.toISOString(),
          node,
          mayModerate: mayModerate(viewer, info.facts),
          moderation: hub.moderation(info.id) ?? null,
        }));
    },
  };
}
