import { describe, expect, it } from "vitest";
import {
  checkAddress,
  checkEntitlement,
  checkLogin,
  checkOptions,
  checkSecret,
  classifyStatus,
  cleanMessage,
  errorMessage,
  operationKey,
  parseAccounts,
  parseHolders,
  parseTestDetail,
  requestBody,
  timeoutMs,
} from "./webhook.rules.js";

describe("checkAddress", () => {
  it.each([
    "https://hooks.example.com/stint",
    "https://hooks.example.com:8443/stint?tenant=acme",
    "http://127.0.0.1:8080/hook",
    "http://127.1.2.3/hook",
    "http://localhost:3000/",
    "http://[::1]:9000/hook",
  ])("accepts %s", (address) => {
    expect(checkAddress(address)).toEqual([]);
  });

  it.each([
    ["http://hooks.example.com/stint", "must use https"],
    ["http://10.0.0.5/hook", "must use https"],
    ["http://127.0.0.1.example.com/hook", "must use https"],
    ["ftp://hooks.example.com/", "must start with https://"],
    ["https://stint:hunter2@hooks.example.com/", "must not contain a user or password"],
    ["https://hooks.example.com/#x", "#fragment"],
    ["https://hooks.example.com:587/", "port 587"],
    ["hooks.example.com/stint", "must be a URL"],
  ])("refuses %s", (address, problem) => {
    const problems = checkAddress(address);
    expect(problems.join(" ")).toContain(problem);
    expect(problems.join(" ")).not.toContain("hunter2");
  });
});

describe("checkSecret", () => {
  it("requires 16 to 512 characters and never quotes the secret", () => {
    expect(checkSecret(null)[0]).toMatch(/needs `credential`/);
    expect(checkSecret("")[0]).toMatch(/needs `credential`/);
    expect(checkSecret("abc-short-secret")).toEqual([]);
    expect(checkSecret("abc-short-secre")[0]).not.toContain("abc");
    expect(checkSecret("x".repeat(513))).toHaveLength(1);
  });
});

describe("checkOptions", () => {
  it("accepts none, a timeout and extra headers", () => {
    expect(checkOptions({})).toEqual([]);
    expect(checkOptions({ timeout: "30s", headers: { "X-Api-Key": "abc 123", Authorization: "Bearer t0k" } })).toEqual(
      [],
    );
    expect(timeoutMs({})).toBe(10_000);
    expect(timeoutMs({ timeout: "2m" })).toBe(120_000);
  });

  it.each([
    [{ retries: 3 }, "options.retries is not a webhook option"],
    [{ timeout: 10 }, "options.timeout must be a duration"],
    [{ timeout: "soon" }, "options.timeout: "],
    [{ timeout: "10ms" }, "between 100ms and 5m"],
    [{ timeout: "1h" }, "between 100ms and 5m"],
    [{ headers: ["X-A"] }, "must map header names"],
    [{ headers: { "X A": "v" } }, "is not a header name"],
    [{ headers: { "Stint-Signature": "v" } }, "is set by Stint"],
    [{ headers: { "content-type": "text/plain" } }, "is set by Stint"],
    [{ headers: { "Idempotency-Key": "k" } }, "is set by Stint"],
    [{ headers: { "X-A": "a\r\nX-Injected: 1" } }, "printable ASCII on one line"],
    [{ headers: { "X-A": 5 } }, "printable ASCII on one line"],
    [{ headers: { "X-A": "" } }, "printable ASCII on one line"],
    [{ headers: { "X-A": "1", "x-a": "2" } }, "given twice"],
  ])("refuses %j", (options, problem) => {
    expect(checkOptions(options as Record<string, unknown>).join(" | ")).toContain(problem);
  });
});

describe("checkEntitlement", () => {
  it("accepts any JSON object up to 16 KiB", () => {
    expect(checkEntitlement({})).toEqual([]);
    expect(checkEntitlement({ role: "roles/viewer", scopes: ["a", 1, true, null, { x: [] }] })).toEqual([]);
    // {"b":"…"} is 8 bytes plus the string.
    expect(checkEntitlement({ b: "x".repeat(16 * 1024 - 8) })).toEqual([]);
    expect(checkEntitlement({ b: "x".repeat(16 * 1024 - 7) })[0]).toMatch(/16385 bytes/);
  });

  it("refuses what is not plain JSON", () => {
    expect(checkEntitlement([] as unknown as Record<string, unknown>)).toHaveLength(1);
    expect(checkEntitlement({ n: Number.NaN })).toHaveLength(1);
    expect(checkEntitlement({ d: new Date() })).toHaveLength(1);
    expect(checkEntitlement({ u: undefined })).toHaveLength(1);
  });
});

describe("checkLogin", () => {
  it.each(["alice", "alice@example.com", "CN=Alice Smith,OU=People", "ümlaut-ß", "x".repeat(256), "😀".repeat(256)])(
    "accepts %s",
    (login) => expect(checkLogin(login)).toEqual([]),
  );
  it.each(["", "x".repeat(257), "a\nb", "a\u0000b", "tab\there", "a\u2028b", "zero\u200bwidth", "\ud800"])(
    "refuses %j",
    (login) => expect(checkLogin(login)).toHaveLength(1),
  );
});

describe("operationKey", () => {
  it("is the same for the same change whatever the key order, and differs otherwise", () => {
    const key = operationKey("provision", "gcp", "alice", { role: "viewer", on: { project: "p", folder: "f" } });
    expect(key).toMatch(/^provision:[0-9a-f]{64}$/);
    expect(operationKey("provision", "gcp", "alice", { on: { folder: "f", project: "p" }, role: "viewer" })).toBe(key);
    for (const other of [
      operationKey("revoke", "gcp", "alice", { role: "viewer", on: { project: "p", folder: "f" } }),
      operationKey("provision", "aws", "alice", { role: "viewer", on: { project: "p", folder: "f" } }),
      operationKey("provision", "gcp", "bob", { role: "viewer", on: { project: "p", folder: "f" } }),
      operationKey("provision", "gcp", "alice", { role: "editor", on: { project: "p", folder: "f" } }),
    ])
      expect(other).not.toBe(key);
  });
});

describe("requestBody", () => {
  it("has exactly the documented fields, nulls included", () => {
    const body = requestBody({
      version: 1,
      action: "observe",
      target: "gcp",
      login: null,
      entitlement: { role: "viewer" },
      id: "observe:1",
      sentAt: "2026-03-01T09:00:00.000Z",
    });
    expect(body).toBe(
      '{"version":1,"action":"observe","target":"gcp","login":null,"entitlement":{"role":"viewer"},"id":"observe:1","sentAt":"2026-03-01T09:00:00.000Z"}',
    );
  });
});

describe("classifyStatus", () => {
  it.each([
    ["provision", 200, "", "ok"],
    ["revoke", 204, "", "ok"],
    ["provision", 400, "", "refused"],
    ["provision", 401, "", "refused"],
    ["provision", 403, "", "refused"],
    ["provision", 404, "", "refused"],
    ["provision", 409, "", "refused"],
    ["provision", 422, "", "refused"],
    ["provision", 408, "", "unavailable"],
    ["provision", 429, "", "unavailable"],
    ["provision", 500, "", "unavailable"],
    ["provision", 501, "", "refused"],
    ["provision", 502, "", "unavailable"],
    ["provision", 503, "", "unavailable"],
    ["provision", 504, "", "unavailable"],
    ["test", 301, "", "refused"],
    ["observe", 307, "", "refused"],
  ] as const)("%s answered %i is %s", (action, status, body, kind) => {
    expect(classifyStatus(action, status, body).kind).toBe(kind);
  });

  it("says what a 501 means for observe and discover", () => {
    expect(classifyStatus("observe", 501, "")).toEqual({
      kind: "refused",
      message: "the endpoint does not report holders",
    });
    expect(classifyStatus("discover", 501, "")).toEqual({
      kind: "refused",
      message: "the endpoint does not report standing access",
    });
  });

  it("quotes the endpoint's message", () => {
    expect(classifyStatus("provision", 404, '{"error":{"message":"no such group"}}')).toEqual({
      kind: "refused",
      message: "the endpoint answered 404: no such group",
    });
    expect(classifyStatus("provision", 400, "")).toEqual({ kind: "refused", message: "the endpoint answered 400" });
  });
});

describe("errorMessage and cleanMessage", () => {
  it("takes error.message from JSON, else the text, on one line and at most 300 characters", () => {
    expect(errorMessage('{"error":{"message":"role \\"x\\" does not exist"}}')).toBe('role "x" does not exist');
    expect(errorMessage('{"error":"flat"}')).toBe('{"error":"flat"}');
    expect(errorMessage("<h1>Bad\r\nGateway</h1>")).toBe("<h1>Bad Gateway</h1>");
    const long = errorMessage("y".repeat(1000));
    expect(long).toBe(`${"y".repeat(300)}…`);
    expect(cleanMessage("a\u0000\u001b[31mb\u2028c")).toBe("a [31mb c");
  });
});

describe("parseHolders", () => {
  it("returns the logins sorted and without duplicates", () => {
    expect(parseHolders('{"holders":["carol","alice","carol","bob"]}')).toEqual({
      ok: true,
      value: ["alice", "bob", "carol"],
    });
    expect(parseHolders('{"holders":[],"extra":1}')).toEqual({ ok: true, value: [] });
  });

  it.each([
    "",
    "not json",
    "[]",
    '{"holders":"alice"}',
    '{"holders":[1]}',
    '{"holders":[""]}',
    '{"holders":["a\\nb"]}',
  ])("refuses %j", (text) => {
    const result = parseHolders(text);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.message).toMatch(/^the endpoint answered with a body Stint cannot read: /);
  });
});

describe("parseAccounts", () => {
  it("fills in null entitlement and lastActivity, and normalizes times to UTC", () => {
    const result = parseAccounts(
      JSON.stringify({
        accounts: [
          { login: "alice", privilege: "Owner of project p", entitlement: { role: "owner" }, lastActivity: null },
          { login: "bob", privilege: "org admin", lastActivity: "2026-03-01T10:00:00+01:00" },
        ],
      }),
    );
    expect(result).toEqual({
      ok: true,
      value: [
        { login: "alice", privilege: "Owner of project p", entitlement: { role: "owner" }, lastActivity: null },
        { login: "bob", privilege: "org admin", entitlement: null, lastActivity: "2026-03-01T09:00:00.000Z" },
      ],
    });
  });

  it.each([
    "{}",
    '{"accounts":[{"login":"a"}]}',
    '{"accounts":[{"login":"a","privilege":"p","lastActivity":"yesterday"}]}',
    '{"accounts":[{"login":"a","privilege":"p","entitlement":[1]}]}',
    '{"accounts":[{"login":"a\\u0000","privilege":"p"}]}',
  ])("refuses %s", (text) => {
    expect(parseAccounts(text).ok).toBe(false);
  });
});

describe("parseTestDetail", () => {
  it("uses a detail string when there is one", () => {
    expect(parseTestDetail('{"detail":"bridge v2 as sa-stint@p"}')).toBe("bridge v2 as sa-stint@p");
    expect(parseTestDetail("")).toBeNull();
    expect(parseTestDetail('{"detail":5}')).toBeNull();
  });
});
