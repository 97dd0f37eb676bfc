/**
 * Pure rules of the access index: how a message changes the state, how a snapshot from the database is
 * merged with what arrived while it was read, and when the index may answer at all.
 *
 * Activations merge monotonically, so that messages may arrive late, twice or out of order (a reload
 * replays what came during the read) without ever bringing back something that ended:
 * - an ended activation is terminal (the state machine never leaves expired/deactivated/revoked), so an
 *   `end` is remembered (a tombstone) and a later `act` for that id is ignored;
 * - an `act` only ever moves the expiry later (activation sets it, an extension adds to it).
 */
import { unpackIds } from "../../lib/packed-ids.js";
import type { AccessMessage, AccessMessageOf, ActiveActivation, PrincipalEntry } from "./access-index.types.js";

export interface IndexState {
  activations: Map<string, ActiveActivation>;
  /** principal id → request ids of its activations in `activations`. */
  byPrincipal: Map<string, Set<string>>;
  /** role id → the name its activations hold (the role-name check compares roles, not activations). */
  byRole: Map<string, RoleNames>;
  /** Request ids that ended → until when (epoch ms) the tombstone is kept. */
  ended: Map<string, number>;
  principals: Map<string, PrincipalEntry>;
  principalIdsByName: Map<string, string>;
}

/**
 * What the activations of one role hold as its name: `name` is the first one's, `mixed` whether one holds
 * another (an `act` written before a rename, heard after it): then the role-name check renames them all.
 */
export interface RoleNames {
  name: string;
  mixed: boolean;
  /** Activations of the role in `activations`; the entry goes with the last. */
  count: number;
}

/** How long an ended activation's tombstone is kept after its expiry (or after it was heard of). */
export const TOMBSTONE_KEEP_MS = 10 * 60_000;

export function emptyState(): IndexState {
  return {
    activations: new Map(),
    byPrincipal: new Map(),
    byRole: new Map(),
    ended: new Map(),
    principals: new Map(),
    principalIdsByName: new Map(),
  };
}

/** Active now: the clock decides, an expiry needs no event. */
export function isLive(activation: ActiveActivation, nowMs: number): boolean {
  return activation.expiresAt > nowMs;
}

function putActivation(state: IndexState, activation: ActiveActivation): void {
  const existing = state.activations.get(activation.requestId);
  if (existing) {
    // Only later: an extension moves the expiry; a replayed older message must not pull it back.
    if (activation.expiresAt > existing.expiresAt) existing.expiresAt = activation.expiresAt;
    if (existing.roleName !== activation.roleName) {
      existing.roleName = activation.roleName;
      state.byRole.get(existing.roleId)!.mixed = true;
    }
    return;
  }
  state.activations.set(activation.requestId, { ...activation });
  let ids = state.byPrincipal.get(activation.principalId);
  if (!ids) state.byPrincipal.set(activation.principalId, (ids = new Set()));
  ids.add(activation.requestId);
  const role = state.byRole.get(activation.roleId);
  if (!role) state.byRole.set(activation.roleId, { name: activation.roleName, mixed: false, count: 1 });
  else {
    role.count += 1;
    if (role.name !== activation.roleName) role.mixed = true;
  }
}

function dropActivation(state: IndexState, requestId: string): ActiveActivation | undefined {
  const existing = state.activations.get(requestId);
  if (!existing) return undefined;
  state.activations.delete(requestId);
  const ids = state.byPrincipal.get(existing.principalId);
  ids?.delete(requestId);
  if (ids?.size === 0) state.byPrincipal.delete(existing.principalId);
  const role = state.byRole.get(existing.roleId)!;
  if (--role.count === 0) state.byRole.delete(existing.roleId);
  return existing;
}

/** The activation an `act` message tells of, in the index's words. */
export function activationOf(message: AccessMessageOf<"act">): ActiveActivation {
  return {
    requestId: message.id,
    principalId: message.pid,
    principalName: message.pn,
    roleId: message.rid,
    roleName: message.rn,
    expiresAt: message.exp,
    activatedAt: message.since,
  };
}

/** An activation became active or was extended; ignored for one that already ended. */
export function applyActivated(state: IndexState, message: AccessMessageOf<"act">): void {
  if (state.ended.has(message.id)) return;
  putActivation(state, activationOf(message));
}

/** An activation ended: gone now, and remembered so that no late message brings it back. */
export function applyEnded(state: IndexState, requestId: string, nowMs: number): void {
  const gone = dropActivation(state, requestId);
  const keepUntil = Math.max(gone?.expiresAt ?? 0, nowMs) + TOMBSTONE_KEEP_MS;
  state.ended.set(requestId, Math.max(keepUntil, state.ended.get(requestId) ?? 0));
}

export function applyPrincipal(state: IndexState, principal: PrincipalEntry): void {
  const previous = state.principals.get(principal.id);
  if (previous && previous.name !== principal.name && state.principalIdsByName.get(previous.name) === principal.id)
    state.principalIdsByName.delete(previous.name);
  state.principals.set(principal.id, { ...principal, platformRoles: [...principal.platformRoles] });
  state.principalIdsByName.set(principal.name, principal.id);
}

/** A role's activations take its new name (walks every activation: renames are rare). */
export function applyRoleRenamed(state: IndexState, roleId: string, name: string): void {
  const role = state.byRole.get(roleId);
  if (!role) return;
  for (const activation of state.activations.values()) if (activation.roleId === roleId) activation.roleName = name;
  role.name = name;
  role.mixed = false;
}

/**
 * The roles whose activations hold a name other than the database's (`names`: role id → current name), with
 * that name: one look per role held, not per activation.
 */
export function renamedRoles(state: IndexState, names: ReadonlyMap<string, string>): Map<string, string> {
  const renamed = new Map<string, string>();
  for (const [roleId, role] of state.byRole) {
    const name = names.get(roleId);
    if (name !== undefined && (role.mixed || role.name !== name)) renamed.set(roleId, name);
  }
  return renamed;
}

/** Applies one message to the state; the messages for other caches (sessions, tokens, vault) change nothing here. */
export function applyMessage(state: IndexState, message: AccessMessage, nowMs: number): void {
  switch (message.t) {
    case "act":
      return applyActivated(state, message);
    case "end":
      return applyEnded(state, message.id, nowMs);
    case "prn":
      return applyPrincipal(state, message.p);
    case "role":
      return applyRoleRenamed(state, message.id, message.name);
    default:
      return;
  }
}

/** The ids a message is about in this state (what a reload must take from the live state, not the snapshot). */
export function touchedBy(message: AccessMessage): { activation?: string; principal?: string; role?: string } {
  switch (message.t) {
    case "act":
    case "end":
      return { activation: message.id };
    case "prn":
      return { principal: message.p.id };
    case "role":
      return { role: message.id };
    default:
      return {};
  }
}

/** A principal's activations that are live at `nowMs`, by role name. */
export function liveActivationsOf(state: IndexState, principalId: string, nowMs: number): ActiveActivation[] {
  const ids = state.byPrincipal.get(principalId);
  if (!ids) return [];
  const live: ActiveActivation[] = [];
  for (const id of ids) {
    const activation = state.activations.get(id)!;
    if (isLive(activation, nowMs)) live.push(activation);
  }
  return live.sort((a, b) => (a.roleName < b.roleName ? -1 : a.roleName > b.roleName ? 1 : 0));
}

/**
 * The principal's live activation of one role, or null: what `liveActivationsOf(…).find(roleName)` finds
 * (the first live one in the index's order; the sort is stable), without building and sorting the list.
 */
export function liveActivationOf(
  state: IndexState,
  principalId: string,
  roleName: string,
  nowMs: number,
): ActiveActivation | null {
  const ids = state.byPrincipal.get(principalId);
  if (!ids) return null;
  for (const id of ids) {
    const activation = state.activations.get(id)!;
    if (activation.roleName === roleName && isLive(activation, nowMs)) return activation;
  }
  return null;
}

/**
 * Which transactions a reload's read saw: PostgreSQL's `pg_current_snapshot()` (full 64-bit transaction ids;
 * they never wrap, and stay far below 2^53). A transaction is visible when it is below `xmin`, or below
 * `xmax` and not in `xip` (those were still running).
 */
export interface TxSnapshot {
  xmin: number;
  xmax: number;
  xip: ReadonlySet<number>;
}

/** `pg_current_snapshot()`'s text form, "xmin:xmax:xip1,xip2,…", or null when it is not one. */
export function parseTxSnapshot(text: string): TxSnapshot | null {
  const [xmin, xmax, xip, extra] = text.split(":");
  if (xmin === undefined || xmax === undefined || xip === undefined || extra !== undefined) return null;
  const texts = [xmin, xmax, ...(xip === "" ? [] : xip.split(","))];
  if (!texts.every((t) => /^\d{1,15}$/.test(t))) return null;
  const [low, high, ...running] = texts.map(Number);
  return { xmin: low!, xmax: high!, xip: new Set(running) };
}

/** Whether the (committed) transaction `x` was visible to the snapshot: its change is in what was read. */
export function visibleTo(snapshot: TxSnapshot, x: number): boolean {
  if (x < snapshot.xmin) return true;
  if (x >= snapshot.xmax) return false;
  return !snapshot.xip.has(x);
}

/**
 * Whether what `message` says is already in the state read with `snapshot` (or a later one): its transaction
 * was visible to it. Then applying it could only take back a later change the snapshot also saw. A message
 * without a transaction id (an `end`, terminal anyway; a role rename; a message from an older node) is never
 * taken as already read.
 */
export function reflectedIn(snapshot: TxSnapshot | null, message: AccessMessage): boolean {
  return snapshot !== null && message.x !== undefined && visibleTo(snapshot, message.x);
}

export interface Snapshot {
  /** The transactions the read saw. */
  tx: TxSnapshot;
  activations: ActiveActivation[];
  principals: PrincipalEntry[];
}

/** What messages heard during a reload were about (not counted as drift: in flight, not wrong). */
export interface Touched {
  activations: Set<string>;
  principals: Set<string>;
  roles: Set<string>;
}

/**
 * The state after a full reload: the database's snapshot, then, in the order heard, the messages heard
 * while it was read whose transactions the snapshot did not see (committed after it was taken). A message
 * the snapshot saw is left out: the snapshot holds its change and any later one (a revocation after an
 * activation) that it saw too. Tombstones are kept: an activation that ended stays ended, whatever the
 * snapshot saw.
 *
 * `heard` must hold every message heard since the reload began; a message heard before then was sent by a
 * transaction the snapshot sees (PostgreSQL delivers a notification only once its transaction is visible to
 * new snapshots; a node applies its own after COMMIT returned; PGlite runs one transaction at a time).
 */
export function mergeSnapshot(
  snapshot: Snapshot,
  live: IndexState,
  heard: readonly AccessMessage[],
  nowMs: number,
): IndexState {
  const next = emptyState();
  for (const [id, until] of live.ended) if (until > nowMs) next.ended.set(id, until);
  for (const activation of snapshot.activations)
    if (!next.ended.has(activation.requestId)) putActivation(next, activation);
  for (const principal of snapshot.principals) applyPrincipal(next, principal);
  for (const message of heard) if (!reflectedIn(snapshot.tx, message)) applyMessage(next, message, nowMs);
  return next;
}

/**
 * What a reload found the index had wrong (outside what was in flight while it read): activations live
 * in the index but not in the database (`extra`: an end that never arrived, the dangerous kind) and the
 * other way round (`missing`).
 */
export function drift(before: IndexState, after: IndexState, touched: Touched, nowMs: number) {
  let extra = 0;
  let missing = 0;
  for (const [id, activation] of before.activations)
    if (isLive(activation, nowMs) && !touched.activations.has(id) && !after.activations.has(id)) extra += 1;
  for (const [id, activation] of after.activations)
    if (isLive(activation, nowMs) && !touched.activations.has(id) && !before.activations.has(id)) missing += 1;
  return { extra, missing };
}

/** Forgets tombstones whose time has passed. */
export function pruneEnded(state: IndexState, nowMs: number): void {
  for (const [id, until] of state.ended) if (until <= nowMs) state.ended.delete(id);
}

// ---------------------------------------------------------------------------
// Heartbeat

/**
 * A node proves its listening connection works by sending itself pings, one after another through the
 * pool (ping n+1 only once ping n's statement returned), and hearing them. Notifications on one connection
 * arrive in commit order, so hearing ping n means every message committed before ping n was sent has been
 * applied. A committed ping that is skipped (n-1 committed, then n heard without n-1) means the connection
 * lost messages: the index must reload.
 */
export interface HeartbeatState {
  /**
   * Pings sent and not heard yet: number → when (monotonic ms) it was sent. Entered before the statement
   * is sent (a ping may be heard before its statement returns) and removed when the statement fails.
   */
  outstanding: Map<number, number>;
  /** When the newest heard ping was sent (monotonic ms), or -Infinity. */
  heardSentAt: number;
  heardN: number;
}

export function emptyHeartbeat(): HeartbeatState {
  return { outstanding: new Map(), heardSentAt: Number.NEGATIVE_INFINITY, heardN: 0 };
}

/** Our ping `n` came back. Returns whether an earlier committed ping was skipped (messages were lost). */
export function heardPing(state: HeartbeatState, n: number): { lost: boolean } {
  const sentAt = state.outstanding.get(n);
  if (sentAt === undefined) return { lost: false }; // heard twice, or its statement failed and was forgotten
  let lost = false;
  for (const [m] of state.outstanding) {
    if (m < n) {
      lost = true;
      state.outstanding.delete(m);
    }
  }
  state.outstanding.delete(n);
  if (n > state.heardN) {
    state.heardN = n;
    state.heardSentAt = sentAt;
  }
  return { lost };
}

/** Whether what the index holds is known to include every change committed more than `maxSilenceMs` ago. */
export function heartbeatFresh(state: HeartbeatState, nowMonotonic: number, maxSilenceMs: number): boolean {
  return nowMonotonic - state.heardSentAt <= maxSilenceMs;
}

// ---------------------------------------------------------------------------
// Messages from the wire

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const isId = (v: unknown): v is string => typeof v === "string" && UUID.test(v);
const isText = (v: unknown): v is string => typeof v === "string" && v.length > 0 && v.length <= 1024;
const isTime = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

function parsePrincipal(value: unknown): PrincipalEntry | null {
  if (typeof value !== "object" || value === null) return null;
  const p = value as Record<string, unknown>;
  if (!isId(p.id) || !isText(p.name)) return null;
  if (p.kind !== "user" && p.kind !== "service") return null;
  if (p.status !== "active" && p.status !== "disabled") return null;
  if (!Array.isArray(p.platformRoles) || !p.platformRoles.every((r) => typeof r === "string")) return null;
  return { id: p.id, name: p.name, kind: p.kind, status: p.status, platformRoles: p.platformRoles as string[] };
}

/**
 * A payload from the channel as the messages it carries: an `ends` message (a batch of activations
 * ended in one transaction, `payloadsOf`) as one `end` message per id, in order; anything else as
 * `parseMessage` reads it. Empty when it is not a message (it is ignored).
 */
export function parseMessages(payload: string): AccessMessage[] {
  // The batch's own shape is checked before the general parse (one JSON.parse either way).
  if (payload.startsWith('{"t":"ends"')) {
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(payload) as Record<string, unknown>;
    } catch {
      return [];
    }
    const ids = unpackIds(m.ids);
    if (ids === null) return [];
    const at = isTime(m.at) ? m.at : 0;
    return ids.map((id) => ({ t: "end", at, id }));
  }
  const message = parseMessage(payload);
  return message ? [message] : [];
}

/** The sending transaction's id on a message that carries one (a safe non-negative integer). */
function withTx<M extends AccessMessage>(message: M, x: unknown): M {
  if (typeof x === "number" && Number.isSafeInteger(x) && x >= 0) message.x = x;
  return message;
}

/** A payload from the channel as a message, or null when it is not one (it is ignored). */
export function parseMessage(payload: string): AccessMessage | null {
  let m: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(payload);
    if (typeof parsed !== "object" || parsed === null) return null;
    m = parsed as Record<string, unknown>;
  } catch {
    return null;
  }
  const at = isTime(m.at) ? m.at : 0;
  switch (m.t) {
    case "act":
      if (!isId(m.id) || !isId(m.pid) || !isText(m.pn) || !isId(m.rid) || !isText(m.rn)) return null;
      if (!isTime(m.exp) || !isTime(m.since)) return null;
      return withTx(
        { t: "act", at, id: m.id, pid: m.pid, pn: m.pn, rid: m.rid, rn: m.rn, exp: m.exp, since: m.since },
        m.x,
      );
    case "end":
      return isId(m.id) ? { t: "end", at, id: m.id } : null;
    case "prn": {
      const p = parsePrincipal(m.p);
      return p ? withTx({ t: "prn", at, p }, m.x) : null;
    }
    case "ses":
      return isId(m.sid) ? { t: "ses", at, sid: m.sid } : null;
    case "pses":
      return isId(m.pid) ? { t: "pses", at, pid: m.pid } : null;
    case "tok":
      return isId(m.id) ? { t: "tok", at, id: m.id } : null;
    case "role":
      return isId(m.id) && isText(m.name) ? { t: "role", at, id: m.id, name: m.name } : null;
    case "sec":
      return typeof m.path === "string" ? { t: "sec", at, path: m.path } : null;
    case "kek":
      return { t: "kek", at };
    case "ping":
      return typeof m.node === "string" && typeof m.n === "number" ? { t: "ping", at, node: m.node, n: m.n } : null;
    default:
      return null;
  }
}
