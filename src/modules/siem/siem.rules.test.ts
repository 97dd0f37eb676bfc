import { describe, expect, it } from "vitest";
import type { AuditAnchor, AuditEvent } from "../audit/audit.types.js";
import {
  BOM,
  backoffMs,
  hecAckUrl,
  hecEnvelope,
  octetCounted,
  parseHecAnswer,
  payload,
  priority,
  sdParamEscape,
  splitOctetCounted,
  streamItems,
  structuredData,
  syslogMessage,
} from "./siem.rules.js";
import type { StreamItem } from "./siem.types.js";

const EVENT: AuditEvent = {
  seq: 7,
  id: "0190d000-0000-7000-8000-00000000000a",
  time: "2026-03-01T09:00:00.123Z",
  actor: "alice",
  actorId: "0190d000-0000-7000-8000-000000000001",
  action: "user.create",
  subject: "user:bob",
  outcome: "denied",
  reason: 'said "no" \\ ] | = ok\nnext',
  correlationId: "req-1",
  sourceIp: "192.0.2.10",
  userAgent: "stint-cli/0.1.0",
  details: { role: "db-admin", note: "é€😀" },
  prevHash: "p6",
  hash: "h7",
};

const ANCHOR: AuditAnchor = {
  format: "stint-audit-anchor/v1",
  seq: 10,
  hash: "h10",
  every: 10,
  time: "2026-03-01T09:00:01.000Z",
  keyId: "k1",
  signature: "c2ln",
};

const event = (e: AuditEvent): StreamItem => ({ kind: "event", event: e });
const checkpoint = (a: AuditAnchor): StreamItem => ({ kind: "checkpoint", anchor: a });
const OPTIONS = { facility: 13, hostname: "stint-1", appName: "stint", productVersion: "0.1.0" } as const;

describe("RFC 5424", () => {
  it("PRI is facility * 8 + severity, and out-of-range values are refused", () => {
    expect(priority(13, 6)).toBe(110);
    expect(priority(0, 0)).toBe(0);
    expect(priority(23, 7)).toBe(191);
    expect(() => priority(24, 0)).toThrow(RangeError);
    expect(() => priority(1, 8)).toThrow(RangeError);
  });

  it.each([
    ['a"b', 'a\\"b'],
    ["a\\b", "a\\\\b"],
    ["a]b", "a\\]b"],
    ["[=] ' }", "[=\\] ' }"],
    ["é€", "é€"],
  ])("SD-PARAM escapes %j as %j", (raw, escaped) => {
    expect(sdParamEscape(raw)).toBe(escaped);
  });

  it("structured data: one element, params in order, values escaped", () => {
    expect(
      structuredData("stint@32473", [
        ["seq", 7],
        ["x", 'q"]\\'],
      ]),
    ).toBe('[stint@32473 seq="7" x="q\\"\\]\\\\"]');
    expect(() => structuredData("stint@32473", [["bad name", "v"]])).toThrow(RangeError);
  });

  it("an event: header fields, structured data, BOM and the JSON payload (byte fixture)", () => {
    const message = syslogMessage(event({ ...EVENT, reason: null, details: {} }), { ...OPTIONS, format: "json" });
    expect(message).toBe(
      '<109>1 2026-03-01T09:00:00.123Z stint-1 stint - user.create [stint@32473 type="event" seq="7" ' +
        'id="0190d000-0000-7000-8000-00000000000a" outcome="denied" hash="h7"] \ufeff' +
        '{"seq":7,"id":"0190d000-0000-7000-8000-00000000000a","time":"2026-03-01T09:00:00.123Z","actor":"alice",' +
        '"actorId":"0190d000-0000-7000-8000-000000000001","action":"user.create","subject":"user:bob",' +
        '"outcome":"denied","reason":null,"correlationId":"req-1","sourceIp":"192.0.2.10",' +
        '"userAgent":"stint-cli/0.1.0","details":{},"prevHash":"p6","hash":"h7"}',
    );
  });

  it("severity follows the outcome; MSGID, HOSTNAME and APP-NAME keep printable ASCII within their lengths", () => {
    const long = "a.very.long.action.name.that.exceeds.thirty.two";
    const message = syslogMessage(event({ ...EVENT, outcome: "failed", action: long }), {
      ...OPTIONS,
      hostname: "host with space",
      format: "json",
    });
    const [pri, , host, app, procId, msgId] = message.split(" ");
    expect(pri).toBe("<108>1");
    expect(host).toBe("hostwithspace");
    expect(app).toBe("stint");
    expect(procId).toBe("-");
    expect(msgId).toBe(long.slice(0, 32));
    expect(syslogMessage(event({ ...EVENT, outcome: "success" }), { ...OPTIONS, format: "json" })).toMatch(/^<110>1 /);
  });

  it("a checkpoint is its own record type carrying the signature and head hash", () => {
    const message = syslogMessage(checkpoint(ANCHOR), { ...OPTIONS, format: "json" });
    expect(message).toBe(
      '<110>1 2026-03-01T09:00:01.000Z stint-1 stint - audit.checkpoint [stint@32473 type="checkpoint" seq="10" ' +
        'hash="h10" keyId="k1" signature="c2ln"] \ufeff' +
        '{"format":"stint-audit-anchor/v1","seq":10,"hash":"h10","every":10,"time":"2026-03-01T09:00:01.000Z","keyId":"k1","signature":"c2ln"}',
    );
  });

  it("no format ever puts a raw line break in a message", () => {
    for (const format of ["json", "cef", "ocsf"] as const) {
      const message = syslogMessage(event(EVENT), { ...OPTIONS, format });
      expect(message).not.toMatch(/[\r\n]/);
      expect(message).toContain(BOM);
    }
  });
});

describe("RFC 6587 octet counting", () => {
  it("MSG-LEN counts UTF-8 bytes, not characters (byte fixture)", () => {
    const frame = octetCounted("<110>1 - - - - - \ufeffé€😀");
    // "<110>1 - - - - - " is 17 bytes, the BOM 3, é 2, € 3, 😀 4.
    expect(frame.toString("utf8")).toBe("29 <110>1 - - - - - \ufeffé€😀");
    expect(frame.subarray(0, 3)).toEqual(Buffer.from("29 "));
    expect(frame.length).toBe(3 + 29);
  });

  it("frames split back exactly, across arbitrary chunk boundaries", () => {
    const messages = [syslogMessage(event(EVENT), { ...OPTIONS, format: "cef" }), "x", 'é€😀 ]"\\'];
    const wire = Buffer.concat(messages.map(octetCounted));
    for (let cut = 0; cut <= wire.length; cut += 7) {
      const first = splitOctetCounted(wire.subarray(0, cut));
      const second = splitOctetCounted(Buffer.concat([first.rest, wire.subarray(cut)]));
      expect([...first.messages, ...second.messages]).toEqual(messages);
      expect(second.rest.length).toBe(0);
    }
    expect(() => splitOctetCounted(Buffer.from("x1 abc"))).toThrow(/bad frame length/);
  });
});

describe("payloads", () => {
  it("CEF escapes | and \\ in the header, \\ = and newlines in the extension", () => {
    const line = payload("cef", event({ ...EVENT, action: "user.cre|ate" }), "0.1\\0");
    expect(line.startsWith("CEF:0|Stint|Stint|0.1\\\\0|user.cre\\|ate|User cre\\|ate|5|")).toBe(true);
    expect(line).toContain('msg=said "no" \\\\ ] | \\= ok\\nnext');
    expect(line).not.toMatch(/[\r\n]/);
  });

  it("OCSF: the class by action (Account Change for user.create, Authentication for auth.login, API Activity otherwise)", () => {
    const account = JSON.parse(payload("ocsf", event(EVENT))) as Record<string, unknown>;
    expect(account).toMatchObject({
      class_uid: 3001,
      class_name: "Account Change",
      category_uid: 3,
      activity_id: 1,
      type_uid: 300101,
      status_id: 2,
      status_detail: "denied",
      user: { name: "bob" },
      metadata: { uid: EVENT.id, version: "1.1.0" },
      unmapped: { seq: 7, hash: "h7" },
    });
    const auth = JSON.parse(payload("ocsf", event({ ...EVENT, action: "auth.login", outcome: "success" }))) as {
      class_uid: number;
      activity_name: string;
    };
    expect([auth.class_uid, auth.activity_name]).toEqual([3002, "Logon"]);
    const api = JSON.parse(payload("ocsf", event({ ...EVENT, action: "activation.approve" }))) as {
      class_uid: number;
      api: { operation: string };
    };
    expect([api.class_uid, api.api.operation]).toEqual([6003, "activation.approve"]);
    const cp = JSON.parse(payload("ocsf", checkpoint(ANCHOR))) as { unmapped: { anchor: AuditAnchor } };
    expect(cp.unmapped.anchor).toEqual(ANCHOR);
  });
});

describe("Splunk HEC", () => {
  it("an envelope: epoch seconds, indexed fields, the payload spliced as JSON (byte fixture)", () => {
    const text = hecEnvelope(checkpoint(ANCHOR), { format: "json", host: "stint-1", source: "stint", index: "sec" });
    expect(text).toBe(
      '{"time":1772355601,"host":"stint-1","source":"stint","sourcetype":"stint:audit:json","index":"sec",' +
        '"fields":{"stint_type":"checkpoint","stint_seq":"10"},' +
        '"event":{"format":"stint-audit-anchor/v1","seq":10,"hash":"h10","every":10,"time":"2026-03-01T09:00:01.000Z","keyId":"k1","signature":"c2ln"}}',
    );
    const cef = JSON.parse(hecEnvelope(event(EVENT), { format: "cef", host: "h", source: "stint" })) as {
      time: number;
      event: string;
      fields: Record<string, string>;
      sourcetype: string;
    };
    expect(cef.time).toBe(1772355600.123);
    expect(cef.event).toBe(payload("cef", event(EVENT)));
    expect(cef.fields).toEqual({ stint_type: "event", stint_seq: "7", stint_id: EVENT.id });
    expect(cef.sourcetype).toBe("stint:audit:cef");
    const ocsf = JSON.parse(hecEnvelope(event(EVENT), { format: "ocsf", host: "h", source: "stint" })) as {
      event: unknown;
    };
    expect(ocsf.event).toEqual(JSON.parse(payload("ocsf", event(EVENT))));
  });

  it("answers: code 0 is delivered, anything else is not", () => {
    expect(parseHecAnswer(200, '{"text":"Success","code":0}').ok).toBe(true);
    expect(parseHecAnswer(200, '{"text":"Success","code":0,"ackId":3}')).toMatchObject({ ok: true, ackId: 3 });
    expect(parseHecAnswer(200, '{"text":"Invalid token","code":4}').ok).toBe(false);
    expect(parseHecAnswer(500, "oops")).toMatchObject({ ok: false, detail: "HTTP 500" });
    expect(parseHecAnswer(503, '{"text":"Server is busy","code":9}').detail).toBe("HTTP 503 code 9 Server is busy");
  });

  it("the acknowledgement endpoint sits beside the event endpoint", () => {
    expect(hecAckUrl("https://s:8088/services/collector/event")).toBe("https://s:8088/services/collector/ack");
    expect(hecAckUrl("https://s:8088/services/collector")).toBe("https://s:8088/services/collector/ack");
    expect(hecAckUrl("https://s:8088/services/collector/event/1.0")).toBe("https://s:8088/services/collector/ack");
  });
});

describe("the stream", () => {
  const e = (seq: number) => event({ ...EVENT, seq });
  const c = (seq: number) => checkpoint({ ...ANCHOR, seq });

  it("checkpoints follow the event they cover; each item carries the position after it", () => {
    const out = streamItems({ seq: 0, checkpointSeq: 0 }, [e(1), e(2), e(3)], [c(2), c(3)]);
    expect(out.map(({ item, after }) => [item.kind, after.seq, after.checkpointSeq])).toEqual([
      ["event", 1, 0],
      ["event", 2, 0],
      ["checkpoint", 2, 2],
      ["event", 3, 2],
      ["checkpoint", 3, 3],
    ]);
  });

  it("a checkpoint signed after its event was delivered comes before the next events; none twice", () => {
    const out = streamItems({ seq: 5, checkpointSeq: 3 }, [e(6)], [c(3), c(5), c(6)]);
    expect(out.map(({ item, after }) => [item.kind, after.seq, after.checkpointSeq])).toEqual([
      ["checkpoint", 5, 5],
      ["event", 6, 5],
      ["checkpoint", 6, 6],
    ]);
    expect(streamItems({ seq: 6, checkpointSeq: 6 }, [], [c(6)])).toEqual([]);
  });

  it("backoff doubles from 500 ms and stops at the cap", () => {
    expect([0, 1, 2, 3, 4, 10].map((n) => backoffMs(n, 3000))).toEqual([0, 500, 1000, 2000, 3000, 3000]);
  });
});
