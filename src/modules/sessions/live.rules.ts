/**
 * Who may watch or moderate a live session, and which recording lines watchers see. Pure: no IO.
 *
 * - Watch: those who may read sessions (`sessions.read`: admins, auditors), approvers the role's policy
 *   names (any stage, its escalation, the outside-window approvers; `manager: true` is the session user's
 *   manager), and the policy's moderators. Never the session's own user through approver or moderator
 *   rights (they watch their own terminal already).
 * - Moderate: a member of one of the policy's `session.moderator.groups`, never the session's own user,
 *   whatever their platform role.
 */
import type { PolicySpec } from "../../contract/catalog.js";
import type { ModeratorRule } from "../../contract/live.js";

export interface LiveViewer {
  id: string;
  name: string;
  groups: readonly string[];
  /** The viewer may read sessions (platform permission `sessions.read`). */
  readsSessions: boolean;
}

export interface LiveSessionFacts {
  userId: string;
  /** The session user's manager (for `approvers: { manager: true }`). */
  userManagerId: string | null;
  approvers: ApproverNames;
  moderator: ModeratorRule | null;
}

export interface ApproverNames {
  users: string[];
  groups: string[];
  manager: boolean;
}

/** Everyone the policy names as an approver, all stages and fallbacks together. */
export function approversOf(policy: Pick<PolicySpec, "approval" | "outsideWindowApprovers">): ApproverNames {
  const sets = [
    ...policy.approval.stages.flatMap((stage) => [stage.approvers, ...(stage.escalateTo ? [stage.escalateTo] : [])]),
    ...(policy.outsideWindowApprovers ? [policy.outsideWindowApprovers] : []),
  ];
  return {
    users: [...new Set(sets.flatMap((s) => s.users))],
    groups: [...new Set(sets.flatMap((s) => s.groups))],
    manager: sets.some((s) => s.manager),
  };
}

export function mayModerate(viewer: LiveViewer, session: LiveSessionFacts): boolean {
  if (viewer.id === session.userId || !session.moderator) return false;
  return viewer.groups.some((group) => session.moderator!.groups.includes(group));
}

export function mayWatch(viewer: LiveViewer, session: LiveSessionFacts): boolean {
  if (viewer.readsSessions) return true;
  if (viewer.id === session.userId) return false;
  if (mayModerate(viewer, session)) return true;
  const { approvers } = session;
  if (approvers.users.includes(viewer.name)) return true;
  if (approvers.manager && session.userManagerId !== null && session.userManagerId === viewer.id) return true;
  return viewer.groups.some((group) => approvers.groups.includes(group));
}

/**
 * Whether a recording line goes to watchers: not typed input (`"i"`: passwords typed at a prompt that does
 * not echo them stay out of every watcher's browser) and not a forwarded connection's bytes (`forward_data`:
 * bulk, and not a screen). Everything else of an asciicast, and every query-log line, does. Read from the
 * line's first characters: the recorder writes `[time,"code",…`.
 */
export function shownToWatchers(line: string): boolean {
  if (line.charCodeAt(0) !== 0x5b /* [ */) return true;
  const comma = line.indexOf(",");
  if (comma < 0) return true;
  const code = line.charCodeAt(comma + 2);
  if (code === 0x69 /* i */) return false;
  if (code === 0x6d /* m */ && line.includes('\\"event\\":\\"forward_data\\"', comma)) return false;
  return true;
}
