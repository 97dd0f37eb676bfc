/**
 * Golden values: the exact texts and hashes the audit rules wrote for fixed events when these values were
 * computed (before the event-field helpers were factored out). An existing chain verifies, and a pending row's
 * MAC checks, only while these stay byte for byte the same.
 */
import { hash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { toJsonl } from "./audit.export.js";
import {
  canonicalEvent,
  canonicalGeneral,
  chain,
  GENESIS_HASH,
  pendingMessage,
  pendingMessageGeneral,
} from "./audit.rules.js";
import type { AuditEvent, PendingAuditEvent } from "./audit.types.js";

const sha256 = (text: string) => hash("sha256", text, "hex");

const plainEvent: PendingAuditEvent = {
  id: "0190d000-0000-7000-8000-0000000000aa",
  time: "2026-03-04T05:06:07.089Z",
  actor: "carol",
  actorId: "0190d000-0000-7000-8000-00000000c0de",
  action: "grant.revoke",
  subject: "grant:g7",
  outcome: "success",
  reason: "ended early",
  correlationId: "req-42",
  sourceIp: "198.51.100.7",
  userAgent: "stint-cli/1.0",
  details: { grantId: "g7", roles: ["a", "b"], seconds: 120 },
};

/** Escapes, a surrogate pair, integer-like keys and details out of order, nulls. */
const trickyEvent: PendingAuditEvent = {
  ...plainEvent,
  actor: 'dave "x" \\ \n\u0001 é 😀',
  actorId: null,
  subject: null,
  outcome: "denied",
  reason: null,
  userAgent: "\u2028",
  details: { z: { b: 1.5, a: [null, true] }, "10": "ten", "9": "nine", "": "" },
};

/** A lone surrogate at the top level: the general canonicalizer's path. */
const loneSurrogateEvent: PendingAuditEvent = { ...plainEvent, reason: "half \ud800 of a pair" };

const linked = (event: PendingAuditEvent, seq: number, prevHash: string): Omit<AuditEvent, "hash"> => ({
  ...event,
  seq,
  prevHash,
});

const outcome = (write: () => string) => {
  try {
    return sha256(write());
  } catch (error) {
    return `throws ${(error as Error).message}`;
  }
};

describe("audit golden values", () => {
  it("the MAC text of a pending event is the one written before", () => {
    expect(pendingMessage(plainEvent)).toBe(
      '{"action":"grant.revoke","actor":"carol","actorId":"0190d000-0000-7000-8000-00000000c0de",' +
        '"correlationId":"req-42","details":{"grantId":"g7","roles":["a","b"],"seconds":120},' +
        '"id":"0190d000-0000-7000-8000-0000000000aa","outcome":"success","reason":"ended early",' +
        '"sourceIp":"198.51.100.7","subject":"grant:g7","time":"2026-03-04T05:06:07.089Z",' +
        '"userAgent":"stint-cli/1.0","v":"stint-audit-pending:v1"}',
    );
  });

  it("the hash text of a chained event is the one written before", () => {
    expect(canonicalEvent(linked(plainEvent, 7, GENESIS_HASH))).toBe(
      '{"action":"grant.revoke","actor":"carol","actorId":"0190d000-0000-7000-8000-00000000c0de",' +
        '"correlationId":"req-42","details":{"grantId":"g7","roles":["a","b"],"seconds":120},' +
        '"id":"0190d000-0000-7000-8000-0000000000aa","outcome":"success",' +
        `"prevHash":"${GENESIS_HASH}","reason":"ended early","seq":7,` +
        '"sourceIp":"198.51.100.7","subject":"grant:g7","time":"2026-03-04T05:06:07.089Z",' +
        '"userAgent":"stint-cli/1.0"}',
    );
  });

  it("every text and hash of fixed events, fast and general paths, is the one written before", () => {
    const written = [plainEvent, trickyEvent, loneSurrogateEvent].map((event) => {
      const first = chain(event, { seq: 0, hash: GENESIS_HASH });
      const second = chain(event, first);
      return {
        pendingMessage: outcome(() => pendingMessage(event)),
        pendingMessageGeneral: outcome(() => pendingMessageGeneral(event)),
        canonicalEvent: outcome(() => canonicalEvent(linked(event, 2, first.hash))),
        canonicalGeneral: outcome(() => canonicalGeneral(linked(event, 2, first.hash))),
        chained: [first.hash, second.hash],
        jsonl: outcome(() => toJsonl(second)),
      };
    });
    expect(written).toEqual([
      {
        pendingMessage: "7e60a34b9d9b53c7d03ea1c951c8e291bec9d5eac01ecb562ec657025e70cced",
        pendingMessageGeneral: "7e60a34b9d9b53c7d03ea1c951c8e291bec9d5eac01ecb562ec657025e70cced",
        canonicalEvent: "75de15b44317885b27083a379f9af231bb895b3c581331b57250d85f4ba603eb",
        canonicalGeneral: "75de15b44317885b27083a379f9af231bb895b3c581331b57250d85f4ba603eb",
        chained: [
          "4078926433ce4d8385f7dee20e097df6a1e1b0673b511ff3ea5a8e0bb70ab823",
          "75de15b44317885b27083a379f9af231bb895b3c581331b57250d85f4ba603eb",
        ],
        jsonl: "f196b316927a7e67b3a21083b65e7dd454fc0196c049e0b25da4f5afc6f45c6a",
      },
      {
        pendingMessage: "38b461813bd4d6b3ff4981b4df009b95cc2646d68dce78403cee1f3f569c0e08",
        pendingMessageGeneral: "38b461813bd4d6b3ff4981b4df009b95cc2646d68dce78403cee1f3f569c0e08",
        canonicalEvent: "6b78246bcaf2904a514a20e32e673bab947f570828b37eb4d37fa762c00129e1",
        canonicalGeneral: "6b78246bcaf2904a514a20e32e673bab947f570828b37eb4d37fa762c00129e1",
        chained: [
          "110d895a7c72b63dd68d6e13bb85bcf38d71071e4440527402917e152065a986",
          "6b78246bcaf2904a514a20e32e673bab947f570828b37eb4d37fa762c00129e1",
        ],
        jsonl: "2aee57e3bd67d76874c69c13bfc36be135c399c44b0ee8748717c69194c7e353",
      },
      {
        pendingMessage: "throws Lone surrogate is not allowed",
        pendingMessageGeneral: "throws Lone surrogate is not allowed",
        canonicalEvent: "13b9edca4c3f2f0ba37e2fff8f2c0b16cd4febecf6d9a0ca83e11c1e808c1ad9",
        canonicalGeneral: "throws Lone surrogate is not allowed",
        chained: [
          "cb541918fbc44cb2faf53970363044c3f9b644da0226e9d1f8ad27b673b1c906",
          "13b9edca4c3f2f0ba37e2fff8f2c0b16cd4febecf6d9a0ca83e11c1e808c1ad9",
        ],
        jsonl: "d684b30173fe85a2237db5ce5e3c6cea9502ef02c89a902c08292b54f645d4f8",
      },
    ]);
  });
});
