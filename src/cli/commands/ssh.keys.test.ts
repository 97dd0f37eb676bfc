import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { CliContext } from "../context.js";
import { keyPair } from "./ssh.js";

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function context(): Promise<{ ctx: CliContext; sshDir: string }> {
  const dir = await mkdtemp(path.join(tmpdir(), "stint-ssh-keys-"));
  dirs.push(dir);
  const ctx = { env: { STINT_CONFIG_DIR: dir } } as unknown as CliContext;
  return { ctx, sshDir: path.join(dir, "ssh") };
}

describe("stint ssh login: Stint's own key", () => {
  it("a private key file another user planted readable (0644, no .pub) is replaced by a fresh 0600 file", async () => {
    const { ctx, sshDir } = await context();
    await mkdir(sshDir, { recursive: true });
    const planted = path.join(sshDir, "id_ed25519");
    await writeFile(planted, "planted\n", { mode: 0o644 });
    const { privatePath, publicKey } = await keyPair(ctx, undefined);
    expect(privatePath).toBe(planted);
    expect((await stat(planted)).mode & 0o777).toBe(0o600);
    expect(await readFile(planted, "utf8")).toContain("PRIVATE KEY");
    expect(publicKey).toMatch(/^ssh-ed25519 /);
  });

  it("an existing key pair is used as it is, not made again", async () => {
    const { ctx } = await context();
    const first = await keyPair(ctx, undefined);
    const second = await keyPair(ctx, undefined);
    expect(second).toEqual(first);
  });
});
