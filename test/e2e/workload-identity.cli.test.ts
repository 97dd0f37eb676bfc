/**
 * Workload identity from the CLI: `stint login --token-exchange-from-env` signs a pipeline in from its job token
 * (never printed nor saved), and `stint trusts` adds, lists and removes trusts. Set-up: test/e2e/workload-issuer.ts.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ADMIN_PASSWORD } from "../../src/testing/server.js";
import { runCliCaptured } from "../../src/testing/cli-run.js";
import { injectFetch } from "./inject-fetch.js";
import { exchange, jobToken, SERVICE, workloadServer } from "./workload-issuer.js";

const wl = workloadServer();

describe("workload identity: stint login --token-exchange-from-env", () => {
  const SERVER = "http://127.0.0.1:8420";
  /** The CLI's fetch, answered by the in-process server. */
  const bridge = injectFetch(() => wl.h.server.app);

  const cli = (dir: string, argv: string[], env: Record<string, string> = {}, input?: string) =>
    runCliCaptured(argv, {
      env: { STINT_CONFIG_DIR: dir, HOME: dir, STINT_SERVER: SERVER, ...env },
      input,
      fetch: bridge,
      isTTY: false,
    });

  it("signs a pipeline in from the job token in an environment variable, never printing or saving that token", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "stint-cli-wl-"));
    try {
      const jobJwt = await jobToken(wl.keyA);
      const login = await cli(dir, ["login", "--token-exchange-from-env", "CI_JOB_JWT", "--json"], {
        CI_JOB_JWT: jobJwt,
      });
      expect(login.code, login.stderr).toBe(0);
      expect(JSON.parse(login.stdout)).toMatchObject({
        principal: { name: SERVICE, kind: "service" },
        exchanged: true,
      });
      const saved = await readFile(path.join(dir, "credentials.json"), "utf8");
      expect(JSON.parse(saved)).toMatchObject({ exchanged: true, principal: { name: SERVICE } });
      for (const text of [login.stdout, login.stderr, saved]) expect(text).not.toContain(jobJwt.split(".")[2]);

      const whoami = await cli(dir, ["whoami", "--json"]);
      expect(whoami.code, whoami.stderr).toBe(0);
      expect(JSON.parse(whoami.stdout)).toMatchObject({ name: SERVICE });

      // The job token is spent: a second login with it is refused with the server's code.
      const again = await cli(dir, ["login", "--token-exchange-from-env", "CI_JOB_JWT"], { CI_JOB_JWT: jobJwt });
      expect(again.code).not.toBe(0);
      expect(again.stderr).toContain("WORKLOAD_TOKEN_REPLAYED");

      const logout = await cli(dir, ["logout"]);
      expect(logout.code, logout.stderr).toBe(0);
      expect((await cli(dir, ["whoami"])).code).not.toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("refuses an unset variable or a password flag beside it, before calling the server", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "stint-cli-wl-"));
    try {
      const unset = await cli(dir, ["login", "--token-exchange-from-env", "NOT_SET_ANYWHERE"]);
      expect(unset.code).toBe(2);
      expect(unset.stderr).toContain("NOT_SET_ANYWHERE");
      const mixed = await cli(dir, ["login", "--token-exchange-from-env", "CI_JOB_JWT", "--user", "alice"], {
        CI_JOB_JWT: "x.y.z",
      });
      expect(mixed.code).toBe(2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("an administrator adds, lists and removes a trust with stint trusts", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "stint-cli-wl-"));
    try {
      const admin = wl.h.server.config.bootstrapAdminName;
      const login = await cli(dir, ["login", "--user", admin, "--password-stdin"], {}, `${ADMIN_PASSWORD}\n`);
      expect(login.code, login.stderr).toBe(0);
      const add = await cli(dir, [
        "trusts",
        "add",
        SERVICE,
        "--name",
        "release-tags",
        "--issuer",
        wl.issuer.url,
        "--audience",
        "stint",
        "--claim",
        "repository=acme/app",
        "--claim",
        "ref=refs/tags/v*",
        "--token-ttl",
        "5m",
      ]);
      expect(add.code, add.stderr).toBe(0);
      const list = await cli(dir, ["trusts", "list", SERVICE, "--json"]);
      expect(JSON.parse(list.stdout).items).toContainEqual(
        expect.objectContaining({
          name: "release-tags",
          conditions: { repository: "acme/app", ref: "refs/tags/v*" },
          tokenTtlMs: 300_000,
        }),
      );
      const tagJob = await exchange(await jobToken(wl.keyA, { claims: { ref: "refs/tags/v1.2.3" } }));
      expect(tagJob.status, JSON.stringify(tagJob.body)).toBe(200);
      expect(tagJob.body.expires_in).toBe(300);
      const bad = await cli(dir, [
        "trusts",
        "add",
        SERVICE,
        "--name",
        "x",
        "--issuer",
        wl.issuer.url,
        "--audience",
        "a",
        "--claim",
        "novalue",
      ]);
      expect(bad.code).toBe(2);
      const remove = await cli(dir, ["trusts", "remove", SERVICE, "release-tags"]);
      expect(remove.code, remove.stderr).toBe(0);
      const after = await exchange(await jobToken(wl.keyA, { claims: { ref: "refs/tags/v1.2.4" } }));
      expect(after.body.error?.code).toBe("WORKLOAD_NO_TRUST");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
