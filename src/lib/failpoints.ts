/**
 * Failpoints: named places in the workers where a test can crash the node or pause it
 * deterministically (the technique of FoundationDB's simulation and TiKV's fail-rs).
 *
 * Inert in production: nothing arms a failpoint outside tests, and an unarmed failpoint is one
 * map lookup on an empty map. A "crash" throws FailpointCrash; the outbox runner treats it as the
 * node dying at that point: it records nothing, so the row stays `running` until its lease expires
 * and another attempt takes it over, exactly as after a real crash.
 */

export class FailpointCrash extends Error {
  constructor(readonly failpoint: string) {
    super(`failpoint ${failpoint}: simulated crash`);
    this.name = "FailpointCrash";
  }
}

/** What an armed failpoint does: crash here, or run a function (pause, make a change) and go on. */
export type FailpointAction = "crash" | (() => void | Promise<void>);

const armed = new Map<string, { action: FailpointAction; remaining: number }>();

/** Arms `name` for the next `times` passes (default once). Tests only. */
export function armFailpoint(name: string, action: FailpointAction = "crash", times = 1): void {
  armed.set(name, { action, remaining: times });
}

export function disarmFailpoints(): void {
  armed.clear();
}

/** A named point in a worker path; does nothing unless a test armed it. */
export async function failpoint(name: string): Promise<void> {
  if (armed.size === 0) return;
  const point = armed.get(name);
  if (!point) return;
  point.remaining -= 1;
  if (point.remaining <= 0) armed.delete(name);
  if (point.action === "crash") throw new FailpointCrash(name);
  await point.action();
}
