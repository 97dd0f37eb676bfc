/**
 * A secret read's answer is written by hand (the vault's hottest route): it must be what zod's serializer
 * wrote — same fields, same order, nothing unlisted — and an answer of any other shape must still be refused.
 * Its parameters and query are checked by hand too: exactly what zod accepts, with the same value, and
 * zod's error otherwise.
 */
import fc from "fast-check";
import { serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import { describe, expect, it } from "vitest";
import * as c from "../../contract/vault.js";
import { plainSecretPath, secretValueSerializer, secretValueValidator } from "./vault.routes.js";

const url = "/v1/secrets/:path/value";
const route = { schema: c.secretValue, method: "GET", url, httpStatus: "200" };
const byHand = secretValueSerializer(route);
const byZod = serializerCompiler(route);

const ANSWER = { path: "prod/db/admin", version: 3, kind: "password", value: "s3cret-value" };

describe("a secret read's serializer", () => {
  it("writes what zod wrote, for every kind and any value (quotes, backslashes, newlines, controls)", () => {
    const text = fc.oneof(
      fc.string({ unit: "grapheme", maxLength: 30 }),
      fc.string({ unit: fc.constantFrom('"', "\\", "\n", "\u0000", "\u2028", "a", " ", "é", "/"), maxLength: 10 }),
    );
    fc.assert(
      fc.property(text, text, fc.integer({ min: 1 }), fc.constantFrom(...c.secretKind.options), (path, value, v, k) => {
        const answer = { path, version: v, kind: k, value };
        const written = byHand(answer) as string;
        expect(written).toBe(byZod(answer));
        expect(JSON.parse(written)).toEqual(answer);
      }),
      { numRuns: 500 },
    );
  });

  it("writes no field the contract does not list", () => {
    const leaky = { ...ANSWER, wrappedKey: "d3JhcHBlZA", secretId: "00000000-0000-7000-8000-000000000001" };
    expect(byHand(leaky)).toBe(byZod(ANSWER));
    expect(byHand(leaky)).not.toContain("d3JhcHBlZA");
  });

  it("refuses an answer of another shape, as zod does", () => {
    for (const wrong of [
      { ...ANSWER, version: "3" },
      { ...ANSWER, version: 1.5 },
      { ...ANSWER, kind: "cookie" },
      { ...ANSWER, value: Buffer.from("s3cret") },
      { path: "prod/db/admin" },
      null,
      "s3cret",
    ])
      expect(() => byHand(wrong), JSON.stringify(wrong)).toThrow(/response|serializ/i);
  });
});

describe("a secret read's parameters and query", () => {
  const validators = (["params", "querystring"] as const).map((httpPart) => {
    const part = {
      schema: httpPart === "params" ? c.secretParams : c.secretValueQuery,
      method: "GET",
      url,
      httpPart,
    };
    type Check = (data: unknown) => { value?: unknown; error?: unknown };
    return { httpPart, fast: secretValueValidator(part) as Check, zod: validatorCompiler(part) as Check };
  });
  const text = fc.oneof(
    fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,20}(\/[a-z0-9][a-z0-9._-]{0,20}){0,3}$/),
    fc.string({ maxLength: 30 }),
    fc.constantFrom("", "A", "a/", "/a", "a//b", "a b", "a\u0000", "é", "a".repeat(200), "a".repeat(201), "2", "0"),
    fc.array(fc.constantFrom("a", "2"), { maxLength: 2 }),
  );
  const data = fc.dictionary(fc.constantFrom("path", "version", "extra", "__proto__", "toString"), text, {
    maxKeys: 3,
  });

  it.each(validators)("$httpPart: accepts exactly what zod accepts, with the same value, else zod's error", (v) => {
    fc.assert(
      fc.property(data, (input) => {
        const mine = v.fast(input);
        const theirs = v.zod(input);
        expect(mine.error === undefined).toBe(theirs.error === undefined);
        if (theirs.error === undefined) expect(mine.value).toEqual(theirs.value);
        else expect(String(mine.error)).toBe(String(theirs.error));
      }),
      { numRuns: 1000 },
    );
  });

  it("takes a plain read by hand, and refuses an extra field, a bad path or a bad version", () => {
    const [params, query] = validators;
    expect(params!.fast({ path: "prod/db/admin" })).toEqual({ value: { path: "prod/db/admin" } });
    expect(params!.fast({ path: "prod/db/admin", extra: "x" }).error).toBeDefined();
    expect(params!.fast({ path: "Prod/db" }).error).toBeDefined();
    expect(params!.fast({ path: "a".repeat(201) }).error).toBeDefined();
    expect(query!.fast(Object.create(null))).toEqual({ value: {} });
    expect(query!.fast({ version: "2" })).toEqual({ value: { version: 2 } });
    expect(query!.fast({ version: "0" }).error).toBeDefined();
    expect(query!.fast({ extra: "1" }).error).toBeDefined();
  });
});

describe("the fast path's reading of a read's URL segment (plainSecretPath)", () => {
  const params = validatorCompiler({ schema: c.secretParams, method: "GET", url, httpPart: "params" }) as (
    data: unknown,
  ) => { value?: unknown; error?: unknown };
  const segment = fc.oneof(
    fc.stringMatching(/^[a-z0-9._%2Ff-]{1,40}$/),
    fc.string({ maxLength: 30 }).map((text) => encodeURIComponent(text)),
    fc.constantFrom(
      "a%2Fb",
      "a%2fb",
      "%2Fa",
      "a%2F",
      "a%2F%2Fb",
      "a%2",
      "a%2G",
      "a%20b",
      "%61",
      "A",
      ".",
      "a".repeat(101),
    ),
  );

  it("names a path only when Fastify's decoding of the segment names that path and zod takes it", () => {
    fc.assert(
      fc.property(segment, (raw) => {
        const path = plainSecretPath(raw);
        if (path === undefined) return;
        expect(decodeURIComponent(raw)).toBe(path);
        expect(params({ path })).toEqual({ value: { path } });
      }),
      { numRuns: 2000 },
    );
    expect(plainSecretPath("prod%2Fdb%2fadmin")).toBe("prod/db/admin");
    expect(plainSecretPath("prod%2Fdb%2F")).toBeUndefined();
    expect(plainSecretPath("%70rod")).toBeUndefined();
  });
});
