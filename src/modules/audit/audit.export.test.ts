import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  cefHeaderEscape,
  cefValueEscape,
  EXPORT_FORMATS,
  formatAnchor,
  formatEvent,
  humanLabel,
  ocsfClassOf,
  toCef,
  toJsonl,
  toOcsf,
} from "./audit.export.js";
import { auditAnchor } from "../../contract/audit.js";
import type { AuditAnchor, AuditEvent } from "./audit.types.js";

/** A minimal event: every nullable field null, so each case below adds only what it tests. */
const base: AuditEvent = {
  seq: 7,
  id: "0190d000-0000-7000-8000-00000000000a",
  time: "2026-03-01T09:00:00.000Z",
  actor: "alice",
  actorId: null,
  action: "user.create",
  subject: null,
  outcome: "success",
  reason: null,
  correlationId: null,
  sourceIp: null,
  userAgent: null,
  details: {},
  prevHash: "p6",
  hash: "h7",
};

const full: AuditEvent = {
  ...base,
  actorId: "0190d000-0000-7000-8000-000000000001",
  subject: "user:bob",
  outcome: "denied",
  reason: "outside the activation window",
  correlationId: "req-1",
  sourceIp: "192.0.2.10",
  userAgent: "stint-cli/0.1.0",
  details: { role: "db-admin" },
};

/** The extension every line of `base` ends with. */
const TAIL =
  "externalId=7 cs1=h7 cs1Label=hash cs4=0190d000-0000-7000-8000-00000000000a cs4Label=eventId cs5=p6 cs5Label=prevHash";

// ------------------------------------------------------------ a test-only CEF parser

function unescapeHeader(field: string): string {
  return field.replace(/\\([\\|])/g, "$1");
}

function unescapeValue(raw: string): string {
  return raw.replace(/\\(.)/gs, (_, c: string) => {
    if (c === "n") return "\n";
    if (c === "r") return "\r";
    if (c === "\\" || c === "=") return c;
    throw new Error(`bad escape \\${c} in ${JSON.stringify(raw)}`);
  });
}

/** Splits a CEF line into 7 header fields and the extension (pipes escaped with a backslash do not split). */
function parseCef(line: string): { header: string[]; extension: Map<string, string> } {
  const header: string[] = [];
  let start = 0;
  for (let i = 0; i < line.length && header.length < 7; i++) {
    if (line[i] === "\\") i++;
    else if (line[i] === "|") {
      header.push(unescapeHeader(line.slice(start, i)));
      start = i + 1;
    }
  }
  if (header.length !== 7) throw new Error(`not a CEF line: ${line}`);
  return { header, extension: parseExtension(line.slice(start)) };
}

/**
 * `key=value` pairs separated by one space. A value cannot hold an unescaped
 * `=`, so each unescaped `=` ends a key, and the key starts after the last
 * space before it.
 */
function parseExtension(text: string): Map<string, string> {
  const equals: number[] = [];
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "\\") i++;
    else if (text[i] === "=") equals.push(i);
  }
  const keys = equals.map((eq, k) => {
    const from = k === 0 ? 0 : text.lastIndexOf(" ", eq) + 1;
    if (k > 0 && from <= equals[k - 1]!) throw new Error(`no key before = at ${eq}`);
    return { key: text.slice(from, eq), from, eq };
  });
  const result = new Map<string, string>();
  keys.forEach(({ key, eq }, k) => {
    if (!/^[A-Za-z0-9]+$/.test(key)) throw new Error(`bad key ${JSON.stringify(key)}`);
    if (result.has(key)) throw new Error(`duplicate key ${key}`);
    const end = k + 1 < keys.length ? keys[k + 1]!.from - 1 : text.length;
    result.set(key, unescapeValue(text.slice(eq + 1, end)));
  });
  return result;
}

// ------------------------------------------------------------ CEF

/** Strings dense in the characters CEF escapes, and in those that could be mistaken for escapes. */
const cefNasty = fc.string({ unit: fc.constantFrom("\\", "=", "|", "\n", "\r", " ", "a", "n", "r", "é") });
const anyText = fc.oneof(fc.string({ unit: "binary" }), fc.string({ unit: "grapheme" }), cefNasty);

describe("CEF", () => {
  it.each([
    ["backslash", "a\\b", "a\\\\b"],
    ["pipe", "a|b", "a\\|b"],
    ["both, backslash before pipe", "\\|", "\\\\\\|"],
    ["equals is not escaped in the header", "a=b", "a=b"],
    ["LF becomes a space", "a\nb", "a b"],
    ["CRLF becomes one space", "a\r\nb", "a b"],
    ["lone CR becomes a space", "a\rb", "a b"],
  ])("header escape: %s", (_, input, expected) => {
    expect(cefHeaderEscape(input)).toBe(expected);
  });

  it.each([
    ["backslash", "a\\b", "a\\\\b"],
    ["equals", "a=b", "a\\=b"],
    ["pipe is not escaped in the extension", "a|b", "a|b"],
    ["LF", "a\nb", "a\\nb"],
    ["CR", "a\rb", "a\\rb"],
    ["CRLF", "a\r\nb", "a\\r\\nb"],
    ["a literal backslash-n stays two characters", "a\\nb", "a\\\\nb"],
    ["backslash before equals", "\\=", "\\\\\\="],
  ])("extension escape: %s", (_, input, expected) => {
    expect(cefValueEscape(input)).toBe(expected);
  });

  it.each<[string, Partial<AuditEvent>, string]>([
    [
      "minimal event",
      {},
      `CEF:0|Stint|Stint|1.2.3|user.create|User create|3|rt=1772355600000 suser=alice outcome=success ${TAIL}`,
    ],
    [
      "reason with pipe, backslash, equals and newlines",
      { outcome: "failed", reason: "a|b\\c=d\r\ne" },
      `CEF:0|Stint|Stint|1.2.3|user.create|User create|7|rt=1772355600000 suser=alice outcome=failed msg=a|b\\\\c\\=d\\r\\ne ${TAIL}`,
    ],
    [
      "subject with equals, pipe and newline",
      { subject: "thing:x=1|y\nz" },
      `CEF:0|Stint|Stint|1.2.3|user.create|User create|3|rt=1772355600000 suser=alice outcome=success ${TAIL.replace(
        " cs4=",
        " cs2=thing:x\\=1|y\\nz cs2Label=subject cs4=",
      )}`,
    ],
    [
      "user subject also fills duser",
      { subject: "user:b=b" },
      `CEF:0|Stint|Stint|1.2.3|user.create|User create|3|rt=1772355600000 suser=alice duser=b\\=b outcome=success ${TAIL.replace(
        " cs4=",
        " cs2=user:b\\=b cs2Label=subject cs4=",
      )}`,
    ],
    [
      "action with pipe and backslash is escaped in signature id and name",
      { action: "odd|act\\ion", outcome: "denied" },
      `CEF:0|Stint|Stint|1.2.3|odd\\|act\\\\ion|Odd\\|act\\\\ion|5|rt=1772355600000 suser=alice outcome=denied ${TAIL}`,
    ],
    [
      "action with a newline keeps the header on one line",
      { action: "a.b\nc" },
      `CEF:0|Stint|Stint|1.2.3|a.b c|A b c|3|rt=1772355600000 suser=alice outcome=success ${TAIL}`,
    ],
    [
      "actor with spaces and equals",
      { actor: "system:x = y" },
      `CEF:0|Stint|Stint|1.2.3|user.create|User create|3|rt=1772355600000 suser=system:x \\= y outcome=success ${TAIL}`,
    ],
    [
      "IPv4-mapped IPv6 source goes to src as IPv4",
      { sourceIp: "::ffff:10.0.0.1" },
      `CEF:0|Stint|Stint|1.2.3|user.create|User create|3|rt=1772355600000 suser=alice src=10.0.0.1 outcome=success ${TAIL}`,
    ],
    [
      "IPv6 source goes to c6a2",
      { sourceIp: "2001:db8::1" },
      `CEF:0|Stint|Stint|1.2.3|user.create|User create|3|rt=1772355600000 suser=alice c6a2=2001:db8::1 c6a2Label=Source IPv6 Address outcome=success ${TAIL}`,
    ],
    [
      "details as JSON, escaped",
      { details: { k: "a=b", path: "c:\\d" } },
      `CEF:0|Stint|Stint|1.2.3|user.create|User create|3|rt=1772355600000 suser=alice outcome=success ${TAIL} cs6={"k":"a\\=b","path":"c:\\\\\\\\d"} cs6Label=details`,
    ],
  ])("byte-exact line: %s", (_, change, expected) => {
    expect(toCef({ ...base, ...change }, "1.2.3")).toBe(expected);
  });

  it("a full event maps every field", () => {
    expect(toCef(full, "1.2.3")).toBe(
      "CEF:0|Stint|Stint|1.2.3|user.create|User create|5|rt=1772355600000 suser=alice suid=0190d000-0000-7000-8000-000000000001 " +
        "duser=bob src=192.0.2.10 requestClientApplication=stint-cli/0.1.0 outcome=denied msg=outside the activation window " +
        "externalId=7 cs1=h7 cs1Label=hash cs2=user:bob cs2Label=subject cs3=req-1 cs3Label=correlationId " +
        "cs4=0190d000-0000-7000-8000-00000000000a cs4Label=eventId cs5=p6 cs5Label=prevHash " +
        'cs6={"role":"db-admin"} cs6Label=details',
    );
  });

  it("the device version comes from the caller and is header-escaped", () => {
    expect(toCef(base, "1.0|rc\\1")).toMatch(/^CEF:0\|Stint\|Stint\|1\.0\\\|rc\\\\1\|user\.create\|/);
    expect(toCef(base)).toMatch(/^CEF:0\|Stint\|Stint\|unknown\|/);
  });

  it("the test parser reads back every value of a full event", () => {
    const { header, extension } = parseCef(toCef(full, "1.2.3"));
    expect(header).toEqual(["CEF:0", "Stint", "Stint", "1.2.3", "user.create", "User create", "5"]);
    expect(Object.fromEntries(extension)).toMatchObject({
      rt: "1772355600000",
      suser: "alice",
      msg: "outside the activation window",
      cs2: "user:bob",
      cs6: '{"role":"db-admin"}',
    });
  });

  it("any reason gives one line whose msg parses back to the reason", () => {
    fc.assert(
      fc.property(anyText, (reason) => {
        const line = toCef({ ...base, reason }, "1.2.3");
        expect(line).not.toMatch(/[\r\n]/);
        expect(parseCef(line).extension.get("msg")).toBe(reason);
      }),
      { numRuns: 500 },
    );
  });

  it("the characters CEF cares about, densely: every text field round-trips", () => {
    fc.assert(
      fc.property(cefNasty, cefNasty, cefNasty, cefNasty, cefNasty, (reason, subject, actor, userAgent, action) => {
        const event = { ...base, reason, subject, actor, userAgent, action };
        const line = toCef(event, "1.2.3");
        expect(line).not.toMatch(/[\r\n]/);
        const { header, extension } = parseCef(line);
        expect(header[4]).toBe(action.replace(/\r\n|[\r\n]/g, " "));
        expect(extension.get("msg")).toBe(reason);
        expect(extension.get("cs2")).toBe(subject);
        expect(extension.get("suser")).toBe(actor);
        expect(extension.get("requestClientApplication")).toBe(userAgent);
        expect(extension.get("cs1")).toBe("h7");
      }),
      { numRuns: 500 },
    );
  });
});

// ------------------------------------------------------------ OCSF

describe("OCSF", () => {
  it.each<[string, number, number, number, string]>([
    // action, category_uid, class_uid, activity_id, type_name
    ["auth.login", 3, 3002, 1, "Authentication: Logon"],
    ["auth.logout", 3, 3002, 2, "Authentication: Logoff"],
    ["auth.mfa_verify", 3, 3002, 99, "Authentication: Other"],
    ["session.start", 3, 3002, 1, "Authentication: Logon"],
    ["session.end", 3, 3002, 2, "Authentication: Logoff"],
    ["session.login", 3, 3002, 1, "Authentication: Logon"],
    ["user.create", 3, 3001, 1, "Account Change: Create"],
    ["user.disable", 3, 3001, 5, "Account Change: Disable"],
    ["user.password_reset", 3, 3001, 4, "Account Change: Password Reset"],
    ["user.lock", 3, 3001, 9, "Account Change: Lock"],
    ["group.delete", 3, 3001, 6, "Account Change: Delete"],
    ["group.add_member", 3, 3001, 99, "Account Change: Other"],
    ["token.create", 3, 3001, 1, "Account Change: Create"],
    ["token.revoke", 3, 3001, 99, "Account Change: Other"],
    ["mfa.enroll", 3, 3001, 10, "Account Change: MFA Factor Enable"],
    ["mfa.remove", 3, 3001, 11, "Account Change: MFA Factor Disable"],
    ["role.create", 6, 6003, 1, "API Activity: Create"],
    ["policy.update", 6, 6003, 3, "API Activity: Update"],
    ["target.delete", 6, 6003, 4, "API Activity: Delete"],
    ["audit.export", 6, 6003, 2, "API Activity: Read"],
    ["activation.approve", 6, 6003, 99, "API Activity: Other"],
    ["users.create", 6, 6003, 1, "API Activity: Create"],
    ["authz.check", 6, 6003, 99, "API Activity: Other"],
    ["login", 6, 6003, 99, "API Activity: Other"],
    ["AUTH.LOGIN", 3, 3002, 1, "Authentication: Logon"],
    ["constructor.toString", 6, 6003, 99, "API Activity: Other"],
  ])("%s → category %i, class %i, activity %i (%s)", (action, categoryUid, classUid, activityId, typeName) => {
    const cls = ocsfClassOf(action);
    expect({ categoryUid: cls.categoryUid, classUid: cls.classUid, activityId: cls.activityId }).toEqual({
      categoryUid,
      classUid,
      activityId,
    });
    const ocsf = toOcsf({ ...base, action });
    expect(ocsf).toMatchObject({
      category_uid: categoryUid,
      class_uid: classUid,
      activity_id: activityId,
      type_uid: classUid * 100 + activityId,
      type_name: typeName,
    });
  });

  it("maps a full event", () => {
    expect(toOcsf({ ...full, action: "auth.login", outcome: "failed" }, "1.2.3")).toEqual({
      category_uid: 3,
      category_name: "Identity & Access Management",
      class_uid: 3002,
      class_name: "Authentication",
      activity_id: 1,
      activity_name: "Logon",
      type_uid: 300201,
      type_name: "Authentication: Logon",
      time: 1772355600000,
      severity_id: 4,
      severity: "High",
      status_id: 2,
      status: "Failure",
      status_detail: "failed",
      message: "outside the activation window",
      actor: { user: { name: "alice", uid: "0190d000-0000-7000-8000-000000000001" } },
      user: { name: "bob" },
      src_endpoint: { ip: "192.0.2.10" },
      http_request: { user_agent: "stint-cli/0.1.0" },
      metadata: {
        version: "1.1.0",
        product: { name: "Stint", vendor_name: "Stint", version: "1.2.3" },
        uid: "0190d000-0000-7000-8000-00000000000a",
        correlation_uid: "req-1",
      },
      unmapped: {
        seq: 7,
        action: "auth.login",
        hash: "h7",
        prev_hash: "p6",
        subject: "user:bob",
        details: { role: "db-admin" },
      },
    });
  });

  it("API Activity carries api and a src_endpoint even for internal events; absent fields are left out", () => {
    const ocsf = toOcsf({ ...base, action: "grant.revoke", actor: "system:scheduler" });
    expect(ocsf.api).toEqual({ operation: "grant.revoke", service: { name: "Stint" } });
    expect(ocsf.src_endpoint).toEqual({ name: "stint" });
    expect(ocsf.user).toBeUndefined();
    expect(ocsf.actor).toEqual({ user: { name: "system:scheduler" } });
    for (const key of ["message", "http_request"]) expect(ocsf).not.toHaveProperty(key);
    expect(ocsf.metadata).toEqual({
      version: "1.1.0",
      product: { name: "Stint", vendor_name: "Stint" },
      uid: base.id,
    });
  });

  it("Account Change names the subject's user, or the actor when the subject is no user", () => {
    expect(toOcsf({ ...base, subject: "principal:abc" }).user).toEqual({ uid: "abc" });
    expect(toOcsf({ ...base, action: "token.create", subject: "token:t1" }).user).toEqual({ name: "alice" });
  });

  it.each([
    ["success", 1, "Informational", 1, "Success"],
    ["denied", 3, "Medium", 2, "Failure"],
    ["failed", 4, "High", 2, "Failure"],
  ] as const)("outcome %s → severity %i (%s), status %i (%s)", (outcome, severityId, severity, statusId, status) => {
    expect(toOcsf({ ...base, outcome })).toMatchObject({
      severity_id: severityId,
      severity,
      status_id: statusId,
      status,
      status_detail: outcome,
    });
  });
});

// ------------------------------------------------------------ JSON lines and formatEvent

const eventArbitrary: fc.Arbitrary<AuditEvent> = fc.record({
  seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  id: fc.uuid(),
  time: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
  actor: fc.string({ unit: "binary" }),
  actorId: fc.option(fc.uuid()),
  action: fc.string({ unit: "binary" }),
  subject: fc.option(fc.string({ unit: "binary" })),
  outcome: fc.constantFrom("success", "denied", "failed"),
  reason: fc.option(fc.string({ unit: "binary" })),
  correlationId: fc.option(fc.string()),
  sourceIp: fc.option(fc.oneof(fc.ipV4(), fc.ipV6())),
  userAgent: fc.option(fc.string({ unit: "binary" })),
  // Details are stored as JSON, where -0 is 0: generate values that JSON can carry unchanged.
  details: fc.dictionary(
    fc.string(),
    fc.jsonValue().map((v) => JSON.parse(JSON.stringify(v)) as unknown),
  ) as fc.Arbitrary<Record<string, unknown>>,
  prevHash: fc.stringMatching(/^[0-9a-f]{64}$/),
  hash: fc.stringMatching(/^[0-9a-f]{64}$/),
});

describe("JSON lines", () => {
  it("round-trips an event with its camelCase fields in declaration order", () => {
    const line = toJsonl(full);
    expect(JSON.parse(line)).toEqual(full);
    expect(Object.keys(JSON.parse(line) as object)).toEqual([
      "seq",
      "id",
      "time",
      "actor",
      "actorId",
      "action",
      "subject",
      "outcome",
      "reason",
      "correlationId",
      "sourceIp",
      "userAgent",
      "details",
      "prevHash",
      "hash",
    ]);
  });

  it("leaves out properties that are not event fields", () => {
    const withExtra = { ...base, extra: "x" } as AuditEvent;
    expect(JSON.parse(toJsonl(withExtra))).toEqual(base);
  });

  it("any event is one line and parses back to itself", () => {
    fc.assert(
      fc.property(eventArbitrary, (event) => {
        const line = toJsonl(event);
        expect(line).not.toMatch(/[\r\n]/);
        expect(JSON.parse(line)).toEqual(event);
      }),
    );
  });
});

describe("formatEvent", () => {
  it("gives one line in every format for any event", () => {
    fc.assert(
      fc.property(eventArbitrary, fc.constantFrom(...EXPORT_FORMATS), (event, format) => {
        const line = formatEvent(format, event, { productVersion: "1.2.3" });
        expect(line).not.toMatch(/[\r\n]/);
        if (format === "ocsf") expect(JSON.parse(line)).toEqual(toOcsf(event, "1.2.3"));
        if (format === "jsonl") expect(line).toBe(toJsonl(event));
        if (format === "cef") expect(line).toBe(toCef(event, "1.2.3"));
      }),
    );
  });

  it("labels actions for humans", () => {
    expect(humanLabel("activation.approve")).toBe("Activation approve");
    expect(humanLabel("auth.mfa_verify")).toBe("Auth mfa verify");
    expect(humanLabel("...")).toBe("...");
  });
});

describe("signed heads in the stream", () => {
  const anchor: AuditAnchor = {
    format: "stint-audit-anchor/v1",
    seq: 2000,
    hash: "ab".repeat(32),
    every: 1000,
    time: "2026-03-01T09:00:00.000Z",
    keyId: "audit-k1",
    signature: "c2lnbmF0dXJlLW9mLXRoZS1oZWFk",
  };

  it("a JSON line is the anchor itself, fields in order, readable as an anchor file", () => {
    const line = formatAnchor("jsonl", { ...anchor, extra: "left out" } as AuditAnchor);
    expect(Object.keys(JSON.parse(line) as object)).toEqual([
      "format",
      "seq",
      "hash",
      "every",
      "time",
      "keyId",
      "signature",
    ]);
    expect(auditAnchor.parse(JSON.parse(line))).toEqual(anchor);
  });

  it("CEF carries every field and the anchor whole", () => {
    const { header, extension } = parseCef(formatAnchor("cef", anchor, { productVersion: "1.2.3" }));
    expect(header).toEqual(["CEF:0", "Stint", "Stint", "1.2.3", "audit.checkpoint", "Audit checkpoint", "1"]);
    expect(extension.get("externalId")).toBe("2000");
    expect(extension.get("cs1")).toBe(anchor.hash);
    expect(extension.get("cs4")).toBe(anchor.keyId);
    expect(extension.get("cs5")).toBe(anchor.signature);
    expect(extension.get("cn1")).toBe("1000");
    expect(extension.get("rt")).toBe(String(Date.parse(anchor.time)));
    expect(JSON.parse(extension.get("cs6")!)).toEqual(anchor);
  });

  it("OCSF is an API Activity with the anchor in unmapped; every format is one line", () => {
    const ocsf = JSON.parse(formatAnchor("ocsf", anchor)) as Record<string, unknown>;
    expect(ocsf).toMatchObject({
      class_uid: 6003,
      activity_id: 99,
      type_uid: 600399,
      api: { operation: "audit.checkpoint" },
      metadata: { uid: "checkpoint-2000" },
      unmapped: { anchor },
    });
    for (const format of EXPORT_FORMATS) expect(formatAnchor(format, anchor)).not.toMatch(/[\r\n]/);
  });
});
