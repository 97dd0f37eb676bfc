import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  auditedClaims,
  chooseTrust,
  conditionsHold,
  globMatches,
  issuerProblem,
  jobTokenProblem,
  trustProblems,
  TOKEN_TTL_DEFAULT_MS,
} from "./workload.rules.js";
import type { JobClaims, WorkloadTrust } from "./workload.types.js";

const ISS = "https://token.actions.githubusercontent.com";

function trust(over: Partial<WorkloadTrust> = {}): WorkloadTrust {
  return {
    id: "t1",
    principalId: "p1",
    service: "deployer",
    name: "main",
    issuer: ISS,
    audiences: ["stint"],
    conditions: { repository: "acme/app", ref: "refs/heads/main" },
    tokenTtlMs: TOKEN_TTL_DEFAULT_MS,
    createdAt: "2026-12-05T00:00:00.000Z",
    ...over,
  };
}

function claims(over: Partial<JobClaims> = {}): JobClaims {
  return {
    iss: ISS,
    aud: ["stint"],
    sub: "repo:acme/app:ref:refs/heads/main",
    jti: "j-1",
    iat: 1_000,
    exp: 1_300,
    repository: "acme/app",
    ref: "refs/heads/main",
    ...over,
  };
}

describe("globMatches", () => {
  it.each([
    ["acme/app", "acme/app", true],
    ["acme/app", "acme/app2", false],
    ["acme/*", "acme/app", true],
    ["acme/*", "acme/team/app", true],
    ["acme/*", "evil/acme/app", false],
    ["refs/heads/release-?", "refs/heads/release-1", true],
    ["refs/heads/release-?", "refs/heads/release-10", false],
    ["repo:acme/*:environment:prod", "repo:acme/app:environment:prod", true],
    ["repo:acme/*:environment:prod", "repo:acme/app:environment:prod-copy", false],
    ["*-prod", "x-prod", true],
    ["a*b*c", "aXbYc", true],
    ["a*b*c", "aXbY", false],
    ["acme/*", "acme/*x", true],
    ["*", "* ", true],
  ])("%s against %s → %s", (pattern, value, expected) => {
    expect(globMatches(pattern, value)).toBe(expected);
  });

  it("a pattern without wildcards matches only itself, whatever the characters (regex metacharacters are literal)", () => {
    fc.assert(
      fc.property(
        fc.string().filter((s) => !/[*?]/.test(s)),
        fc.string(),
        (pattern, value) => {
          expect(globMatches(pattern, value)).toBe(pattern === value);
          expect(globMatches(pattern, pattern)).toBe(true);
        },
      ),
    );
  });

  it("prefix/* matches exactly the values that start with the prefix", () => {
    fc.assert(
      fc.property(
        fc.string().filter((s) => !/[*?]/.test(s)),
        fc.string(),
        (prefix, value) => {
          expect(globMatches(`${prefix}*`, value)).toBe(value.startsWith(prefix));
        },
      ),
    );
  });

  it("stays linear on a hostile pattern (no backtracking blow-up)", () => {
    expect(globMatches(`${"*a".repeat(100)}b`, "a".repeat(10_000))).toBe(false);
  });
});

describe("issuerProblem", () => {
  it.each([
    [ISS, null],
    ["https://gitlab.example.com", null],
    ["http://127.0.0.1:8080/issuer", null],
    ["http://localhost:9000", null],
    ["http://gitlab.example.com", "must be https (http only on a loopback address)"],
    ["ftp://x", "must be https (http only on a loopback address)"],
    ["not a url", "must be a URL"],
    ["https://x.example/?a=1", "must not carry a query, fragment or credentials"],
    ["https://user:pw@x.example", "must not carry a query, fragment or credentials"],
  ])("%s → %s", (issuer, problem) => {
    expect(issuerProblem(issuer)).toBe(problem);
  });
});

describe("trustProblems", () => {
  const ok = {
    name: "main",
    issuer: ISS,
    audiences: ["stint"],
    conditions: { repository: "acme/app" },
    tokenTtlMs: TOKEN_TTL_DEFAULT_MS,
  };
  it("accepts a well-formed trust", () => {
    expect(trustProblems(ok)).toEqual([]);
  });
  it("refuses a trust without conditions: it would admit every job of a shared issuer", () => {
    expect(trustProblems({ ...ok, conditions: {} })).toEqual([expect.objectContaining({ path: "body.conditions" })]);
  });
  it("refuses conditions that match everything, and on the claims the exchange checks itself", () => {
    expect(trustProblems({ ...ok, conditions: { repository: "*" } })[0]?.message).toBe("must not match everything");
    expect(trustProblems({ ...ok, conditions: { sub: "**?" } })[0]?.message).toBe("must not match everything");
    expect(trustProblems({ ...ok, conditions: { aud: "stint" } })[0]?.path).toBe("body.conditions.aud");
  });
  it("refuses no audience, a plain-http remote issuer and lifetimes outside 1–60 minutes", () => {
    const paths = trustProblems({ ...ok, audiences: [], issuer: "http://ci.example", tokenTtlMs: 2 * 3600_000 }).map(
      (p) => p.path,
    );
    expect(paths.sort()).toEqual(["body.audiences", "body.issuer", "body.tokenTtl"]);
  });
});

describe("conditionsHold", () => {
  it("needs every condition, compares strings, numbers and booleans as text, never objects", () => {
    expect(conditionsHold({ repository: "acme/app" }, { repository: "acme/app" })).toBe(true);
    expect(conditionsHold({ repository: "acme/app", ref: "refs/heads/main" }, { repository: "acme/app" })).toBe(false);
    expect(conditionsHold({ run_attempt: "1" }, { run_attempt: 1 })).toBe(true);
    expect(conditionsHold({ protected: "true" }, { protected: true })).toBe(true);
    expect(conditionsHold({ repository: "acme/app" }, { repository: ["acme/app"] })).toBe(false);
    expect(conditionsHold({ repository: "[object Object]" }, { repository: {} })).toBe(false);
  });
  it("an empty condition set never holds", () => {
    expect(conditionsHold({}, { repository: "acme/app" })).toBe(false);
  });
  it("a claim inherited from Object.prototype is no claim", () => {
    expect(conditionsHold({ constructor: "*n*" }, {})).toBe(false);
  });
});

describe("chooseTrust", () => {
  it("picks the trust whose audience and conditions match", () => {
    expect(chooseTrust([trust()], claims())).toEqual({ trust: trust() });
  });
  it("refuses another repository, another ref, another audience, another issuer", () => {
    expect(chooseTrust([trust()], claims({ repository: "acme/other" }))).toEqual({ refused: "NO_TRUST" });
    expect(chooseTrust([trust()], claims({ ref: "refs/heads/feature" }))).toEqual({ refused: "NO_TRUST" });
    expect(chooseTrust([trust()], claims({ aud: ["someone-else"] }))).toEqual({ refused: "NO_TRUST" });
    expect(chooseTrust([trust()], claims({ iss: "https://evil.example" }))).toEqual({ refused: "NO_TRUST" });
  });
  it("two service identities matching is ambiguous unless the caller names one", () => {
    const other = trust({ id: "t2", principalId: "p2", service: "migrator", conditions: { repository: "acme/*" } });
    expect(chooseTrust([trust(), other], claims())).toEqual({
      refused: "AMBIGUOUS",
      services: ["deployer", "migrator"],
    });
    expect(chooseTrust([trust(), other], claims(), "migrator")).toEqual({ trust: other });
    expect(chooseTrust([trust(), other], claims(), "nobody")).toEqual({ refused: "NO_TRUST" });
  });
});

describe("jobTokenProblem", () => {
  const now = 1_100;
  it("accepts a token within its times", () => {
    expect(jobTokenProblem(claims(), now)).toBeNull();
  });
  it("refuses missing exp/iat/jti, expiry beyond the tolerance, a future iat or nbf, and long-lived tokens", () => {
    expect(jobTokenProblem({ ...claims(), jti: undefined }, now)).toBe("MISSING_CLAIMS");
    expect(jobTokenProblem({ ...claims(), iat: undefined }, now)).toBe("MISSING_CLAIMS");
    expect(jobTokenProblem(claims({ exp: now - 61 }), now)).toBe("EXPIRED");
    expect(jobTokenProblem(claims({ exp: now - 59 }), now)).toBeNull();
    expect(jobTokenProblem(claims({ iat: now + 61, exp: now + 200 }), now)).toBe("NOT_YET_VALID");
    expect(jobTokenProblem({ ...claims(), nbf: now + 120 }, now)).toBe("NOT_YET_VALID");
    expect(jobTokenProblem(claims({ iat: 0, exp: 3_601 }), now)).toBe("TOO_LONG_LIVED");
  });
});

describe("auditedClaims", () => {
  it("keeps sub, jti and the conditioned claims, nothing else", () => {
    const kept = auditedClaims(claims({ secretish: "x", actor: "mallory" }), trust());
    expect(kept).toEqual({
      sub: "repo:acme/app:ref:refs/heads/main",
      jti: "j-1",
      repository: "acme/app",
      ref: "refs/heads/main",
    });
  });
});
