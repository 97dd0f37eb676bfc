import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createBlobStore } from "./blob-store.js";

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

describe("blob store", () => {
  it("stores every line written, in order, under its key only once finished, with its SHA-256", async () => {
    dir = await mkdtemp(path.join(tmpdir(), "stint-blobs-"));
    const blobs = createBlobStore(dir);
    const writer = await blobs.create("recordings/2026/11/a.jsonl");
    const lines = Array.from({ length: 5000 }, (_, i) => `{"n":${i}}\n`);
    for (const line of lines) writer.write(line);
    expect(existsSync(path.join(dir, "recordings/2026/11/a.jsonl"))).toBe(false);
    const done = await writer.finish();
    const text = await readFile(path.join(dir, "recordings/2026/11/a.jsonl"), "utf8");
    expect(text).toBe(lines.join(""));
    expect(done).toEqual({
      key: "recordings/2026/11/a.jsonl",
      sha256: createHash("sha256").update(text).digest("hex"),
      bytes: Buffer.byteLength(text),
    });
    expect(await blobs.size(done.key)).toBe(done.bytes);
    await expect(blobs.create("recordings/2026/11/a.jsonl.partial")).resolves.toBeDefined();
  });

  it("refuses keys that leave the store and stores that cannot be written", async () => {
    dir = await mkdtemp(path.join(tmpdir(), "stint-blobs-"));
    const blobs = createBlobStore(dir);
    for (const key of ["../x", "/etc/passwd", "a/../../b", "A B"])
      await expect(blobs.create(key)).rejects.toThrow(/blob key/);
    await writeFile(path.join(dir, "recordings"), "a file where a directory should be");
    await expect(blobs.create("recordings/2026/x.cast")).rejects.toThrow(/ENOTDIR|EEXIST/);
    await expect(blobs.read("missing/x.cast")).rejects.toThrow(/ENOENT/);
  });

  it("a write during or after finish() is refused and never spoils the blob (finding 8: recordings left .partial)", async () => {
    dir = await mkdtemp(path.join(tmpdir(), "stint-blobs-"));
    const blobs = createBlobStore(dir);
    const writer = await blobs.create("recordings/late.cast");
    expect(writer.write("first\n")).toBe(true);
    const finishing = writer.finish();
    // A relay that had not yet heard of the end keeps writing, while the file syncs, closes and is renamed.
    const late = [writer.write("late\n")];
    await new Promise((resolve) => setImmediate(resolve));
    late.push(writer.write("later\n"));
    const done = await finishing;
    late.push(writer.write("after\n"));
    expect(late).toEqual([false, false, false]);
    expect(writer.open).toBe(false);
    expect(writer.failure).toBeNull();
    const text = await readFile(path.join(dir, "recordings/late.cast"), "utf8");
    expect(text).toBe("first\n");
    expect(existsSync(path.join(dir, "recordings/late.cast.partial"))).toBe(false);
    expect(done.sha256).toBe(createHash("sha256").update(text).digest("hex"));
    // finish() again answers the same.
    await expect(writer.finish()).resolves.toEqual(done);
  });

  it("salvage keeps a dead writer's blob: the .partial file made readable, a whole one as it is, none as null", async () => {
    dir = await mkdtemp(path.join(tmpdir(), "stint-blobs-"));
    const blobs = createBlobStore(dir);
    const sha = (text: string) => createHash("sha256").update(text).digest("hex");
    // A writer whose process died: what reached the disk sits in the .partial file.
    await writeFile(path.join(dir, "cut.jsonl.partial"), "line 1\nline 2\n");
    expect(await blobs.salvage("cut.jsonl")).toEqual({
      key: "cut.jsonl",
      sha256: sha("line 1\nline 2\n"),
      bytes: 14,
      partial: true,
    });
    expect(await readFile(path.join(dir, "cut.jsonl"), "utf8")).toBe("line 1\nline 2\n");
    expect(existsSync(path.join(dir, "cut.jsonl.partial"))).toBe(false);
    // A writer that finished before its process died.
    const writer = await blobs.create("whole.cast");
    writer.write("all of it\n");
    const done = await writer.finish();
    expect(await blobs.salvage("whole.cast")).toEqual({ ...done, partial: false });
    // Neither file here (another node's directory).
    expect(await blobs.salvage("elsewhere.cast")).toBeNull();
  });
});
