/**
 * The started runner of this node, per store, for jobs enqueued with `runAfterCommit`: the enqueuing
 * transaction writes the row already claimed and this runner runs it when that transaction commits.
 */
import type { OutboxJob } from "./outbox.types.js";

export interface LocalRunner {
  /** How long a claim holds a row (the latest its attempt may act). */
  readonly leaseMs: number;
  /** How long a row written claimed is kept without a renewal (renewed while it runs); then anyone takes it. */
  readonly aliveMs: number;
  /** Takes a slot (of all and of `lane`) for a job to be handed over at commit; false when there is none. */
  reserve(lane: string | null): boolean;
  /** Gives back a reserved slot that no job will use (the transaction rolled back, the key existed). */
  release(lane: string | null): void;
  /** Runs a job written claimed (attempt 1) on the slot reserved for it. */
  adopt(job: OutboxJob): void;
}

const runners = new WeakMap<object, LocalRunner>();

/** Makes `runner` the one of `db` (the first started keeps it); returns what undoes that. */
export function registerLocalRunner(db: object, runner: LocalRunner): () => void {
  if (runners.has(db)) return () => undefined;
  runners.set(db, runner);
  return () => {
    if (runners.get(db) === runner) runners.delete(db);
  };
}

export function localRunner(db: object): LocalRunner | undefined {
  return runners.get(db);
}
