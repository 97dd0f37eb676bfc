/** The in-memory index of active activations and principals every node keeps for the hot paths. */

/** An activation in state `active` (not an extension request), as the hot paths need it. */
export interface ActiveActivation {
  requestId: string;
  principalId: string;
  principalName: string;
  roleId: string;
  roleName: string;
  /** Epoch milliseconds. Honoured by the clock: past it the activation is not active, with or without an event. */
  expiresAt: number;
  activatedAt: number;
}

/** What authentication and the check API need to know about a principal. */
export interface PrincipalEntry {
  id: string;
  name: string;
  kind: "user" | "service";
  status: "active" | "disabled";
  platformRoles: string[];
}

/**
 * What a transaction tells every node (on the `stint_access` channel, delivered when it commits). Short
 * keys: a NOTIFY payload is limited to 8000 bytes and these are sent often. `at` is the sender's wall
 * clock when it was written (for the lag metric only; nothing is decided on it).
 */
export type AccessMessage = {
  at: number;
  /**
   * `act` and `prn` only: the id of the transaction that sent it (`pg_current_xact_id()`), so that a reload
   * can tell whether its snapshot already saw that change (README, "Reload"). Absent on a message from a node
   * that predates it, and on the others (an `end` is terminal; the rest only drop caches).
   */
  x?: number;
  /**
   * The sending node's tag on a notification of a transaction it applies itself at commit (`tracked`):
   * `<node token>.<n>`, written right after `t` so that the node skips its own echo without parsing it.
   */
  o?: string;
} & (
  | {
      /** An activation became active, or was extended (`exp` only ever moves later). */
      t: "act";
      id: string;
      pid: string;
      pn: string;
      rid: string;
      rn: string;
      exp: number;
      since: number;
    }
  /** An activation ended (expired, deactivated, revoked): terminal, it never becomes active again. */
  | { t: "end"; id: string }
  /** A principal was created or changed (status, platform roles): the whole entry. */
  | { t: "prn"; p: PrincipalEntry }
  /** A refresh session changed (signed out, revoked, stepped up). */
  | { t: "ses"; sid: string }
  /** Every refresh session of a principal changed (password changed or reset). */
  | { t: "pses"; pid: string }
  /** An API token was revoked. */
  | { t: "tok"; id: string }
  /** A role was renamed. */
  | { t: "role"; id: string; name: string }
  /** A vault secret changed (a version, who may read it, its current version). */
  | { t: "sec"; path: string }
  /** The vault's key-encryption keys changed: every cached sealed value is dropped. */
  | { t: "kek" }
  /** A node's heartbeat: proves its own listening connection delivers, in order (see the README). */
  | { t: "ping"; node: string; n: number }
);

export type AccessMessageOf<T extends AccessMessage["t"]> = Extract<AccessMessage, { t: T }>;
