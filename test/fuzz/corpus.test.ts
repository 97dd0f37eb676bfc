/**
 * Replays the committed fuzz corpus (fuzz/corpus/<target>/: seeds and past findings) through
 * every fuzz target, plus a short burst of fresh inputs per target, so CI keeps what `npm run fuzz`
 * established (fuzz/README.md). A finding fixed in a parser stays fixed here.
 *
 * Findings reported to the owners of the code at fault and not fixed yet live in fuzz/pending/:
 * each must still fail the way it was found (once one passes, move it to fuzz/corpus/), and a fresh
 * input that fails in one of those ways is not news.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { FuzzFinding, PENDING_DIR, execute, inputs, kindOf, loadCorpus, pendingKinds } from "../../fuzz/harness.js";
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

    const pending = loadCorpus(target.name, PENDING_DIR);
    if (pending.length > 0) {
      it(`${target.name}: each open finding in fuzz/pending still fails (move a fixed one to fuzz/corpus)`, () => {
        for (const [file, bytes] of pending) {
          expect(() => target.check(bytes), `fuzz/pending/${target.name}/${file} passes now`).toThrow(FuzzFinding);
        }
      });
    }

    it(`${target.name}: a short burst of random, mutated and valid inputs`, () => {
      const seeds = loadCorpus(target.name).map(([, bytes]) => bytes);
      const known = pendingKinds(target.check, target.name);
      fc.assert(
        fc.property(inputs(target, seeds), (input) => {
          try {
            execute(target, input);
          } catch (error) {
            if (error instanceof FuzzFinding && known.has(kindOf(error))) return;
            throw error;
          }
        }),
        { numRuns: 300 },
      );
    });
  }
});
