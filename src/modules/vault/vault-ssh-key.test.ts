/**
 * The value the vault makes for an ssh-key secret (put with generate, a rotation, a check-in's rotation) is a
 * private key ssh2 and OpenSSH load. ssh2's own ed25519 generator drops a leading zero byte of the public key about
 * once in 256 keys: such a key cannot be set at an ssh-host target (the connector refuses it as "not a private
 * key"), so that rotation failed, and a generated secret held a key no client can use.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import ssh2 from "ssh2";
import { describe, expect, it } from "vitest";
import { newValueFor } from "./vault.context.js";

const { utils } = ssh2;
const run = promisify(execFile);

describe("generated ssh-key values", () => {
  it("each loads in ssh2 as an ed25519 private key (1,500 of them: ssh2's generator fails ~6 in that many)", () => {
    const unloadable: number[] = [];
    for (let i = 0; i < 1500; i++) {
      const parsed = utils.parseKey(newValueFor("ssh-key"));
      if (parsed instanceof Error || !parsed.isPrivateKey() || parsed.type !== "ssh-ed25519") unloadable.push(i);
    }
    expect(unloadable).toEqual([]);
  });

  it("ssh-keygen reads one and derives its public key", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "stint-vault-key-"));
    try {
      const value = newValueFor("ssh-key");
      const file = path.join(dir, "id");
      await writeFile(file, value, { mode: 0o600 });
      const { stdout } = await run("ssh-keygen", ["-y", "-f", file]);
      const parsed = utils.parseKey(value);
      if (parsed instanceof Error) throw parsed;
      expect(stdout.trim().split(" ").slice(0, 2)).toEqual(["ssh-ed25519", parsed.getPublicSSH().toString("base64")]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
