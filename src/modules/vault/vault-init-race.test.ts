/**
 * The vault's first use, twice at once (found by the access-review e2e: two first dynamic-credential
 * provisionings in one outbox pass failed with `duplicate key … vault_keks_pkey`): on a fresh PostgreSQL
 * database in key-file mode, several writes on two nodes at the same moment all succeed, and the vault is
 * initialized exactly once (one key-encryption key, one `vault.initialized` event).
 */
import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../config/config.js";
import { openAppStore } from "../../db/index.js";
import { createLogger } from "../../lib/logger.js";
import { createServer, type Server } from "../../server.js";
import { createPgDatabase } from "../../testing/engines.js";
import { ADMIN_PASSWORD, TEST_SCRYPT } from "../../testing/server.js";
import type { Actor } from "../authz/authz.types.js";

const masterKey = randomBytes(32);
const vaultKey = randomBytes(32);
const context = { correlationId: "test", sourceIp: null, userAgent: null };
const ADMIN: Extract<Actor, { kind: "principal" }> = {
  kind: "principal",
  id: "00000000-0000-7000-8000-000000000001",
  name: "admin",
  principalKind: "user",
  roles: ["admin"],
  mfaAt: null,
};

describe("vault initialization race (PostgreSQL, two nodes)", () => {
  const nodes: Server[] = [];
  let database: { url: string; drop: () => Promise<void> } | undefined;
  afterAll(async () => {
    for (const node of nodes) await node.close().catch(() => undefined);
    await database?.drop();
  });

  async function node(): Promise<Server> {
    const parsed = loadConfig({ STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD, STINT_LOG_LEVEL: "silent" });
    if (!parsed.ok) throw new Error(parsed.problems.join("\n"));
    const server = await createServer({
      config: parsed.config,
      logger: createLogger({ level: "silent" }),
      masterKey,
      vaultKey,
      store: await openAppStore({ databaseUrl: database!.url }),
      scrypt: TEST_SCRYPT,
    });
    nodes.push(server);
    return server;
  }

  it("several first writes at once on two nodes all succeed; the vault is initialized once", async () => {
    database = await createPgDatabase();
    const a = await node();
    const b = await node();
    await a.bootstrap();
    const put = (server: Server, path: string) =>
      server.vault.put(ADMIN, context, path, {
        kind: "generic",
        value: `v-${path}`,
        platformRoles: ["admin"],
      } as never);
    const results = await Promise.allSettled([
      put(a, "race/a1"),
      put(a, "race/a2"),
      put(b, "race/b1"),
      put(b, "race/b2"),
    ]);
    expect(results.map((r) => (r.status === "rejected" ? String(r.reason) : "ok"))).toEqual(["ok", "ok", "ok", "ok"]);
    const keks = await a.store.db.selectFrom("vault_keks").select("version").execute();
    expect(keks).toEqual([{ version: 1 }]);
    for (const [server, path] of [
      [b, "race/a1"],
      [a, "race/b2"],
    ] as const)
      expect((await server.vault.read(ADMIN, context, path)).value).toBe(`v-${path}`);
    const initialized = (await a.audit.read({ afterSeq: 0, limit: 10_000 })).filter(
      (event) => event.action === "vault.initialized",
    );
    expect(initialized).toHaveLength(1);
  });
});
