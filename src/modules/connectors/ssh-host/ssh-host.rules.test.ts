import { describe, expect, it } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import fc from "fast-check";
import {
  buildBatch,
  buildCommand,
  fingerprintFromHex,
  groupHolders,
  optionProblems,
  parseAddress,
  parseGroups,
  parseLastlog,
  parseOptions,
  parsePasswd,
  parseSudoers,
  shellQuote,
  splitBatch,
  splitSudoersFiles,
  sudoersGroups,
  sudoersHolders,
} from "./ssh-host.rules.js";

const HOST_KEY = "SHA256:wPsS+KvO79FdhYmysXSVc9JsCV6rvv/8J6Ri0YhUt6E";

describe("options", () => {
  it("needs hostKey and applies defaults", () => {
    expect(optionProblems({})).toEqual([expect.stringContaining("options.hostKey is required")]);
    expect(optionProblems({ hostKey: HOST_KEY })).toEqual([]);
    expect(parseOptions({ hostKey: HOST_KEY })).toEqual({
      hostKey: HOST_KEY,
      privilegedGroups: ["sudo", "wheel", "admin"],
      useSudo: false,
      ignore: [],
      terminateSessions: false,
    });
  });

  it("names each bad field", () => {
    const problems = optionProblems({
      hostKey: "MD5:aa:bb",
      privilegedGroups: ["ok", "bad name"],
      ignore: "root",
      useSudo: "yes",
      terminateSessions: 1,
      extra: true,
    });
    expect(problems.join("\n")).toMatch(/options\.extra is not an ssh-host option/);
    expect(problems.join("\n")).toMatch(/options\.hostKey must be a SHA-256 fingerprint/);
    expect(problems.join("\n")).toMatch(/options\.privilegedGroups\[1\]/);
    expect(problems.join("\n")).toMatch(/options\.ignore must be a list/);
    expect(problems.join("\n")).toMatch(/options\.useSudo must be true or false/);
    expect(problems.join("\n")).toMatch(/options\.terminateSessions must be true or false/);
  });
});

describe("address", () => {
  it.each([
    ["ssh://root@10.0.0.5", { user: "root", host: "10.0.0.5", port: 22 }],
    ["ssh://stint@db1.example.com:2222", { user: "stint", host: "db1.example.com", port: 2222 }],
    ["ssh://admin@[::1]:22/", { user: "admin", host: "::1", port: 22 }],
  ])("%s", (address, expected) => {
    expect(parseAddress(address)).toEqual(expected);
  });

  it.each(["root@host", "http://root@host", "ssh://host", "ssh://root@host/path", "ssh://ro%20ot@host"])(
    "rejects %s",
    (address) => {
      expect(parseAddress(address)).toHaveProperty("problem");
    },
  );

  it("rejects a password without repeating it", () => {
    const result = parseAddress("ssh://root:hunter2@host");
    expect(result).toHaveProperty("problem");
    expect(JSON.stringify(result)).not.toContain("hunter2");
  });
});

describe("shell quoting", () => {
  it("a POSIX shell gets back exactly the word", () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(..."a-'\"\\$`!*?;&|(){}[]<>~# \t\né") }), (word) => {
        const echoed = execFileSync("/bin/sh", ["-c", `printf %s ${shellQuote(word)}`]).toString();
        expect(echoed).toBe(word);
      }),
      { numRuns: 60 },
    );
  });

  it("builds commands with and without sudo", () => {
    expect(buildCommand(["gpasswd", "-a", "alice", "dev's"], false)).toBe(
      `LC_ALL=C 'gpasswd' '-a' 'alice' 'dev'\\''s'`,
    );
    expect(buildCommand(["id", "-u"], true)).toBe("LC_ALL=C sudo -n 'id' '-u'");
  });

  it("fingerprints a digest as ssh-keygen does", () => {
    const hex = Buffer.from("wPsS+KvO79FdhYmysXSVc9JsCV6rvv/8J6Ri0YhUt6E", "base64").toString("hex");
    expect(fingerprintFromHex(hex)).toBe(HOST_KEY);
  });
});

describe("getent", () => {
  const groups = parseGroups("sudo:x:27:alice,bob\nops:x:1005:\nbroken\n");
  const users = parsePasswd(
    "root:x:0:0:root:/root:/bin/bash\ncarol:x:1003:1005::/home/carol:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\n",
  );

  it("parses groups and passwd", () => {
    expect(groups).toEqual([
      { name: "sudo", gid: 27, members: ["alice", "bob"] },
      { name: "ops", gid: 1005, members: [] },
    ]);
    expect(users.map((user) => user.login)).toEqual(["root", "carol", "alice"]);
  });

  it("counts primary members apart", () => {
    expect(groupHolders(groups[1]!, users)).toEqual({ members: [], primary: ["carol"] });
  });
});

describe("sudoers", () => {
  const grep = [
    "/etc/sudoers\0# a comment",
    "/etc/sudoers\0Defaults\tenv_reset",
    "/etc/sudoers\0Defaults:alice !requiretty",
    "/etc/sudoers\0root\tALL=(ALL:ALL) ALL",
    "/etc/sudoers\0%sudo   ALL=(ALL:ALL) ALL",
    "/etc/sudoers\0@includedir /etc/sudoers.d",
    "/etc/sudoers\0#includedir /etc/sudoers.d",
    "/etc/sudoers.d/ops\0User_Alias OPS = dave, %ops, #1003",
    "/etc/sudoers.d/ops\0Cmnd_Alias RESTART = /bin/systemctl restart *",
    "/etc/sudoers.d/ops\0OPS ALL = (root) NOPASSWD: RESTART",
    "/etc/sudoers.d/ops\0alice, bob ALL=(ALL) \\",
    "/etc/sudoers.d/ops\0    /usr/bin/less   # trailing comment",
    "/etc/sudoers.d/ops\0#1001 ALL=(ALL) /bin/true",
    "/etc/sudoers.d/ops\0!mallory, +netgroup, %:AdGroup ALL=(ALL) ALL",
    "/etc/sudoers.d/old.bak\0eve ALL=(ALL) ALL",
    "/etc/sudoers.d/tmp~\0eve ALL=(ALL) ALL",
    "",
  ].join("\n");
  const files = splitSudoersFiles(grep);

  it("skips the files sudo skips", () => {
    expect([...files.keys()]).toEqual(["/etc/sudoers", "/etc/sudoers.d/ops"]);
  });

  it("keeps user specifications and user aliases only", () => {
    const parsed = parseSudoers([...files.values()].flat());
    expect(parsed.rules.map((rule) => rule.line)).toEqual([
      "root ALL=(ALL:ALL) ALL",
      "%sudo ALL=(ALL:ALL) ALL",
      "OPS ALL = (root) NOPASSWD: RESTART",
      "alice, bob ALL=(ALL) /usr/bin/less",
      "#1001 ALL=(ALL) /bin/true",
      "!mallory, +netgroup, %:AdGroup ALL=(ALL) ALL",
    ]);
    expect(parsed.userAliases.get("OPS")).toEqual(["dave", "%ops", "#1003"]);
    expect(sudoersGroups(parsed)).toEqual(["ops", "sudo"]);
  });

  it("expands groups, uids and aliases to logins", () => {
    const parsed = parseSudoers([...files.values()].flat());
    const holders = sudoersHolders(parsed, {
      users: parsePasswd(
        "root:x:0:0::/root:/bin/bash\nalice:x:1001:1001::/:/bin/sh\ncarol:x:1003:1003::/:/bin/sh\nfrank:x:1004:1005::/:/bin/sh\n",
      ),
      groups: parseGroups("sudo:x:27:alice\nops:x:1005:gina\n"),
    });
    expect(holders).toEqual([
      { login: "root", line: "root ALL=(ALL:ALL) ALL" },
      { login: "alice", line: "%sudo ALL=(ALL:ALL) ALL" },
      { login: "dave", line: "OPS ALL = (root) NOPASSWD: RESTART" },
      { login: "gina", line: "OPS ALL = (root) NOPASSWD: RESTART" },
      { login: "frank", line: "OPS ALL = (root) NOPASSWD: RESTART" },
      { login: "carol", line: "OPS ALL = (root) NOPASSWD: RESTART" },
      { login: "alice", line: "alice, bob ALL=(ALL) /usr/bin/less" },
      { login: "bob", line: "alice, bob ALL=(ALL) /usr/bin/less" },
      { login: "alice", line: "#1001 ALL=(ALL) /bin/true" },
    ]);
  });
});

describe("lastlog", () => {
  it("reads dates and never-logged-in", () => {
    const seen = parseLastlog(
      [
        "Username         Port     From                                       Latest",
        "root                                                                **Never logged in**",
        "Username         Port     From                                       Latest",
        "alice            pts/0    192.0.2.7                                 Tue May  5 10:11:12 +0200 2026",
      ].join("\n"),
    );
    expect(seen.get("root")).toBeNull();
    expect(seen.get("alice")).toBe("2026-05-05T08:11:12.000Z");
  });
});

describe("batches", () => {
  const marker = "m0a1b2c3d4e5f6a7b8";

  it("a real sh splits back into each command's output and status", () => {
    const commands = [
      buildCommand(["printf", "%s", "no newline"], false),
      buildCommand(["sh", "-c", "echo out; echo err >&2; exit 3"], false),
      buildCommand(["true"], false),
      buildCommand(["printf", "two\\nlines\\n\\n"], false),
    ];
    const script = buildBatch(commands, marker);
    const run = spawnSync("/bin/sh", ["-c", script]);
    expect(splitBatch(run.stdout.toString(), run.stderr.toString(), marker, commands.length)).toEqual([
      { code: 0, stdout: "no newline", stderr: "" },
      { code: 3, stdout: "out\n", stderr: "err\n" },
      { code: 0, stdout: "", stderr: "" },
      { code: 0, stdout: "two\nlines\n\n", stderr: "" },
    ]);
  });

  it("reports fewer results when the script stops early", () => {
    const script = buildBatch([buildCommand(["true"], false), "exit 7", buildCommand(["true"], false)], marker);
    const run = spawnSync("/bin/sh", ["-c", script]);
    expect(splitBatch(run.stdout.toString(), run.stderr.toString(), marker, 3)).toHaveLength(1);
  });
});
