import { describe, expect, it } from "vitest";
import { hostsOfAddress, judgeAddress, literalAddressProblems, parseIpLiteral, formatIp } from "./address-policy.js";

describe("address policy", () => {
  // [spelling, canonical address, category, allowed by default]
  const TABLE: [string, string, string, boolean][] = [
    ["169.254.169.254", "169.254.169.254", "metadata", false],
    ["2852039166", "169.254.169.254", "metadata", false], // decimal
    ["0xa9fea9fe", "169.254.169.254", "metadata", false], // hex
    ["0xA9.0xFE.0xA9.0xFE", "169.254.169.254", "metadata", false],
    ["0251.0376.0251.0376", "169.254.169.254", "metadata", false], // octal
    ["169.254.43518", "169.254.169.254", "metadata", false], // a.b.c
    ["169.16689662", "169.254.169.254", "metadata", false], // a.b
    ["169.254.169.254.", "169.254.169.254", "metadata", false], // trailing dot
    ["fd00:ec2::254", "fd00:ec2::254", "metadata", false],
    ["[fd00:ec2::254]", "fd00:ec2::254", "metadata", false],
    ["::ffff:169.254.169.254", "::ffff:a9fe:a9fe", "metadata", false], // IPv4-mapped
    ["::ffff:a9fe:a9fe", "::ffff:a9fe:a9fe", "metadata", false],
    ["0:0:0:0:0:ffff:a9fe:a9fe", "::ffff:a9fe:a9fe", "metadata", false],
    ["::169.254.169.254", "::a9fe:a9fe", "metadata", false], // IPv4-compatible
    ["64:ff9b::a9fe:a9fe", "64:ff9b::a9fe:a9fe", "metadata", false], // NAT64
    ["2002:a9fe:a9fe::1", "2002:a9fe:a9fe::1", "metadata", false], // 6to4
    ["100.100.100.200", "100.100.100.200", "metadata", false],
    ["169.254.170.2", "169.254.170.2", "metadata", false],
    ["169.254.1.1", "169.254.1.1", "link-local", false],
    ["fe80::1", "fe80::1", "link-local", false],
    ["fe80::1%eth0", "fe80::1", "link-local", false],
    ["::ffff:169.254.0.1", "::ffff:a9fe:1", "link-local", false],
    ["0.0.0.0", "0.0.0.0", "unspecified", false],
    ["0", "0.0.0.0", "unspecified", false],
    ["0.1.2.3", "0.1.2.3", "unspecified", false],
    ["::", "::", "unspecified", false],
    ["::ffff:0.0.0.0", "::ffff:0:0", "unspecified", false],
    ["224.0.0.1", "224.0.0.1", "multicast", false],
    ["ff02::1", "ff02::1", "multicast", false],
    ["255.255.255.255", "255.255.255.255", "broadcast", false],
    ["240.0.0.1", "240.0.0.1", "reserved", false],
    ["127.0.0.1", "127.0.0.1", "loopback", true],
    ["2130706433", "127.0.0.1", "loopback", true],
    ["::1", "::1", "loopback", true],
    ["::ffff:127.0.0.1", "::ffff:7f00:1", "loopback", true],
    ["10.1.2.3", "10.1.2.3", "private", true],
    ["192.168.1.10", "192.168.1.10", "private", true],
    ["172.20.0.5", "172.20.0.5", "private", true],
    ["fd12:3456::1", "fd12:3456::1", "private", true],
    ["8.8.8.8", "8.8.8.8", "public", true],
    ["2606:4700::1111", "2606:4700::1111", "public", true],
  ];
  it.each(TABLE)("%s is %s (%s), allowed by default: %s", (spelling, canonical, category, allowed) => {
    const verdict = judgeAddress(spelling);
    expect(verdict).toMatchObject({ address: canonical, category, allowed });
  });

  it("does not take names or malformed addresses for IP addresses", () => {
    for (const host of [
      "metadata.google.internal",
      "localhost",
      "1.2.3.4.5",
      "256.1.1.1",
      "0x1g",
      "1..2",
      "::1::2",
      "08",
    ])
      expect(parseIpLiteral(host), host).toBeNull();
  });

  it("formats what it parses", () => {
    for (const text of ["1.2.3.4", "fe80::1", "2001:db8::ff00:42:8329"])
      expect(formatIp(parseIpLiteral(text)!)).toBe(text);
  });

  it("allows a blocked range only when listed, and denies a listed range even where it would allow", () => {
    expect(judgeAddress("169.254.169.254", { allow: ["169.254.169.254/32"], deny: [] }).allowed).toBe(true);
    // The allow list is about the IPv4 address an IPv6 form reaches as well.
    expect(judgeAddress("::ffff:169.254.169.254", { allow: ["169.254.0.0/16"], deny: [] }).allowed).toBe(true);
    expect(judgeAddress("169.254.169.254", { allow: ["169.254.1.0/24"], deny: [] }).allowed).toBe(false);
    expect(judgeAddress("127.0.0.1", { allow: [], deny: ["127.0.0.0/8"] })).toMatchObject({
      allowed: false,
      reason: expect.stringMatching(/STINT_DENY_NETWORKS/),
    });
    expect(judgeAddress("::ffff:127.0.0.1", { allow: [], deny: ["127.0.0.0/8"] }).allowed).toBe(false);
    expect(judgeAddress("169.254.169.254", { allow: ["169.254.0.0/16"], deny: ["169.254.169.254"] }).allowed).toBe(
      false,
    );
  });

  it("finds the hosts of every address shape the connectors take", () => {
    expect(hostsOfAddress("postgres://admin@0xa9fea9fe:5432/app")).toEqual(["0xa9fea9fe"]);
    expect(hostsOfAddress("postgresql://u@h1,[fd00:ec2::254]:5432/db")).toEqual(["h1", "fd00:ec2::254"]);
    expect(hostsOfAddress("mysql://root@[::ffff:169.254.169.254]:3306")).toEqual(["::ffff:169.254.169.254"]);
    expect(hostsOfAddress("ldaps://ldap.example.com")).toEqual(["ldap.example.com"]);
    expect(hostsOfAddress("ssh://root@169.254.169.254:22")).toEqual(["169.254.169.254"]);
    expect(hostsOfAddress("root@10.0.0.1:22")).toEqual(["10.0.0.1"]);
    expect(hostsOfAddress("https://hooks.example.com/x?y=1")).toEqual(["hooks.example.com"]);
  });

  it("reports literal hosts the policy refuses, in a sentence that names the setting", () => {
    expect(literalAddressProblems("postgres://admin@2852039166:5432/app")).toEqual([
      "must not point at 2852039166: 169.254.169.254 is a cloud metadata service; Stint connects there only if STINT_ALLOW_NETWORKS allows it",
    ]);
    expect(literalAddressProblems("postgres://admin@db.internal:5432/app")).toEqual([]);
    expect(literalAddressProblems("postgres://admin@127.0.0.1:5432/app")).toEqual([]);
  });
});
