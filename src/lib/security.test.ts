import { describe, expect, it } from "vitest";
import { hashPassword, OWASP_SCRYPT, verifyPassword } from "./security.js";

describe("password hashes", () => {
  it("are scrypt at an OWASP setting (N=2^14, r=8, p=5: 2^14·5 ≥ 2^16 work at 16 MiB) and verify", async () => {
    const hash = await hashPassword("correct horse battery staple");
    const [kind, n, r, p] = hash.split("$");
    expect([kind, Number(n), Number(r), Number(p)]).toEqual(["scrypt", 2 ** 14, 8, 5]);
    expect(OWASP_SCRYPT).toEqual({ N: 2 ** 14, r: 8, p: 5 });
    expect(await verifyPassword("correct horse battery staple", hash)).toBe(true);
    expect(await verifyPassword("correct horse battery stapler", hash)).toBe(false);
  });

  it("made with the earlier setting (N=2^17, r=8, p=1) still verify: each hash carries its parameters", async () => {
    const old = await hashPassword("saffron delta meadow pylon", { N: 2 ** 17, r: 8, p: 1 });
    expect(old.startsWith("scrypt$131072$8$1$")).toBe(true);
    expect(await verifyPassword("saffron delta meadow pylon", old)).toBe(true);
    expect(await verifyPassword("saffron delta meadow pylon!", old)).toBe(false);
  });

  it("refuse a tampered encoding instead of hashing with it", async () => {
    const hash = await hashPassword("violet anchor ember");
    expect(await verifyPassword("violet anchor ember", hash.replace(/^scrypt/, "md5"))).toBe(false);
    expect(await verifyPassword("violet anchor ember", hash.split("$").slice(0, 5).join("$"))).toBe(false);
  });
});
