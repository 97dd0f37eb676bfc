/**
 * The scheduler wakes at the next expiry instead of waiting for its poll: a timer at the earliest expiry
 * it read after a pass, moved earlier when an activation starts. The poll here is an hour, so a second
 * pass can only come from the wake.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createScheduler, type Scheduler } from "./scheduler.js";

const HOUR = 3_600_000;

function fakeRequests() {
  const passes: number[] = [];
  return {
    passes,
    requests: {
      // A pass calls expireDue once per expiry lane; it warns of what is about to expire once.
      expireDue: async () => 0,
      processDeadlines: async () => 0,
      reportEndedEligibilities: async () => 0,
      async warnExpiring() {
        passes.push(Date.now());
        return 0;
      },
    },
  };
}

async function until(what: string, check: () => boolean, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe("scheduler wake-up at the next expiry", () => {
  let scheduler: Scheduler | undefined;
  afterEach(async () => {
    await scheduler?.stop();
    scheduler = undefined;
  });

  it("runs a pass at the earliest expiry it read, not at the next poll", async () => {
    const { passes, requests } = fakeRequests();
    let next: Date | null = new Date(Date.now() + 50);
    scheduler = createScheduler({
      requests,
      pollMs: HOUR,
      expiries: { next: async () => next, onActivated: () => () => undefined },
    });
    scheduler.start();
    await until("the first pass ran", () => passes.length >= 1);
    await until("the pass at the expiry ran", () => passes.length >= 2);
    // The pass came once the expiry was reached, not before it.
    expect(passes[1]!).toBeGreaterThanOrEqual(next!.getTime());
    next = null;
  });

  it("moves the timer earlier when an activation starts; an expiry already due is left to the poll", async () => {
    const { passes, requests } = fakeRequests();
    let listener: ((expiresAt: number) => void) | undefined;
    scheduler = createScheduler({
      requests,
      pollMs: HOUR,
      expiries: {
        // Nothing active after a pass, or an expiry left due (rows another node holds): no timer either way.
        next: async () => (passes.length === 1 ? null : new Date(Date.now() - 1000)),
        onActivated: (l) => {
          listener = l;
          return () => (listener = undefined);
        },
      },
    });
    scheduler.start();
    await until("the first pass ran", () => passes.length >= 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(passes).toHaveLength(1);
    const expiresAt = Date.now() + 30;
    listener!(Date.now() + HOUR);
    listener!(expiresAt);
    await until("the pass at the new activation's expiry ran", () => passes.length >= 2);
    expect(passes[1]!).toBeGreaterThanOrEqual(expiresAt);
    // After it, the next expiry read is already due: left to the poll, no pass after pass.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(passes).toHaveLength(2);
    await scheduler.stop();
    expect(listener).toBeUndefined();
  });

  it("at an expiry every lane starts at once; a poll starts with one batch", async () => {
    const { passes, requests } = fakeRequests();
    // Each claim waits a moment; the most claims in flight together is what the test reads.
    let inFlight = 0;
    let most = 0;
    const claims: number[] = [];
    const expireDue = async () => {
      claims.push(passes.length);
      most = Math.max(most, ++inFlight);
      await new Promise((resolve) => setTimeout(resolve, 20));
      inFlight--;
      return 0;
    };
    let next: Date | null = new Date(Date.now() + 100);
    scheduler = createScheduler({
      requests: { ...requests, expireDue },
      pollMs: HOUR,
      expiryLanes: 3,
      expiries: { next: async () => next, onActivated: () => () => undefined },
    });
    scheduler.start();
    await until("the first pass ran", () => passes.length >= 1);
    // The first pass (no timer yet) claimed once: nothing was due.
    expect(claims).toEqual([0]);
    expect(most).toBe(1);
    await until("the pass at the expiry ran", () => passes.length >= 2);
    next = null;
    // The pass at the expiry: three lanes, each one claim, in flight together.
    expect(claims).toEqual([0, 1, 1, 1]);
    expect(most).toBe(3);
  });
});
