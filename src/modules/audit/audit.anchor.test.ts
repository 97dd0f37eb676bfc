import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { auditHarness } from "../../testing/harness.js";
import { testServer } from "../../testing/server.js";
import { NO_CONTEXT, SYSTEM } from "../authz/authz.types.js";
import { createAnchorWriter } from "./audit.anchor.js";

const silent = { warn: () => undefined, error: () => undefined };

describe("the audit anchor file", () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    cleanups.length = 0;
  });

  async function workDir() {
    const dir = await mkdtemp(path.join(tmpdir(), "stint-anchor-unit-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    return dir;
  }

  it("is rewritten whole with the newest signed head, leaving no temporary file behind", async () => {
    const h = await auditHarness("pglite", { checkpointEvery: 1000 });
    cleanups.push(h.cleanup);
    const dir = await workDir();
    const file = path.join(dir, "anchor.json");
    const writer = createAnchorWriter({ audit: h.audit, file, intervalMs: 60_000, logger: silent });
    expect(await writer.write()).toBeNull(); // an empty log has no head to sign
    await expect(stat(file)).rejects.toThrow();

    await h.audit.record(SYSTEM, NO_CONTEXT, { action: "x", outcome: "success" });
    const first = await writer.write();
    expect(JSON.parse(await readFile(file, "utf8"))).toEqual(first);
    await h.audit.record(SYSTEM, NO_CONTEXT, { action: "y", outcome: "success" });
    // Concurrent writes (a tick and a shutdown) are serialised; the file ends with the newest head.
    const [a, b] = await Promise.all([writer.write(), writer.write()]);
    expect(a).toEqual(b);
    expect(JSON.parse(await readFile(file, "utf8"))).toMatchObject({ seq: 2 });
    expect(await readdir(dir)).toEqual(["anchor.json"]);
    await writer.stop();
  });

  it("a server whose anchor file cannot be written refuses to start", async () => {
    const dir = await workDir();
    await expect(
      testServer("pglite", { env: { STINT_AUDIT_ANCHOR_FILE: path.join(dir, "missing-dir", "anchor.json") } }),
    ).rejects.toThrow(/ENOENT/);
  });
});
