/** The `alerts:` section as the server's configuration file gives it: thresholds parsed, bad values refused in words. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../config/config.js";

const dir = mkdtempSync(path.join(tmpdir(), "stint-alerts-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function load(yaml: string) {
  const file = path.join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, yaml);
  return loadConfig({}, file);
}

const CHANNEL = `notifications:
  channels:
    - { name: sec, kind: webhook, url: "https://hooks.example.com/x", secret: "0123456789abcdef0123" }
`;

describe("alerts: configuration", () => {
  it("defaults every rule on, with its thresholds, when the section is left out", () => {
    const result = load("logLevel: info\n");
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.config.alerts).toMatchObject({
      enabled: true,
      startAt: "beginning",
      learnOnlyOlderThan: 86_400_000,
      rules: {
        burst: { enabled: true, count: 5, window: 600_000, action: "none", severity: "warning" },
        breakGlass: { severity: "critical", action: "none" },
        deniedThenBreakGlass: { action: "review", within: 3_600_000 },
      },
    });
  });

  it("reads thresholds, severities, actions and channels from the file", () => {
    const result = load(
      `${CHANNEL}alerts:
  channels: [sec]
  rules:
    burst: { count: 3, window: 2m, action: revoke }
    fastApproval: { within: 30s, severity: critical }
    firstActivation: { enabled: false }
`,
    );
    expect(result.ok, JSON.stringify(result)).toBe(true);
    if (!result.ok) return;
    expect(result.config.alerts.channels).toEqual(["sec"]);
    expect(result.config.alerts.rules.burst).toMatchObject({ count: 3, window: 120_000, action: "revoke" });
    expect(result.config.alerts.rules.fastApproval).toMatchObject({ within: 30_000, severity: "critical" });
    expect(result.config.alerts.rules.firstActivation.enabled).toBe(false);
  });

  it("refuses an unknown rule or setting, a bad duration, a revoke for drift and a channel that is not configured", () => {
    const problems = (yaml: string) => {
      const result = load(yaml);
      return result.ok ? [] : result.problems;
    };
    expect(problems("alerts:\n  rules:\n    lateNight: {}\n").join()).toMatch(/alerts\.rules.*lateNight/);
    expect(problems("alerts:\n  rules:\n    burst: { windw: 1m }\n").join()).toMatch(/windw/);
    expect(problems("alerts:\n  rules:\n    burst: { window: soon }\n").join()).toMatch(/alerts\.rules\.burst\.window/);
    expect(problems("alerts:\n  rules:\n    drift: { action: revoke }\n").join()).toMatch(
      /alerts\.rules\.drift\.action/,
    );
    expect(problems(`${CHANNEL}alerts:\n  channels: [pager]\n`).join()).toMatch(
      /alerts\.channels\.0: names no channel of notifications\.channels/,
    );
  });
});
