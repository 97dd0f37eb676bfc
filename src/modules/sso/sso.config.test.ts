import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../config/config.js";
import { resolveProviders } from "./sso.config.js";

let dir: string;
const SECRET = "a-very-secret-client-secret-value";

async function configWith(yaml: string, env: NodeJS.ProcessEnv = {}) {
  const file = path.join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(file, yaml);
  return loadConfig({ STINT_CONFIG_FILE: file, ...env });
}

const provider = (extra = "") => `
  - id: corp
    displayName: Corp
    issuer: https://idp.example.com
    clientId: stint${extra}`;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "stint-sso-config-"));
  await writeFile(path.join(dir, "secret"), `${SECRET}\n`);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("ssoProviders in the configuration", () => {
  it("reads a provider with its defaults, and the client secret from a file or an environment variable", async () => {
    const fromFile = await configWith(
      `ssoProviders:${provider(`\n    clientSecretFile: ${path.join(dir, "secret")}`)}`,
    );
    if (!fromFile.ok) throw new Error(fromFile.problems.join("; "));
    expect(fromFile.config.ssoProviders[0]).toMatchObject({
      scopes: ["openid", "profile", "email"],
      usernameClaim: "preferred_username",
    });
    expect(resolveProviders(fromFile.config.ssoProviders, {})[0]!.clientSecret).toBe(SECRET);
    const fromEnv = await configWith(`ssoProviders:${provider("\n    clientSecretEnv: CORP_SECRET")}`);
    if (!fromEnv.ok) throw new Error(fromEnv.problems.join("; "));
    expect(resolveProviders(fromEnv.config.ssoProviders, { CORP_SECRET: SECRET })[0]!.clientSecret).toBe(SECRET);
    expect(() => resolveProviders(fromEnv.config.ssoProviders, {})).toThrow(/CORP_SECRET is not set/);
  });

  it("refuses an http issuer off loopback, duplicate or reserved ids, two secret sources, no openid scope", async () => {
    const problems = async (yaml: string, env: NodeJS.ProcessEnv = {}) => {
      const result = await configWith(yaml, env);
      return result.ok ? [] : result.problems;
    };
    expect((await problems(`ssoProviders:${provider().replace("https://idp", "http://idp")}`)).join(" ")).toMatch(
      /https/,
    );
    expect((await problems(`ssoProviders:${provider()}${provider()}`)).join(" ")).toMatch(/unique/);
    expect((await problems(`ssoProviders:${provider().replace("id: corp", "id: device")}`)).join(" ")).toMatch(
      /not provider ids/,
    );
    const both = await problems(
      `ssoProviders:${provider(`\n    clientSecret: ${SECRET}\n    clientSecretEnv: CORP_SECRET`)}`,
    );
    expect(both.join(" ")).toMatch(/one way/);
    // A problem never echoes the secret back.
    expect(both.join(" ")).not.toContain(SECRET);
    expect((await problems(`ssoProviders:${provider("\n    scopes: [profile]")}`)).join(" ")).toMatch(/openid/);
    expect(
      (await problems(`ssoProviders:${provider().replace("https://idp.example.com", "http://127.0.0.1:9999")}`)).length,
    ).toBe(0);
  });

  it("passwordSignIn: break-glass needs a provider; break-glass users come from the environment too", async () => {
    const none = await configWith("passwordSignIn: break-glass\n");
    expect(none.ok).toBe(false);
    const ok = await configWith(`ssoProviders:${provider()}\n`, {
      STINT_PASSWORD_SIGN_IN: "break-glass",
      STINT_BREAK_GLASS_USERS: "admin, root.admin",
    });
    if (!ok.ok) throw new Error(ok.problems.join("; "));
    expect(ok.config.passwordSignIn).toBe("break-glass");
    expect(ok.config.breakGlassUsers).toEqual(["admin", "root.admin"]);
  });
});
