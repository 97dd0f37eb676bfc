/**
 * What the audit sequencer's tests share (`audit.sequencer.test.ts`, `audit.sequencer.wakes.test.ts`): a user
 * to append as, a wait for a condition, and per test a fresh harness with the sequencers and connections the
 * test started, all stopped and closed after it.
 */
import { afterEach } from "vitest";
import type { Actor } from "../modules/authz/authz.types.js";
import type { AuditSequencer } from "../modules/audit/audit.sequencer.js";
import type { Engine } from "../lib/db.js";
import { auditHarness } from "./harness.js";

export const alice: Actor = {
  kind: "principal",
  id: "0190d000-0000-7000-8000-000000000001",
  name: "alice",
  principalKind: "user",
  roles: ["user"],
};

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `check` holds; fails naming `what` after `timeoutMs`. */
export async function until(check: () => Promise<boolean>, what = "condition", timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not met in time`);
    await sleep(20);
  }
}

export type AuditHarness = Awaited<ReturnType<typeof auditHarness>>;

/** Call in a `describe`: what a test opens through it is stopped and closed after each test. */
export function sequencerFixture() {
  let h: AuditHarness | undefined;
  const sequencers: AuditSequencer[] = [];
  const closing: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const sequencer of sequencers.splice(0)) await sequencer.stop();
    for (const close of closing.splice(0)) await close();
    await h?.cleanup();
    h = undefined;
  });
  return {
    /** A fresh store and audit log (`auditHarness`). */
    async harness(engine: Engine, options: Parameters<typeof auditHarness>[1] = {}): Promise<AuditHarness> {
      h = await auditHarness(engine, options);
      return h;
    },
    /** Starts `sequencer` (stopped after the test). */
    start<S extends AuditSequencer>(sequencer: S): S {
      sequencers.push(sequencer);
      sequencer.start();
      return sequencer;
    },
    /** Stops `sequencer` after the test, when the test does not start it here. */
    track<S extends AuditSequencer>(sequencer: S): S {
      sequencers.push(sequencer);
      return sequencer;
    },
    /** Runs `close` after the test, once the sequencers stopped. */
    onCleanup(close: () => Promise<void>): void {
      closing.push(close);
    },
  };
}
