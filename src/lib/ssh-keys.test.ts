import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import ssh2 from "ssh2";
import { describe, expect, it } from "vitest";
import { generateEd25519KeyPair } from "./ssh-keys.js";

const { utils } = ssh2;
const run = promisify(execFile);

describe("generateEd25519KeyPair", () => {
  it("always makes a pair that ssh2 loads (ssh2's own generator sometimes does not)", () => {
    for (let i = 0; i < 600; i++) {
      const pair = generateEd25519KeyPair("test");
      expect(utils.parseKey(pair.privateKey)).not.toBeInstanceOf(Error);
      expect(utils.parseKey(pair.publicKey)).not.toBeInstanceOf(Error);
    }
  });

  it("makes a private key ssh-keygen reads and derives the same public key from", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "stint-keys-"));
    try {
      const pair = generateEd25519KeyPair("stint-test");
      const file = path.join(dir, "id");
      await writeFile(file, pair.privateKey, { mode: 0o600 });
      const { stdout } = await run("ssh-keygen", ["-y", "-f", file]);
      expect(stdout.trim().split(" ").slice(0, 2)).toEqual(pair.publicKey.split(" ").slice(0, 2));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
