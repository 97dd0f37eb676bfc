/**
 * The first administrator's password meets the rules every other password meets (issue 17 item 15): a weak
 * STINT_BOOTSTRAP_ADMIN_PASSWORD creates nobody and says why; a good one creates the administrator.
 */
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../config/config.js";
import { createLogger } from "../../lib/logger.js";
import { createServer } from "../../server.js";
import { freshStore } from "../../testing/engines.js";
import { TEST_SCRYPT } from "../../testing/server.js";

describe("bootstrap administrator password", () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
  });

  async function serverWith(password: string) {
    const t = await freshStore("pglite");
    const parsed = loadConfig({ STINT_LOG_LEVEL: "silent", STINT_BOOTSTRAP_ADMIN_PASSWORD: password });
    if (!parsed.ok) throw new Error(parsed.problems.join("\n"));
    const server = await createServer({
      config: parsed.config,
      logger: createLogger({ level: "silent" }),
      masterKey: randomBytes(32),
      store: t.store,
      scrypt: TEST_SCRYPT,
    });
    cleanups.push(async () => {
      await server.close();
      await t.cleanup().catch(() => undefined);
    });
    return { server, db: t.store.db };
  }

  it("refuses a short one before anything starts (the configuration's own rule)", () => {
    const parsed = loadConfig({ STINT_BOOTSTRAP_ADMIN_PASSWORD: "short-pw" });
    expect(parsed.ok).toBe(false);
  });

  it.each([
    ["aaaaaaaaaaaa", "must use more than a few distinct characters"],
    ["the-Admin-password", "must not contain the user name"],
  ])("refuses %j: WEAK_PASSWORD, nobody created", async (password, problem) => {
    const { server, db } = await serverWith(password);
    const failure = await server.bootstrap().then(
      () => undefined,
      (error: unknown) => error as { code?: string; message?: string },
    );
    expect(failure?.code).toBe("WEAK_PASSWORD");
    expect(failure?.message).toContain(`STINT_BOOTSTRAP_ADMIN_PASSWORD ${problem}`);
    expect(failure?.message).not.toContain(password);
    const principals = await db.selectFrom("principals").select("name").execute();
    expect(principals).toEqual([]);
  });

  it("creates the administrator from a password the rules accept", async () => {
    const { server, db } = await serverWith("correct-horse-battery");
    expect(await server.bootstrap()).toEqual({ created: "admin" });
    const principals = await db.selectFrom("principals").select(["name", "platform_roles"]).execute();
    expect(principals).toEqual([{ name: "admin", platform_roles: ["admin", "user"] }]);
  });
});
