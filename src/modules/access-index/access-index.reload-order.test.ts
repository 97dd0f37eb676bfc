/**
 * A reload against the messages that arrive while it reads, on real PostgreSQL, made deterministic: a second
 * index on the server's database hears the channel through a gate that holds messages back (a listening
 * connection lagging under load), and its reload is held between reading the database and applying what it
 * read. A message whose transaction the reload's snapshot already saw must not override the snapshot (a
 * revoked activation answered "active"); one the snapshot did not see must be applied over it.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { AppStore } from "../../db/index.js";
import { systemClock } from "../../lib/clock.js";
import { SELF_SERVICE_POLICY, seedRole, seedUser } from "../../testing/pim.js";
import { testServer, type TestServer } from "../../testing/server.js";
import { createAccessIndex, type AccessIndex } from "./access-index.service.js";
import { until } from "../../testing/until.js";

/** The channel as a lagging connection hears it: while holding, messages (not heartbeats) wait, in order. */
function gatedListen(store: AppStore) {
  const held: string[] = [];
  let holding = false;
  let deliver: (payload: string) => void = () => undefined;
  const listen: AppStore["listen"] = (channel, onMessage, options) => {
    deliver = onMessage;
    return store.listen(
      channel,
      (payload) => {
        if (holding && !payload.startsWith('{"t":"ping"')) held.push(payload);
        else onMessage(payload);
      },
      options,
    );
  };
  return {
    listen,
    held,
    hold: () => (holding = true),
    /** Delivers the held messages in order, up to and including the first one that `last` matches. */
    releaseThrough(last: (payload: string) => boolean) {
      const at = held.findIndex(last);
      if (at < 0) throw new Error("no such held message");
      for (const payload of held.splice(0, at + 1)) deliver(payload);
    },
    releaseAll() {
      holding = false;
      for (const payload of held.splice(0)) deliver(payload);
    },
  };
}

const about = (kind: "act" | "end", id: string) => (payload: string) =>
  payload.includes(`"t":"${kind}"`) && payload.includes(id);

describe("access index reload ordered against its snapshot (PostgreSQL)", () => {
  let server: TestServer;
  let index: AccessIndex;
  let gate: ReturnType<typeof gatedListen>;
  let alice: string;
  let aliceId: string;
  let duringReload: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    server = await testServer("postgres");
    await seedUser(server, "alice", { groups: ["sre"] });
    for (const name of ["db-reader", "db-writer", "db-admin"])
      await seedRole(server, { name, policy: SELF_SERVICE_POLICY, eligibleGroups: ["sre"] });
    alice = await server.login("alice");
    aliceId = (
      await server.store.db.selectFrom("principals").select("id").where("name", "=", "alice").executeTakeFirstOrThrow()
    ).id;
    gate = gatedListen(server.store);
    index = createAccessIndex({
      store: { db: server.store.db, engine: server.store.engine, listen: gate.listen },
      clock: systemClock,
      crossCheckMs: 3_600_000,
      afterSnapshot: () => duringReload?.() ?? Promise.resolve(),
    });
    await index.start();
    await until("the second index is current", () => index.current());
  }, 60_000);

  afterEach(() => {
    duringReload = undefined;
    gate.releaseAll();
  });

  afterAll(async () => {
    await index?.stop();
    await server?.cleanup();
  });

  async function activate(role: string): Promise<string> {
    const res = await server.app.inject({
      method: "POST",
      url: "/v1/activation-requests",
      headers: { authorization: alice },
      payload: { role, reason: `work that needs ${role}` },
    });
    expect(res.statusCode).toBe(201);
    return String((res.json() as { id: string }).id);
  }

  async function revoke(id: string) {
    const res = await server.app.inject({
      method: "POST",
      url: `/v1/activation-requests/${id}/revoke`,
      headers: { authorization: server.adminAuth },
      payload: { reason: "incident response: revoke now" },
    });
    expect(res.statusCode).toBe(200);
  }

  const active = (id: string) => index.view()?.activation(id) ?? null;

  async function settle() {
    gate.releaseAll();
    // A heartbeat sent after everything above was committed, heard: everything before it was applied.
    await until("the index heard everything", () => gate.held.length === 0 && index.current());
    await new Promise((resolve) => setTimeout(resolve, 600));
  }

  it("a revoked activation stays revoked when its activation's message is heard during the reload", async () => {
    gate.hold();
    const id = await activate("db-reader");
    await revoke(id);
    await until("both messages held", () => gate.held.some(about("end", id)));
    // The activation's message (committed before the snapshot) arrives while the reload is between its read
    // and its apply; the revocation's message still lags.
    duringReload = async () => gate.releaseThrough(about("act", id));
    await index.reload("cross-check");
    duringReload = undefined;
    expect(active(id)).toBeNull();
    expect(index.view()?.activeRole(aliceId, "db-reader")).toBeNull();
    await settle();
    expect(active(id)).toBeNull();
  });

  it("a change made behind the index's back is not undone by a late message until the next cross-check", async () => {
    gate.hold();
    const id = await activate("db-reader");
    await until("its message held", () => gate.held.some(about("act", id)));
    // Revoked with no message (a database writer, or a message lost with its connection).
    await server.store.db
      .updateTable("activation_requests")
      .set({ state: "revoked", ended_at: new Date() })
      .where("id", "=", id)
      .execute();
    duringReload = async () => gate.releaseThrough(about("act", id));
    await index.reload("cross-check");
    duringReload = undefined;
    expect(active(id)).toBeNull();
    await settle();
    expect(active(id)).toBeNull();
  });

  it("changes committed after the snapshot are applied, heard during the reload or after it", async () => {
    const before = await activate("db-writer");
    await until("the index has it", () => active(before) !== null);
    gate.hold();
    let during = "";
    let after = "";
    duringReload = async () => {
      // Committed after the reload's snapshot was taken.
      during = await activate("db-reader");
      await revoke(before);
      after = await activate("db-admin");
      await until("their messages held", () => gate.held.some(about("act", after)));
      gate.releaseThrough(about("act", during)); // heard during the reload
    };
    await index.reload("cross-check");
    duringReload = undefined;
    expect(active(during)).not.toBeNull();
    expect(active(before)).not.toBeNull(); // its revocation not heard yet: the snapshot's state
    await settle(); // the rest heard after the reload
    expect(active(before)).toBeNull();
    expect(active(after)).not.toBeNull();
    expect(active(during)).not.toBeNull();
  });
});
