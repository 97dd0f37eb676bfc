/** Time is a dependency: rules and services never call Date.now() themselves. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** A clock tests move by hand. */
export function manualClock(
  start: Date | string = "2026-01-01T00:00:00Z",
): Clock & { advance(ms: number): void; set(t: Date): void } {
  let current = new Date(start).getTime();
  return {
    now: () => new Date(current),
    advance: (ms: number) => {
      current += ms;
    },
    set: (t: Date) => {
      current = t.getTime();
    },
  };
}
