/** The workload store on both engines: trusts by issuer, and a jti spent once (concurrently too). */
import { randomUUID } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { ENGINES, freshStore, type TestStore } from "../../testing/engines.js";
import { activeServiceIdentities } from "../identity/service-identity.js";
import * as workloadStore from "./workload.store.js";

const ISS = "https://ci.example.com";

describe.each(ENGINES)("workload store (%s)", (engine) => {
  let t: TestStore | undefined;
  afterEach(async () => {
    await t?.cleanup();
    t = undefined;
  });

  async function service(name: string, status: "active" | "disabled" = "active"): Promise<string> {
    const id = randomUUID();
    const now = new Date();
    await t!.store.db
      .insertInto("principals")
      .values({ id, kind: "service", name, platform_roles: [], status, created_at: now, updated_at: now })
      .execute();
    return id;
  }

  function trust(principalId: string, name: string, issuer = ISS) {
    return {
      id: randomUUID(),
      principalId,
      name,
      issuer,
      audiences: ["stint"],
      conditions: { repository: "acme/*" },
      tokenTtlMs: 600_000,
      createdBy: null,
      createdAt: new Date(),
    };
  }

  it("finds the trusts of an issuer with their conditions as written; the active service identities among them", async () => {
    t = await freshStore(engine);
    const live = await service("deployer");
    const gone = await service("retired", "disabled");
    expect(await workloadStore.insertTrust(t.store.db, trust(live, "main"))).toBe(true);
    expect(await workloadStore.insertTrust(t.store.db, trust(live, "main"))).toBe(false);
    await workloadStore.insertTrust(t.store.db, trust(gone, "main"));
    await workloadStore.insertTrust(t.store.db, trust(live, "other", "https://elsewhere.example.com"));
    const found = await workloadStore.trustsOfIssuer(t.store.db, ISS);
    expect(found).toHaveLength(2);
    expect(found).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          principalId: live,
          name: "main",
          audiences: ["stint"],
          conditions: { repository: "acme/*" },
        }),
        expect.objectContaining({ principalId: gone, name: "main" }),
      ]),
    );
    // The exchange keeps the trusts of active service identities only, named by the identity module.
    const user = randomUUID();
    await t.store.db
      .insertInto("principals")
      .values({
        id: user,
        kind: "user",
        name: "ann",
        platform_roles: [],
        created_at: new Date(),
        updated_at: new Date(),
      })
      .execute();
    expect(await activeServiceIdentities(t.store.db, [live, gone, user])).toEqual(new Map([[live, "deployer"]]));
    expect((await workloadStore.trustsOfService(t.store.db, live)).map((x) => x.name)).toEqual(["main", "other"]);
    expect(await workloadStore.deleteTrust(t.store.db, live, "main")).toEqual({ issuer: ISS });
    expect(await workloadStore.deleteTrust(t.store.db, live, "main")).toBeUndefined();
  });

  it("spends a jti once per issuer, also when two exchanges race; forgets uses past their keeping time", async () => {
    t = await freshStore(engine);
    const id = await service("deployer");
    const now = new Date();
    const use = (jti: string, issuer = ISS, keepUntil = new Date(now.getTime() + 60_000), usedAt = now) =>
      t!.store.transaction((tx) => workloadStore.useJti(tx, { issuer, jti, keepUntil, principalId: id, usedAt }));
    const raced = await Promise.all([use("run-1"), use("run-1"), use("run-1")]);
    expect(raced.filter(Boolean)).toHaveLength(1);
    expect(await use("run-1", "https://elsewhere.example.com")).toBe(true);
    // A use whose keeping time passed is removed by a later use (its token could no longer be accepted anyway).
    expect(await use("old", ISS, new Date(now.getTime() - 1000))).toBe(true);
    await use("later", ISS, new Date(now.getTime() + 60_000), new Date(now.getTime() + 1));
    const left = await t.store.db.selectFrom("workload_token_uses").select("jti").orderBy("jti").execute();
    expect(left.map((r) => r.jti)).toEqual(["later", "run-1", "run-1"]);
  });
});
