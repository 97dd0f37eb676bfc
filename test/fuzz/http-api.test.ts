/**
 * Replays the HTTP API fuzz corpus (fuzz/corpus/http-api/: a generated request per operation, and
 * past findings) and 100 fresh schema-driven requests against a real server: every answer is a
 * success or the error envelope, never a 500 (fuzz/README.md, issue 13 acceptance 6).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { loadCorpus } from "../../fuzz/harness.js";
import { httpApi } from "../../fuzz/targets/http-api.js";

describe("HTTP API fuzz corpus replay (issue 13 acceptance 6)", () => {
  let context: Awaited<ReturnType<typeof httpApi.setup>>;
  beforeAll(async () => {
    context = await httpApi.setup();
  });
  afterAll(async () => {
    await httpApi.teardown(context);
  });

  it("answers every corpus request with success or the error envelope", async () => {
    const corpus = loadCorpus(httpApi.name);
    expect(corpus.length).toBeGreaterThan(0);
    for (const [, bytes] of corpus) await httpApi.check(context, bytes);
  });

  it("answers fresh schema-driven requests with success or the error envelope", async () => {
    await fc.assert(
      fc.asyncProperty(httpApi.valid(context), (input) => httpApi.check(context, input.bytes)),
      { numRuns: 100 },
    );
  });
});
