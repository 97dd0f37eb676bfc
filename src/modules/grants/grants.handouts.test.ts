/** The provisioning's copies of minted logins (grants.handouts.ts): taken once, forgotten in time, bounded. */
import { describe, expect, it } from "vitest";
import { createHandouts, type HandedOut } from "./grants.handouts.js";

const copy = (requestId: string): HandedOut => ({
  requestId,
  grantId: `grant-${requestId}`,
  roleName: "ledger-reader",
  login: `stint_ana_${requestId}`,
  sealed: { ciphertext: "c", wrapped_key: "w", kek_version: 1 },
  target: { kind: "postgres", address: "postgres://db/app", name: "ledger" },
});

describe("handouts", () => {
  it("gives a copy once, and not after 30 s", () => {
    let now = 0;
    const handouts = createHandouts(() => now);
    handouts.remember(copy("a"));
    handouts.remember(copy("b"));
    expect(handouts.take("a")?.login).toBe("stint_ana_a");
    expect(handouts.take("a")).toBeUndefined();
    now = 30_000;
    expect(handouts.take("b")).toBeUndefined();
    expect(handouts.size()).toBe(0);
  });

  it("keeps at most 1,000 copies, forgetting the oldest and the expired first", () => {
    let now = 0;
    const handouts = createHandouts(() => now);
    for (let i = 0; i < 1_500; i++) handouts.remember(copy(String(i)));
    expect(handouts.size()).toBe(1_000);
    expect(handouts.take("0")).toBeUndefined();
    expect(handouts.take("1499")).toBeDefined();
    now = 31_000;
    handouts.remember(copy("late"));
    expect(handouts.size()).toBe(1);
  });

  it("says a pair is only coming while a job runs and has not reached its activation", () => {
    const handouts = createHandouts();
    expect(handouts.onlyComing("ana", "ledger-reader")).toBe(false);
    const first = handouts.provisioning("ana", "ledger-reader");
    const second = handouts.provisioning("ana", "ledger-reader");
    expect(handouts.onlyComing("ana", "ledger-reader")).toBe(true);
    expect(handouts.onlyComing("ana", "other-role")).toBe(false);
    expect(handouts.onlyComing("bo", "ledger-reader")).toBe(false);
    // One job of the pair may commit its activation from now: a read must look at the database.
    first.activating();
    expect(handouts.onlyComing("ana", "ledger-reader")).toBe(false);
    first.end();
    first.end();
    expect(handouts.onlyComing("ana", "ledger-reader")).toBe(false);
    second.end();
    const third = handouts.provisioning("ana", "ledger-reader");
    expect(handouts.onlyComing("ana", "ledger-reader")).toBe(true);
    third.end();
    expect(handouts.onlyComing("ana", "ledger-reader")).toBe(false);
  });
});
