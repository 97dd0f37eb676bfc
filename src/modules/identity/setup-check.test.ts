/**
 * `stint setup` asks whether its code is good before it prompts for a password (issue 17 item 13): the check
 * answers without using the code, a wrong one is refused and audited like a failed claim, and once an
 * administrator exists every check answers SETUP_ALREADY_DONE.
 */
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../config/config.js";
import { createLogger } from "../../lib/logger.js";
import { createServer } from "../../server.js";
import { freshStore } from "../../testing/engines.js";
import { TEST_SCRYPT } from "../../testing/server.js";

describe("setup code check", () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
  });

  async function serverWithoutAdmin() {
    const t = await freshStore("pglite");
    const parsed = loadConfig({ STINT_LOG_LEVEL: "silent" });
    if (!parsed.ok) throw new Error(parsed.problems.join("\n"));
    const server = await createServer({
      config: parsed.config,
      logger: createLogger({ level: "silent" }),
      masterKey: randomBytes(32),
      store: t.store,
      scrypt: TEST_SCRYPT,
    });
    await server.app.ready();
    cleanups.push(async () => {
      await server.close();
      await t.cleanup().catch(() => undefined);
    });
    return { server };
  }

  const check = (server: Awaited<ReturnType<typeof serverWithoutAdmin>>["server"], code: string) =>
    server.app.inject({ method: "POST", url: "/v1/setup/check", payload: { code } });

  it("says a wrong code is wrong, audited, and a right one is right without using it", async () => {
    const { server } = await serverWithoutAdmin();
    const { setupCode } = await server.bootstrap();
    expect(setupCode).toBeDefined();

    const wrong = await check(server, "not-the-code");
    expect([wrong.statusCode, wrong.json().error.code]).toEqual([401, "SETUP_CODE_INVALID"]);
    const right = await check(server, setupCode!);
    expect([right.statusCode, right.json()]).toEqual([200, { valid: true }]);
    expect(await check(server, setupCode!)).toMatchObject({ statusCode: 200 }); // not used by being checked

    const denied = (await server.audit.read({ afterSeq: 0, limit: 10_000 })).filter((e) => e.action === "setup.check");
    expect(denied.map((e) => [e.outcome, e.reason])).toEqual([["denied", "The setup code is wrong, used or expired."]]);
    expect(JSON.stringify(denied)).not.toContain(setupCode);

    const claimed = await server.app.inject({
      method: "POST",
      url: "/v1/setup",
      payload: { code: setupCode, username: "admin", password: "correct-horse-battery" },
    });
    expect(claimed.statusCode, claimed.body).toBe(201);
    const after = await check(server, setupCode!);
    expect([after.statusCode, after.json().error.code]).toEqual([409, "SETUP_ALREADY_DONE"]);
  });
});
