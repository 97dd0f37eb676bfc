import { describe, expect, it } from "vitest";
import { AddressRefusedError, resolveAllowedAddress, type Resolve } from "./address-guard.js";

const answers =
  (...addresses: string[]): Resolve =>
  async () =>
    addresses.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));

describe("resolveAllowedAddress (what the session proxies connect to)", () => {
  it("returns the first answer when every answer is allowed", async () => {
    expect(await resolveAllowedAddress("db.internal", { allow: [], deny: [] }, answers("10.0.0.5", "10.0.0.6"))).toBe(
      "10.0.0.5",
    );
  });

  it("refuses a name when any answer is refused (a client could pick that one)", async () => {
    await expect(
      resolveAllowedAddress("db.internal", { allow: [], deny: [] }, answers("10.0.0.5", "169.254.169.254")),
    ).rejects.toThrow(AddressRefusedError);
    await expect(
      resolveAllowedAddress("db.internal", { allow: [], deny: ["10.0.0.0/8"] }, answers("10.0.0.5")),
    ).rejects.toThrow(/db\.internal resolves to 10\.0\.0\.5 is in STINT_DENY_NETWORKS/);
  });

  it("judges a literal without resolving it, and gives it back without brackets", async () => {
    const never: Resolve = () => Promise.reject(new Error("must not resolve a literal"));
    expect(await resolveAllowedAddress("[::1]", { allow: [], deny: [] }, never)).toBe("::1");
    expect(await resolveAllowedAddress("0x7f000001", { allow: [], deny: [] }, never)).toBe("127.0.0.1");
    await expect(resolveAllowedAddress("0xa9fea9fe", { allow: [], deny: [] }, never)).rejects.toThrow(
      AddressRefusedError,
    );
  });

  it("a name that does not resolve is an error, not a pass", async () => {
    const nxdomain: Resolve = () => Promise.reject(Object.assign(new Error("ENOTFOUND"), { code: "ENOTFOUND" }));
    await expect(resolveAllowedAddress("nowhere.invalid", { allow: [], deny: [] }, nxdomain)).rejects.toThrow();
    await expect(resolveAllowedAddress("empty.invalid", { allow: [], deny: [] }, answers())).rejects.toThrow(
      /does not resolve/,
    );
  });
});
