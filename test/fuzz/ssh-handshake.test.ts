/**
 * Replays the SSH handshake fuzz corpus (fuzz/corpus/ssh-handshake/: a real client's first bytes and
 * their mutations, sign-in attempts, past findings) and 20 fresh sign-in attempts against real SSH
 * proxies in front of a real server and sshd: no uncaught error, every raw connection closed by the
 * proxy's deadline, a sign-in only with the issued certificate genuinely signed, nothing left open
 * (fuzz/README.md, issue 13 acceptance 6). Needs root and sshd, as the SSH proxy's own tests.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { loadCorpus } from "../../fuzz/harness.js";
import { sshHandshake, type Context } from "../../fuzz/targets/ssh-handshake.js";

describe("SSH handshake fuzz corpus replay (issue 13 acceptance 6)", () => {
  let context: Context;
  beforeAll(async () => {
    context = await sshHandshake.setup();
  });
  afterAll(async () => {
    if (context) await sshHandshake.teardown(context);
  });

  it("holds for every corpus input", async () => {
    const corpus = loadCorpus(sshHandshake.name);
    expect(corpus.length).toBeGreaterThan(0);
    for (const [file, bytes] of corpus) {
      await expect(sshHandshake.check(context, bytes), file).resolves.toBeUndefined();
    }
  });

  it("holds for fresh sign-in attempts", async () => {
    await fc.assert(
      fc.asyncProperty(sshHandshake.valid(context), (input) => sshHandshake.check(context, input.bytes)),
      { numRuns: 20 },
    );
  });
});
