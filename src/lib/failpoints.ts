/**
 * Failpoints: named places in the workers where a test can crash the node or pause it
 * deterministically (the technique of FoundationDB's simulation and TiKV's fail-rs).
 *
 * Inert in production: nothing arms a failpoint outside tests, and an unarmed failpoint is one
 * map lookup on an empty map. A "crash" throws FailpointCrash; the outbox runner treats it as the
 * node dying at that point: it records nothing, so the row stays `running` until its lease expires
 * and another attempt takes it over, exactly as after a real crash. A crash inside a transaction
 * rolls it back, as the death of its connection would.
 *
 * A crash in the vault's rotation leaves its claim held (a dead node releases nothing); a crash in a
 * session's recording stops its blob writer where it is, the file left `.partial`.
 *
 * Every name is registered in FAILPOINTS with what has and has not happened when it fires;
 * `test/reliability/failpoint-walk.test.ts` crashes at each one of the activation paths and
 * `test/reliability/failpoint-rotation-recording.test.ts` at each `vault.` and `session.` one; each
 * fails on a failpoint of its paths that it does not walk.
 */

/** Every failpoint, with the state of the world when it fires. */
export const FAILPOINTS = {
  "grant.provision.before-target": "a provisioning attempt is about to change the target; nothing changed there yet",
  "grant.provision.before-credential":
    "a minted login's new password is sealed but not stored (dynamic roles); the target may be creating the login with it",
  "grant.provision.after-credential":
    "a minted login's password is sealed and stored (dynamic roles); the target may be creating the login with it",
  "grant.provision.after-target": "the target holds the privilege; the activation is not marked active yet",
  "grant.provision.before-follow-up":
    "the target holds the privilege of an activation that ended meanwhile; its removal is not queued yet",
  "grant.provision.after-give-up":
    "the activation failed because its target did not answer (a call may still have landed); the removal is not queued yet",
  "grant.end.before-commit":
    "inside the transaction that ends an activation (expiry, revoke, deactivate), its revocations queued; nothing committed",
  "grant.revoke.before-target": "a revocation attempt is about to call the target; the privilege is still there",
  "grant.revoke.after-target":
    "the target no longer holds the privilege; the grant is not marked revoked (nor audited) yet",
  "grant.restore.after-target":
    "a removal for another grant of the same login and entitlement took a live grant's membership; it is back at the target, and whether that grant is still live is not checked yet",
  "grant.probe.after-target":
    "an unreachable target answered its probe; its revocations waiting on a backoff are not made due yet",
  "drift.remove.after-target":
    "the reconciler removed privilege from the target (drift, or Stint's own leftover); the finding is not resolved yet",
  "scheduler.expiry.after-commit":
    "a scheduler pass committed the end of due activations (their revocations queued); nothing else ran yet",
  "outbox.job.before-run":
    "an outbox row is claimed (its lease taken, the attempt counted); its handler has not started",
  "outbox.job.before-done": "an outbox handler finished its work; the row is not marked done yet (it will run again)",
  "audit.sequence.before-commit":
    "a chaining pass took pending audit events, linked them into the chain and signed its checkpoints; nothing committed",
  "vault.rotate.after-pending":
    "a rotation stored its new password as a pending version (its claim held); the target still has the old one",
  "vault.rotate.after-target":
    "the target accepts a rotation's new password (set, and proven by a sign-in); its version is still pending",
  "vault.rotate.before-commit":
    "inside the transaction that makes a rotation's version current, its secret.rotated event appended; nothing committed",
  "session.recording.after-write":
    "a batch of a live session's recording reached its .partial file; the session is live, its row not ended",
  "session.end.after-recording":
    "a session's relay stopped and its recording is whole under its key (SHA-256 taken); its row is not ended yet",
  "session.end.before-commit":
    "inside the transaction that ends a session, its session.ended event (naming the recording) appended; nothing committed",
} as const satisfies Record<string, string>;

export type FailpointName = keyof typeof FAILPOINTS;

export const FAILPOINT_NAMES = Object.keys(FAILPOINTS) as FailpointName[];

export class FailpointCrash extends Error {
  constructor(readonly failpoint: FailpointName) {
    super(`failpoint ${failpoint}: simulated crash`);
    this.name = "FailpointCrash";
  }
}

/** What an armed failpoint does: crash here, or run a function (pause, make a change, throw) and go on. */
export type FailpointAction = "crash" | (() => void | Promise<void>);

/** An armed failpoint: how many times it has fired since it was armed. */
export interface ArmedFailpoint {
  readonly fired: number;
}

const armed = new Map<string, { action: FailpointAction; remaining: number; state: { fired: number } }>();

/** Arms `name` for the next `times` passes (default once). Tests only. */
export function armFailpoint(name: FailpointName, action: FailpointAction = "crash", times = 1): ArmedFailpoint {
  if (!Object.hasOwn(FAILPOINTS, name)) throw new RangeError(`there is no failpoint ${JSON.stringify(name)}`);
  const state = { fired: 0 };
  armed.set(name, { action, remaining: times, state });
  return state;
}

export function disarmFailpoints(): void {
  armed.clear();
}

/** A named point in a worker path; does nothing unless a test armed it. */
export async function failpoint(name: FailpointName): Promise<void> {
  if (armed.size === 0) return;
  const point = armed.get(name);
  if (!point) return;
  point.remaining -= 1;
  point.state.fired += 1;
  if (point.remaining <= 0) armed.delete(name);
  if (point.action === "crash") throw new FailpointCrash(name);
  await point.action();
}
