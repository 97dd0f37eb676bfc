/**
 * The KRL encoder against OpenSSH itself: `ssh-keygen -Q` reads what encodeKrl writes and finds the
 * certificates listed by serial revoked, the others not, and certificates of another CA not.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeKrl } from "./ssh-krl.js";

let dir: string;
const keygen = (...args: string[]) => execFileSync("ssh-keygen", args, { cwd: dir, encoding: "utf8" });

/** ssh-keygen -Q: "REVOKED" or "ok" for the certificate file. */
function query(krl: Buffer, cert: string): "REVOKED" | "ok" {
  writeFileSync(join(dir, "list.krl"), krl);
  const result = spawnSync("ssh-keygen", ["-Q", "-f", join(dir, "list.krl"), cert], { encoding: "utf8" });
  if (result.stdout.includes("REVOKED")) return "REVOKED";
  if (result.status === 0 && result.stdout.includes("ok")) return "ok";
  throw new Error(`ssh-keygen -Q: ${result.status} ${result.stdout} ${result.stderr}`);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "stint-krl-"));
  keygen("-q", "-t", "ed25519", "-N", "", "-f", "ca");
  keygen("-q", "-t", "ed25519", "-N", "", "-f", "other-ca");
  for (const [name, serial, ca] of [
    ["a", "7", "ca"],
    ["b", "9223372036854775000", "ca"],
    ["c", "8", "ca"],
    ["d", "7", "other-ca"],
  ] as const) {
    keygen("-q", "-t", "ed25519", "-N", "", "-f", name);
    keygen("-q", "-s", ca, "-I", name, "-n", `u%${name}`, "-z", serial, `${name}.pub`);
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("encodeKrl", () => {
  it("lists certificates of its CA by serial, as OpenSSH reads it", () => {
    const krl = encodeKrl({
      caPublicKey: readFileSync(join(dir, "ca.pub"), "utf8"),
      serials: [9223372036854775000n, 7n, 7n],
      version: 3n,
      generatedAt: new Date("2026-12-04T10:00:00Z"),
      comment: "test",
    });
    expect(krl.subarray(0, 8).toString("latin1")).toBe("SSHKRL\n\0");
    expect(query(krl, join(dir, "a-cert.pub"))).toBe("REVOKED");
    expect(query(krl, join(dir, "b-cert.pub"))).toBe("REVOKED");
    expect(query(krl, join(dir, "c-cert.pub"))).toBe("ok");
    // Same serial, another CA: not this list's business.
    expect(query(krl, join(dir, "d-cert.pub"))).toBe("ok");
  });

  it("an empty list is a valid KRL that revokes nothing", () => {
    const krl = encodeKrl({
      caPublicKey: readFileSync(join(dir, "ca.pub"), "utf8"),
      serials: [],
      version: 1n,
      generatedAt: new Date(),
    });
    expect(query(krl, join(dir, "a-cert.pub"))).toBe("ok");
  });

  it("refuses a CA line that is not a key", () => {
    expect(() =>
      encodeKrl({ caPublicKey: "ssh-ed25519 AAAA", serials: [], version: 1n, generatedAt: new Date() }),
    ).toThrow(TypeError);
  });
});
