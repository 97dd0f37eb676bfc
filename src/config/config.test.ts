import { describe, expect, it } from "vitest";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { loadConfig } from "./config.js";

describe("config", () => {
  it("has working defaults and no default secrets", () => {
    const result = loadConfig({});
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.config.listen).toBe("127.0.0.1:8420");
    expect(result.config.dataDir).toBe(".stint");
    expect(result.config.masterKeyFile).toBe(path.join(".stint", "master.key"));
    expect(result.config.bootstrapAdminPassword).toBeUndefined();
    expect(result.config.databaseUrl).toBeUndefined();
    expect(result.config.accessTokenTtl).toBe(600_000);
    expect(Object.isFrozen(result.config)).toBe(true);
  });

  it("reports one line per bad value, naming the variable, never echoing it", () => {
    const result = loadConfig({
      STINT_LISTEN: "nowhere",
      STINT_DATABASE_URL: "mysql://root@x/db",
      STINT_BOOTSTRAP_ADMIN_PASSWORD: "hunter2-xx",
      STINT_ACCESS_TOKEN_TTL: "ten minutes",
      STINT_TRUSTED_PROXIES: "10.0.0.0/8,not-an-ip",
    });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems).toHaveLength(5);
    expect(result.problems.join("\n")).toMatch(/^STINT_LISTEN: must be host:port/m);
    expect(result.problems.join("\n")).toMatch(/^STINT_DATABASE_URL: must be a postgres/m);
    expect(result.problems.join("\n")).toMatch(/^STINT_BOOTSTRAP_ADMIN_PASSWORD: must be at least 12/m);
    expect(result.problems.join("\n")).toMatch(/^STINT_ACCESS_TOKEN_TTL: .*15m/m);
    expect(result.problems.join("\n")).toMatch(/^STINT_TRUSTED_PROXIES: must be an IP/m);
    expect(result.problems.join("\n")).not.toContain("hunter2-xx");
  });

  it("a proxy's bad address is told with that proxy's default port and `off`, not the API's 8420", () => {
    const result = loadConfig({ STINT_SSH_PROXY_LISTEN: "127.0.0.1:99999", STINT_PG_PROXY_LISTEN: "nowhere" });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems.join("\n")).toMatch(/^STINT_SSH_PROXY_LISTEN: .*e\.g\. 127\.0\.0\.1:2222, or off$/m);
    expect(result.problems.join("\n")).toMatch(/^STINT_PG_PROXY_LISTEN: .*e\.g\. 127\.0\.0\.1:6543, or off$/m);
  });

  it("bounds the audit sequencer's idle poll (250ms by default; a poll of 1ms would hammer the store)", () => {
    expect(loadConfig({})).toMatchObject({ ok: true, config: { auditPoll: 250 } });
    expect(loadConfig({ STINT_AUDIT_POLL: "500ms" })).toMatchObject({ ok: true, config: { auditPoll: 500 } });
    for (const bad of ["1ms", "2m"])
      expect(loadConfig({ STINT_AUDIT_POLL: bad })).toMatchObject({
        ok: false,
        problems: [expect.stringMatching(/^STINT_AUDIT_POLL: must be between 10ms and 60s/)],
      });
  });

  it("reads a YAML file, lets the environment win, and rejects unknown settings", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "stint-config-"));
    const file = path.join(dir, "stint.yaml");
    writeFileSync(file, "listen: 0.0.0.0:9000\ndataDir: /var/lib/stint\ntrustedProxies: [10.1.2.3]\n");
    const ok = loadConfig({ STINT_LISTEN: "127.0.0.1:9001" }, file);
    expect(ok).toMatchObject({
      ok: true,
      config: { listen: "127.0.0.1:9001", dataDir: "/var/lib/stint", trustedProxies: ["10.1.2.3"] },
    });
    writeFileSync(file, "listne: 0.0.0.0:9000\n");
    expect(loadConfig({}, file)).toMatchObject({
      ok: false,
      problems: [expect.stringMatching(/unknown setting\(s\) listne/)],
    });
    writeFileSync(file, "listen: [unclosed\n");
    expect(loadConfig({}, file)).toMatchObject({ ok: false, problems: [expect.stringContaining(file)] });
  });
});
