/**
 * Replays the committed fuzz corpus (fuzz/corpus/<target>/: seeds and past findings) through
 * every fuzz target, plus a short burst of fresh inputs per target, so CI keeps what `npm run fuzz`
 * established (fuzz/README.md). A finding fixed in a parser stays fixed here.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { execute, inputs, loadCorpus } from "../../fuzz/harness.js";
import { TARGETS } from "../../fuzz/targets/index.js";

describe("fuzz corpus replay (issue 13 acceptance 6)", () => {
  it("has a corpus for every target", () => {
    for (const target of TARGETS) expect(loadCorpus(target.name).length, target.name).toBeGreaterThan(0);
  });

  for (const target of TARGETS) {
    it(`${target.name}: every corpus entry passes the target's property`, () => {
      for (const [file, bytes] of loadCorpus(target.name)) {
        expect(() => target.check(bytes), `${target.name}/${file}`).not.toThrow();
      }
    });

    it(`${target.name}: a short burst of random, mutated and valid inputs`, () => {
      const seeds = loadCorpus(target.name).map(([, bytes]) => bytes);
      fc.assert(
        fc.property(inputs(target, seeds), (input) => execute(target, input)),
        { numRuns: 300 },
      );
    });
  }
});
