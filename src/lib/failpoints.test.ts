/**
 * The failpoint registry is the list the crash walk (test/reliability/failpoint-walk.test.ts) enumerates:
 * every failpoint the code passes through must be in it, once, and every entry must be in the code.
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import {
  armFailpoint,
  disarmFailpoints,
  failpoint,
  FailpointCrash,
  FAILPOINT_NAMES,
  FAILPOINTS,
  type FailpointName,
} from "./failpoints.js";

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const files = await Promise.all(
    entries.map(async (entry) => {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) return sourceFiles(full);
      return entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts") ? [full] : [];
    }),
  );
  return files.flat();
}

/** Every `failpoint(…)` call in src/, by the text of its argument. */
async function failpointCalls(): Promise<{ file: string; argument: string }[]> {
  const calls: { file: string; argument: string }[] = [];
  for (const file of await sourceFiles(SRC)) {
    if (file === path.join(SRC, "lib", "failpoints.ts")) continue;
    const text = await readFile(file, "utf8");
    for (const match of text.matchAll(/\bfailpoint\(([^)]*)\)/g))
      calls.push({ file: path.relative(SRC, file), argument: match[1]!.trim() });
  }
  return calls;
}

afterEach(() => disarmFailpoints());

describe("the failpoint registry", () => {
  it("every failpoint the code passes through is registered, named by a literal, and used exactly once", async () => {
    const calls = await failpointCalls();
    const literal = /^"([a-z0-9.-]+)"$/;
    expect(calls.filter((c) => !literal.test(c.argument))).toEqual([]);
    const unregistered = calls.filter((c) => !Object.hasOwn(FAILPOINTS, literal.exec(c.argument)![1]!));
    expect(unregistered).toEqual([]);
    const used = calls.map((c) => literal.exec(c.argument)![1]!).sort();
    expect(used).toEqual([...FAILPOINT_NAMES].sort());
  });

  it("each entry says in one line what has happened when it fires", () => {
    for (const name of FAILPOINT_NAMES) {
      expect(name).toMatch(/^[a-z]+(\.[a-z-]+)+$/);
      expect(FAILPOINTS[name].length).toBeGreaterThan(20);
      expect(FAILPOINTS[name]).not.toMatch(/\n/);
    }
  });

  it("refuses to arm a name that is not registered", () => {
    expect(() => armFailpoint("grant.provision.nowhere" as FailpointName)).toThrow(RangeError);
  });
});

describe("failpoint()", () => {
  it("does nothing unless armed; a crash fires the armed number of times, then the point is inert again", async () => {
    await expect(failpoint("outbox.job.before-run")).resolves.toBeUndefined();
    const armed = armFailpoint("outbox.job.before-run", "crash", 2);
    await expect(failpoint("outbox.job.before-done")).resolves.toBeUndefined();
    await expect(failpoint("outbox.job.before-run")).rejects.toBeInstanceOf(FailpointCrash);
    await expect(failpoint("outbox.job.before-run")).rejects.toThrow(
      "failpoint outbox.job.before-run: simulated crash",
    );
    await expect(failpoint("outbox.job.before-run")).resolves.toBeUndefined();
    expect(armed.fired).toBe(2);
  });

  it("runs an armed function and goes on, or fails with what it throws", async () => {
    const seen: string[] = [];
    armFailpoint("grant.revoke.before-target", () => {
      seen.push("paused");
    });
    await failpoint("grant.revoke.before-target");
    expect(seen).toEqual(["paused"]);
    armFailpoint("grant.revoke.after-target", () => {
      throw new Error("the answer was lost");
    });
    await expect(failpoint("grant.revoke.after-target")).rejects.toThrow("the answer was lost");
  });
});
