import { describe, expect, it } from "vitest";
import { sftpPacket } from "../../testing/ssh-recordings.js";
import { readClientInit, readServerVersion } from "./sftp-handshake.js";

const pair = (name: string, value: string) => [name, value];

describe("readClientInit", () => {
  const cases: [string, Buffer, string][] = [
    ["OpenSSH's INIT", sftpPacket(1, 3), "done"],
    ["a later version (offered 3)", sftpPacket(1, 6), "done"],
    ["INIT with extension data", sftpPacket(1, 3, ...pair("x", "\nid\n")), "done"],
    ["half an INIT", sftpPacket(1, 3).subarray(0, 6), "more"],
    ["a length alone", sftpPacket(1, 3).subarray(0, 4), "more"],
    ["version 2", sftpPacket(1, 2), "refused"],
    ["another packet type first", sftpPacket(3, 1, "/etc/passwd", 1, 0), "refused"],
    ["a shell command", Buffer.from("id; uname -a\n"), "refused"],
  ];
  it.each(cases)("%s", (_name, bytes, state) => {
    expect(readClientInit(bytes).state).toBe(state);
  });
  it("says where the INIT ends (the next bytes are the next packet's)", () => {
    expect(readClientInit(Buffer.concat([sftpPacket(1, 3), sftpPacket(16, 1, ".")]))).toEqual({
      state: "done",
      length: 9,
    });
  });
});

describe("readServerVersion", () => {
  const cases: [string, Buffer, string][] = [
    ["version 3", sftpPacket(2, 3), "done"],
    [
      "version 3 with extensions",
      sftpPacket(2, 3, ...pair("posix-rename@openssh.com", "1"), ...pair("a", "b")),
      "done",
    ],
    ["half a VERSION", sftpPacket(2, 3, ...pair("a", "b")).subarray(0, 11), "more"],
    ["three bytes", Buffer.from([0, 0, 0]), "more"],
    ["version 6", sftpPacket(2, 6), "refused"],
    ["an odd number of extension strings", sftpPacket(2, 3, "lonely"), "refused"],
    ["an extension string past the packet", Buffer.concat([sftpPacket(2, 3, 1000)]), "refused"],
    ["a shell's output", Buffer.from("uid=0(root) gid=0(root)\n"), "refused"],
    ["a shell's error", Buffer.from("sh: 1: \u0005\u0001: not found\n"), "refused"],
    ["a STATUS first", sftpPacket(101, 1, 0, "ok", ""), "refused"],
    ["a huge length", Buffer.from([0x7f, 0, 0, 0, 2]), "refused"],
  ];
  it.each(cases)("%s", (_name, bytes, state) => {
    expect(readServerVersion(bytes).state).toBe(state);
  });
});
