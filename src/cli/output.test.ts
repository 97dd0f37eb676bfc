import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ERROR_CODES } from "../lib/errors.js";
import type { CliContext } from "./context.js";
import { CliError, EXIT_CODES, exitCodeFor } from "./exit-codes.js";
import { formatError, renderKeyValues, renderTable, reportError, sanitize } from "./output.js";

function captureContext(): { ctx: CliContext; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  const ctx = {
    stdout: { write: (text: string | Uint8Array) => out.push(String(text)) > 0 },
    stderr: { write: (text: string | Uint8Array) => err.push(String(text)) > 0 },
    env: {},
  } as unknown as CliContext;
  return { ctx, out, err };
}

describe("exit codes", () => {
  it("are the documented numbers", () => {
    expect(EXIT_CODES).toEqual({
      ok: 0,
      unexpected: 1,
      usage: 2,
      auditBroken: 3,
      unauthenticated: 4,
      forbidden: 5,
      notFound: 6,
      conflict: 7,
      unreachable: 8,
      notHeld: 9,
      interrupted: 130,
    });
  });

  it.each([
    ["VALIDATION_FAILED", 2],
    ["WEAK_PASSWORD", 2],
    ["CONFIG_INVALID", 2],
    ["USAGE", 2],
    ["AUDIT_CHAIN_BROKEN", 3],
    ["UNAUTHENTICATED", 4],
    ["INVALID_CREDENTIALS", 4],
    ["MFA_REQUIRED", 4],
    ["MFA_INVALID", 4],
    ["TOKEN_EXPIRED", 4],
    ["FORBIDDEN", 5],
    ["NOT_FOUND", 6],
    ["ALREADY_EXISTS", 7],
    ["CONFLICT", 7],
    ["SERVER_UNREACHABLE", 8],
    ["UNAVAILABLE", 8],
    ["INTERNAL", 1],
    ["BAD_RESPONSE", 1],
  ] as const)("%s → %i", (code, exit) => {
    expect(exitCodeFor(code)).toBe(exit);
  });

  it("fall back to the HTTP status for codes this CLI does not know", () => {
    expect(exitCodeFor("SOMETHING_NEW", 400)).toBe(2);
    expect(exitCodeFor("SOMETHING_NEW", 401)).toBe(4);
    expect(exitCodeFor("SOMETHING_NEW", 403)).toBe(5);
    expect(exitCodeFor("SOMETHING_NEW", 404)).toBe(6);
    expect(exitCodeFor("SOMETHING_NEW", 409)).toBe(7);
    expect(exitCodeFor("HTTP_502", 502)).toBe(8);
    expect(exitCodeFor("SOMETHING_NEW", 500)).toBe(1);
    expect(exitCodeFor("SOMETHING_NEW")).toBe(1);
  });

  it("map every code of the server's registry consistently with its status class", () => {
    for (const [code, { status }] of Object.entries(ERROR_CODES)) {
      const exit = exitCodeFor(code, status);
      if (status === 401) expect(exit, code).toBe(EXIT_CODES.unauthenticated);
      if (status === 404) expect(exit, code).toBe(EXIT_CODES.notFound);
      if (status === 409) expect(exit, code).toBe(EXIT_CODES.conflict);
      if (status >= 500) expect([EXIT_CODES.unexpected, EXIT_CODES.unreachable], code).toContain(exit);
    }
  });

  it("are all documented in docs/cli.md", () => {
    const docs = readFileSync(new URL("../../docs/cli.md", import.meta.url), "utf8");
    for (const exit of Object.values(EXIT_CODES)) {
      expect(docs, `exit code ${exit}`).toMatch(new RegExp(`^\\| ${exit} \\|`, "m"));
    }
  });
});

describe("error output", () => {
  it("is one line `error: CODE: message` on stderr, with the envelope on stdout under --json", () => {
    const error = new CliError("MFA_REQUIRED", "A one-time code is required.", { status: 401 });
    expect(formatError(error)).toBe("error: MFA_REQUIRED: A one-time code is required.\n");

    const plain = captureContext();
    expect(reportError(plain.ctx, false, error)).toBe(4);
    expect(plain.out).toEqual([]);
    expect(plain.err.join("")).toBe("error: MFA_REQUIRED: A one-time code is required.\n");

    const json = captureContext();
    expect(reportError(json.ctx, true, error)).toBe(4);
    expect(JSON.parse(json.out.join(""))).toEqual({
      error: { code: "MFA_REQUIRED", message: "A one-time code is required." },
    });
  });

  it("turns unknown throwables into UNEXPECTED (exit 1) without a stack trace", () => {
    const { ctx, err } = captureContext();
    expect(reportError(ctx, false, new TypeError("boom"))).toBe(1);
    expect(err.join("")).toBe("error: UNEXPECTED: boom\n");
  });

  it("prints nothing more for an error the command already reported", () => {
    const { ctx, out, err } = captureContext();
    const exit = reportError(ctx, true, new CliError("AUDIT_CHAIN_BROKEN", "x", { reported: true }));
    expect(exit).toBe(3);
    expect([...out, ...err]).toEqual([]);
  });

  it("strips terminal control characters from server text", () => {
    expect(sanitize("evil\u001b[2Jname\u0007\ttab\nline")).toBe("evil?[2Jname? tab line");
    expect(formatError(new CliError("X", "a\u001b]0;title\u0007b"))).toBe("error: X: a?]0;title?b\n");
  });
});

describe("human output", () => {
  it("aligns tables and shows empty values as -", () => {
    const rows = [
      { name: "alice", roles: ["admin", "user"], email: null },
      { name: "deploy-bot", roles: [], email: "d@example.com" },
    ];
    const table = renderTable(
      [
        { header: "NAME", value: (row: (typeof rows)[number]) => row.name },
        { header: "ROLES", value: (row: (typeof rows)[number]) => row.roles },
        { header: "EMAIL", value: (row: (typeof rows)[number]) => row.email },
      ],
      rows,
    );
    expect(table).toBe(
      ["NAME        ROLES       EMAIL", "alice       admin,user  -", "deploy-bot  -           d@example.com", ""].join(
        "\n",
      ),
    );
  });

  it("renders key/value blocks", () => {
    expect(
      renderKeyValues([
        ["name", "alice"],
        ["mfa", true],
        ["email", undefined],
      ]),
    ).toBe("name:   alice\nmfa:    yes\nemail:  -\n");
  });
});
