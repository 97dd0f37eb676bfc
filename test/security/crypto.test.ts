/**
 * Class: authenticated encryption that accepts truncated tags (issue 12, finding 17).
 *
 * AES-GCM lets a decipher check a tag of 4 to 16 bytes unless the tag length is pinned. A 4-byte tag is
 * forged by trying 2^32 values, so a database writer who shortens a stored tag turns "tampering is
 * detected" into "tampering is detected, most of the time". Every sealed value in Stint (vault versions
 * and their data keys, target credentials, TOTP seeds, signing keys) goes through lib/security's
 * seal/open; these tests hold open to a 16-byte tag, directly and through a real server's vault.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { open, seal } from "../../src/lib/security.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

/** The sealed value `v1.iv.tag.body` with its tag replaced. */
function withTag(sealed: string, tag: (original: Buffer) => Buffer): string {
  const [version, iv, original, body] = sealed.split(".") as [string, string, string, string];
  return [version, iv, tag(Buffer.from(original, "base64url")).toString("base64url"), body].join(".");
}

describe("AES-GCM tag length (finding 17)", () => {
  const key = randomBytes(32);
  const sealed = seal(key, "the admin password of prod-db", "target-secret:test");

  it("opens a value with its full 16-byte tag", () => {
    expect(open(key, sealed, "target-secret:test").toString("utf8")).toBe("the admin password of prod-db");
  });

  it.each([4, 8, 12, 15])("refuses the genuine tag truncated to %i bytes", (length) => {
    const truncated = withTag(sealed, (tag) => tag.subarray(0, length));
    expect(() => open(key, truncated, "target-secret:test")).toThrow();
  });

  it("refuses a forged 4-byte tag", () => {
    const forged = withTag(sealed, () => randomBytes(4));
    expect(() => open(key, forged, "target-secret:test")).toThrow();
  });

  it("refuses a tag longer than 16 bytes and an IV that is not 12 bytes", () => {
    expect(() =>
      open(
        key,
        withTag(sealed, (tag) => Buffer.concat([tag, Buffer.alloc(1)])),
        "target-secret:test",
      ),
    ).toThrow();
    const [version, , tag, body] = sealed.split(".") as [string, string, string, string];
    expect(() =>
      open(key, [version, randomBytes(16).toString("base64url"), tag, body].join("."), "target-secret:test"),
    ).toThrow();
  });
});

describe("a database writer shortens a stored tag (finding 17, end to end)", () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await testServer("pglite");
  });
  afterAll(async () => {
    await server.cleanup();
  });

  it("the vault answers INTEGRITY_FAILED for a secret version whose payload tag was truncated", async () => {
    const admin = { authorization: server.adminAuth };
    const put = await server.app.inject({
      method: "PUT",
      url: "/v1/secrets/app%2Fapi-key",
      headers: admin,
      payload: { kind: "api-key", value: "sk-live-0123456789abcdef", platformRoles: ["admin"] },
    });
    expect(put.statusCode, put.body).toBe(200);
    const before = await server.app.inject({ method: "GET", url: "/v1/secrets/app%2Fapi-key/value", headers: admin });
    expect(before.json()).toMatchObject({ value: "sk-live-0123456789abcdef" });

    const row = await server.store.db
      .selectFrom("secret_versions")
      .select(["secret_id", "ciphertext"])
      .executeTakeFirstOrThrow();
    await server.store.db
      .updateTable("secret_versions")
      .set({ ciphertext: withTag(row.ciphertext, (tag) => tag.subarray(0, 4)) })
      .where("secret_id", "=", row.secret_id)
      .execute();

    const after = await server.app.inject({ method: "GET", url: "/v1/secrets/app%2Fapi-key/value", headers: admin });
    expect(after.statusCode, after.body).toBe(500);
    expect(after.json()).toMatchObject({ error: { code: "INTEGRITY_FAILED" } });
    expect(after.body).not.toContain("sk-live-0123456789abcdef");
  });
});
