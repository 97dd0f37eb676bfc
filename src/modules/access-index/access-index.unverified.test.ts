/**
 * A notification whose sender exited before the store could check it is dropped (it may have been forged:
 * src/lib/notify-senders.ts) and reported to the index as `onUnverified`. It may also have been a real change
 * (a CLI that committed and closed at once), so it must not be silently lost: the index stops vouching and
 * reloads from the database, at most once a second for this cause (a role that may only connect can make
 * such notifications at will).
 */
import { Registry } from "prom-client";
import { afterAll, beforeAll, expect, it } from "vitest";
import { systemClock } from "../../lib/clock.js";
import { SELF_SERVICE_POLICY, seedRole, seedUser } from "../../testing/pim.js";
import { testServer, type TestServer } from "../../testing/server.js";
import { createAccessIndex, type AccessIndex } from "./access-index.service.js";
import { until } from "../../testing/until.js";

let server: TestServer;
let index: AccessIndex;
let unverified: () => void = () => undefined;
const registry = new Registry();

beforeAll(async () => {
  server = await testServer("pglite");
  await seedUser(server, "alice", { groups: ["sre"] });
  await seedRole(server, { name: "db-reader", policy: SELF_SERVICE_POLICY, eligibleGroups: ["sre"] });
  index = createAccessIndex({
    store: {
      db: server.store.db,
      engine: server.store.engine,
      listen: (channel, onMessage, options) => {
        unverified = () => options?.onUnverified?.();
        return server.store.listen(channel, onMessage, options);
      },
    },
    clock: systemClock,
    crossCheckMs: 3_600_000,
    registry,
  });
  await index.start();
}, 60_000);

afterAll(async () => {
  await index?.stop();
  await server?.cleanup();
});

const reloads = async () =>
  (await registry.getSingleMetric("stint_access_index_reloads_total")!.get()).values.find(
    (v) => v.labels.reason === "unverified-sender",
  )?.value ?? 0;

it("an unverified notification is treated as lost: answers from the database, then a full reload, at most one a second", async () => {
  const alice = await server.login("alice");
  const submitted = await server.app.inject({
    method: "POST",
    url: "/v1/activation-requests",
    headers: { authorization: alice },
    payload: { role: "db-reader", reason: "read the replica's lag" },
  });
  const id = String((submitted.json() as { id: string }).id);
  await until("the index has the activation", () => index.view()?.activation(id) != null);
  // The change the dropped notification carried: made in the database, unheard by this index.
  await server.store.db
    .updateTable("activation_requests")
    .set({ state: "revoked", ended_at: new Date() })
    .where("id", "=", id)
    .execute();
  expect(index.view()?.activation(id)).not.toBeNull();

  unverified();
  expect(index.current()).toBe(false); // the database answers until the reload
  await until("reloaded", () => index.current());
  expect(index.view()?.activation(id)).toBeNull();
  expect(await reloads()).toBe(1);

  // More of them within the second: one more reload when it is over, none per notification.
  for (let i = 0; i < 20; i++) unverified();
  expect(index.current()).toBe(false);
  await until("reloaded again", () => index.current());
  expect(await reloads()).toBe(2);
});
