/**
 * The active KEK in memory (issue 14 acceptance 5): sealing a minted login's password (`sealValue`) reads no
 * KEK from the database once the node knows it, and a rotation drops it: the rotating node seals with the
 * new KEK at once, and another node on the same PostgreSQL store as soon as the rotation's "kek" message
 * reaches it. What was sealed under the old KEK still opens.
 */
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../config/config.js";
import { openAppStore } from "../../db/index.js";
import { createLogger } from "../../lib/logger.js";
import { createServer, type Server } from "../../server.js";
import type { Actor } from "../authz/authz.types.js";
import { ENGINES } from "../../testing/engines.js";
import { ADMIN_PASSWORD, TEST_SCRYPT, testServer, type TestServer } from "../../testing/server.js";
import { statementCounter } from "../../testing/statements.js";

const context = { correlationId: "kek-cache-test", sourceIp: null, userAgent: null };

async function adminOf(server: TestServer): Promise<Actor> {
  const row = await server.store.db
    .selectFrom("principals")
    .select(["id", "name"])
    .where("name", "=", server.config.bootstrapAdminName)
    .executeTakeFirstOrThrow();
  return { kind: "principal", id: row.id, name: row.name, principalKind: "user", roles: ["admin"] };
}

const kekReads = (statements: string[]) => statements.filter((s) => s === "select vault_keks").length;

describe.each(ENGINES)("the active KEK in memory on %s", (engine) => {
  let server: TestServer | undefined;
  let other: Server | undefined;
  afterEach(async () => {
    await other?.close();
    other = undefined;
    await server?.cleanup();
    server = undefined;
  });

  it("seals from memory, and with the new KEK right after a rotation on this node", async () => {
    const { wrap, measure } = statementCounter();
    server = await testServer(engine, { wrapStore: wrap });
    const vault = server.vault;
    const first = await vault.sealValue("grant:one", "first password");
    expect(first.kekVersion).toBe(1);
    const warm = await measure(() => vault.sealValue("grant:two", "second password"));
    expect(warm.result.kekVersion).toBe(1);
    expect(kekReads(warm.statements), JSON.stringify(warm.statements)).toBe(0);

    const rotated = await vault.rotateKey(await adminOf(server), context);
    expect(rotated.keyVersion).toBe(2);
    const after = await vault.sealValue("grant:three", "third password");
    expect(after.kekVersion).toBe(2);
    expect(await vault.openValue("grant:three", after)).toBe("third password");
    // Sealed before the rotation (and not re-wrapped: these are not stored): still opens under the retired KEK.
    expect(await vault.openValue("grant:one", first)).toBe("first password");
  });

  it.runIf(engine === "postgres")(
    "another node drops its KEK when the rotation's message reaches it",
    async () => {
      const masterKey = randomBytes(32);
      const vaultKey = randomBytes(32);
      server = await testServer(engine, { masterKey, vaultKey });
      const parsed = loadConfig({
        STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
        STINT_LOG_LEVEL: "silent",
        STINT_RECONCILE_INTERVAL: "0",
      });
      if (!parsed.ok) throw new Error(parsed.problems.join("\n"));
      other = await createServer({
        config: parsed.config,
        logger: createLogger({ level: "silent" }),
        masterKey,
        vaultKey,
        store: await openAppStore({ databaseUrl: server.databaseUrl! }),
        scrypt: TEST_SCRYPT,
      });
      await other.app.ready();
      const b = other.vault;
      expect((await b.sealValue("grant:b1", "before")).kekVersion).toBe(1);
      // Warm: the second seal on node B comes from memory.
      expect((await b.sealValue("grant:b2", "before")).kekVersion).toBe(1);

      await server.vault.rotateKey(await adminOf(server), context);
      const deadline = Date.now() + 15_000;
      let version = 1;
      while (Date.now() < deadline) {
        const sealed = await b.sealValue("grant:b3", "after");
        version = sealed.kekVersion;
        if (version === 2) {
          // Node A opens what node B sealed under the new KEK.
          expect(await server.vault.openValue("grant:b3", sealed)).toBe("after");
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(version).toBe(2);
    },
    60_000,
  );
});
