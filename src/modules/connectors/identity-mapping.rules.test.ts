import { describe, expect, it } from "vitest";
import { loginFor, templateProblems } from "./identity-mapping.rules.js";

describe("identity mapping", () => {
  const alice = { name: "alice", email: "alice.smith@example.com" };

  it("fills the template with the principal's name and e-mail", () => {
    expect(loginFor({ template: "{{name}}", map: {} }, alice)).toEqual({ login: "alice" });
    expect(loginFor({ template: "uid={{ name }},ou=people,dc=example,dc=org", map: {} }, alice)).toEqual({
      login: "uid=alice,ou=people,dc=example,dc=org",
    });
    expect(loginFor({ template: "{{emailLocal}}_dba", map: {} }, alice)).toEqual({ login: "alice.smith_dba" });
    expect(loginFor({ template: "{{email}}", map: {} }, alice)).toEqual({ login: "alice.smith@example.com" });
  });

  it("prefers an exception from the map", () => {
    expect(loginFor({ template: "{{name}}", map: { alice: "asmith" } }, alice)).toEqual({ login: "asmith" });
    expect(loginFor({ template: "{{name}}", map: { bob: "bobby" } }, alice)).toEqual({ login: "alice" });
  });

  it("says so when the template needs an e-mail the principal lacks", () => {
    const result = loginFor({ template: "{{emailLocal}}", map: {} }, { name: "ci-bot", email: null });
    expect(result).toEqual({ problem: expect.stringContaining("ci-bot has no e-mail address") });
  });

  it("rejects unknown variables, stray braces and constant templates", () => {
    expect(templateProblems("{{name}}")).toEqual([]);
    expect(templateProblems("{{user}}")).toEqual([expect.stringContaining("unknown variable {{user}}")]);
    expect(templateProblems("{{name}}}}")).toEqual([expect.stringContaining("stray")]);
    expect(templateProblems("admin")).toEqual([expect.stringContaining("names no variable")]);
  });
});
