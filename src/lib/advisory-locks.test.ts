import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ADVISORY_LOCKS } from "./advisory-locks.js";

const SRC = path.resolve(import.meta.dirname, "..");

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith(".ts") && !e.name.endsWith(".test.ts"))
    .map((e) => path.join(e.parentPath, e.name));
}

describe("advisory lock numbers", () => {
  it("are distinct", () => {
    const numbers = Object.values(ADVISORY_LOCKS);
    expect(new Set(numbers).size).toBe(numbers.length);
  });

  it("are spelled only in advisory-locks.ts, and every advisory lock call takes one of them", async () => {
    const strays: string[] = [];
    for (const file of await sourceFiles(SRC)) {
      if (file.endsWith(path.join("lib", "advisory-locks.ts"))) continue;
      const text = await readFile(file, "utf8");
      const rel = path.relative(SRC, file);
      for (const m of text.matchAll(/0x5717_?[0-9a-f]{4}/gi)) strays.push(`${rel}: ${m[0]}`);
      // A lock call names its number from ADVISORY_LOCKS on the same line, never a literal or a local constant.
      for (const line of text.split("\n")) {
        if (/pg_\w*advisory\w*\(/.test(line) && !/ADVISORY_LOCKS\.\w+/.test(line))
          strays.push(`${rel}: ${line.trim()}`);
      }
    }
    expect(strays).toEqual([]);
  });
});
