/**
 * The SSH proxy's SFTP tracker (src/proxies/ssh/sftp-log.ts): it reads the SFTP packets a client
 * and a server exchange through the proxy, in whatever chunks they arrive, and turns them into the
 * recording's `sftp` events. Input layout: byte 0 the client's chunk size, byte 1 the server's, then
 * records of [direction (even: client → server, odd: back), length (2 bytes), bytes].
 * Properties: never throws; chunking does not change the events (fed whole or in 1–64-byte chunks);
 * every event is well formed (a known operation, a path, a byte count that is a non-negative safe
 * integer, `direction` only on files); the handles still open at the end are at most the tracker's
 * cap; a generated session (INIT, then uploads, downloads, refused opens, renames, links, removals…
 * with the server's answers) gives exactly the events the session's facts say, in order.
 */
import { isDeepStrictEqual } from "node:util";
import fc from "fast-check";
import { SFTP, SFTP_OPEN, createSftpTracker, type SftpEvent } from "../../src/proxies/ssh/sftp-log.js";
import { sshString, uint32, uint64 } from "../../src/lib/ssh-wire.js";
import { expect, feature, only, type FuzzTarget, type ValidInput } from "../harness.js";

const OPERATIONS = new Set(["open", "remove", "rename", "mkdir", "rmdir", "setstat", "symlink", "link"]);
/** sftp-log.ts keeps at most this many open handles. */
const MAX_HANDLES = 1024;

interface Segment {
  fromClient: boolean;
  bytes: Buffer;
}

function segments(input: Buffer): Segment[] {
  const out: Segment[] = [];
  for (let at = 2; at < input.length;) {
    const fromClient = ((input[at] ?? 0) & 1) === 0;
    const length = at + 3 <= input.length ? input.readUInt16BE(at + 1) : 0;
    const bytes = input.subarray(at + 3, at + 3 + length);
    out.push({ fromClient, bytes });
    at += 3 + length;
  }
  return out;
}

function run(parts: Segment[], clientChunk: number, serverChunk: number): SftpEvent[] {
  const tracker = createSftpTracker();
  const events: SftpEvent[] = [];
  for (const { fromClient, bytes } of parts) {
    const size = fromClient ? clientChunk : serverChunk;
    for (let at = 0; at < bytes.length; at += size) {
      const chunk = bytes.subarray(at, at + size);
      events.push(...(fromClient ? tracker.fromClient(chunk) : tracker.fromServer(chunk)));
    }
  }
  const left = tracker.end();
  expect(left.length <= MAX_HANDLES, `${left.length} handles still open, beyond the cap`);
  return [...events, ...left];
}

function wellFormed(event: SftpEvent): void {
  expect(OPERATIONS.has(event.operation), `unknown operation ${event.operation}`);
  expect(typeof event.path === "string", "an event without a path");
  // null: the proxy did not follow the answer (more requests waiting than it remembers); the event is kept anyway.
  expect(typeof event.ok === "boolean" || event.ok === null, "an event without ok");
  if (event.bytes !== undefined) {
    expect(Number.isSafeInteger(event.bytes) && event.bytes >= 0, `a byte count of ${event.bytes}`);
  }
  expect(event.operation === "open" || event.direction === undefined, `${event.operation} with a direction`);
  expect(event.error === undefined || (typeof event.error === "string" && event.ok === false), "an error on a success");
}

function check(input: Buffer): void {
  const parts = segments(input);
  const clientChunk = 1 + ((input[0] ?? 0) % 64);
  const serverChunk = 1 + ((input[1] ?? 0) % 64);
  const whole = only(
    () => false,
    "sftp",
    () => run(parts, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER),
  );
  const chunked = only(
    () => false,
    "sftp chunked",
    () => run(parts, clientChunk, serverChunk),
  );
  if (whole === undefined || chunked === undefined) return;
  expect(isDeepStrictEqual(whole, chunked), `chunking (${clientChunk}/${serverChunk}) changed the events`);
  for (const event of whole) {
    wellFormed(event);
    feature(`${event.operation}:${event.ok}:${event.direction ?? ""}:${event.bytes === 0}`);
  }
}

// --- generated sessions ------------------------------------------------------------------------

const packet = (type: number, ...fields: Buffer[]) => {
  const body = Buffer.concat([Buffer.of(type), ...fields]);
  return Buffer.concat([uint32(body.length), body]);
};
const NO_ATTRS = uint32(0);
const status = (id: number, code: number, message: string) =>
  packet(SFTP.STATUS, uint32(id), uint32(code), sshString(message), sshString(""));

/** One thing a user does over SFTP, with the server's answer. */
type Step =
  | { kind: "upload"; path: string; writes: number[]; closeOk: boolean }
  | { kind: "download"; path: string; reads: number[] }
  | { kind: "refused-open"; path: string; writing: boolean; message: string }
  | {
      kind: "simple";
      request: "remove" | "mkdir" | "rmdir" | "setstat" | "rename" | "symlink" | "posix-rename" | "hardlink";
      path: string;
      other: string;
      ok: boolean;
      message: string;
    }
  | { kind: "stat"; path: string };

/** Paths without NUL, in valid Unicode (they travel as UTF-8). */
const path = fc.string({ unit: "grapheme", minLength: 1, maxLength: 24 });
const message = fc.constantFrom("", "No such file", "Permission denied", "Failure");

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant("upload" as const),
    path,
    writes: fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 4 }),
    closeOk: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant("download" as const),
    path,
    reads: fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 4 }),
  }),
  fc.record({ kind: fc.constant("refused-open" as const), path, writing: fc.boolean(), message }),
  fc.record({
    kind: fc.constant("simple" as const),
    request: fc.constantFrom(
      "remove" as const,
      "mkdir" as const,
      "rmdir" as const,
      "setstat" as const,
      "rename" as const,
      "symlink" as const,
      "posix-rename" as const,
      "hardlink" as const,
    ),
    path,
    other: path,
    ok: fc.boolean(),
    message,
  }),
  fc.record({ kind: fc.constant("stat" as const), path }),
);

/** The packets of a session, as [from the client?, bytes], and the events it must give. */
function session(steps: Step[]): { packets: [boolean, Buffer][]; events: SftpEvent[] } {
  const packets: [boolean, Buffer][] = [
    [true, packet(SFTP.INIT, uint32(3))],
    [false, packet(SFTP.VERSION, uint32(3))],
  ];
  const events: SftpEvent[] = [];
  let id = 0;
  let handles = 0;
  const client = (p: Buffer) => packets.push([true, p]);
  const server = (p: Buffer) => packets.push([false, p]);
  for (const s of steps) {
    switch (s.kind) {
      case "upload": {
        const handle = Buffer.from(`h${handles++}`);
        const open = ++id;
        client(packet(SFTP.OPEN, uint32(open), sshString(s.path), uint32(SFTP_OPEN.WRITE | SFTP_OPEN.CREAT), NO_ATTRS));
        server(packet(SFTP.HANDLE, uint32(open), sshString(handle)));
        let offset = 0n;
        for (const size of s.writes) {
          const write = ++id;
          client(
            packet(SFTP.WRITE, uint32(write), sshString(handle), uint64(offset), sshString(Buffer.alloc(size, 1))),
          );
          server(status(write, 0, ""));
          offset += BigInt(size);
        }
        const close = ++id;
        client(packet(SFTP.CLOSE, uint32(close), sshString(handle)));
        server(status(close, s.closeOk ? 0 : 4, s.closeOk ? "" : "Failure"));
        const bytes = s.writes.reduce((a, b) => a + b, 0);
        events.push({
          operation: "open",
          path: s.path,
          direction: "upload",
          bytes,
          ok: s.closeOk,
          ...(s.closeOk ? {} : { error: "Failure" }),
        });
        break;
      }
      case "download": {
        const handle = Buffer.from(`h${handles++}`);
        const open = ++id;
        client(packet(SFTP.OPEN, uint32(open), sshString(s.path), uint32(SFTP_OPEN.READ), NO_ATTRS));
        server(packet(SFTP.HANDLE, uint32(open), sshString(handle)));
        let offset = 0n;
        for (const size of s.reads) {
          const read = ++id;
          client(packet(SFTP.READ, uint32(read), sshString(handle), uint64(offset), uint32(32768)));
          server(packet(SFTP.DATA, uint32(read), sshString(Buffer.alloc(size, 2))));
          offset += BigInt(size);
        }
        const eof = ++id;
        client(packet(SFTP.READ, uint32(eof), sshString(handle), uint64(offset), uint32(32768)));
        server(status(eof, 1, "EOF"));
        const close = ++id;
        client(packet(SFTP.CLOSE, uint32(close), sshString(handle)));
        server(status(close, 0, ""));
        const bytes = s.reads.reduce((a, b) => a + b, 0);
        events.push({ operation: "open", path: s.path, direction: "download", bytes, ok: true });
        break;
      }
      case "refused-open": {
        const open = ++id;
        const flags = s.writing ? SFTP_OPEN.WRITE | SFTP_OPEN.CREAT | SFTP_OPEN.TRUNC : SFTP_OPEN.READ;
        client(packet(SFTP.OPEN, uint32(open), sshString(s.path), uint32(flags), NO_ATTRS));
        server(status(open, 2, s.message));
        events.push({
          operation: "open",
          path: s.path,
          direction: s.writing ? "upload" : "download",
          bytes: 0,
          ok: false,
          ...(s.message ? { error: s.message } : {}),
        });
        break;
      }
      case "simple": {
        const n = ++id;
        const two = (type: number) => client(packet(type, uint32(n), sshString(s.path), sshString(s.other)));
        const extended = (name: string) =>
          client(packet(SFTP.EXTENDED, uint32(n), sshString(name), sshString(s.path), sshString(s.other)));
        let event: SftpEvent;
        switch (s.request) {
          case "remove":
          case "rmdir":
            client(packet(s.request === "remove" ? SFTP.REMOVE : SFTP.RMDIR, uint32(n), sshString(s.path)));
            event = { operation: s.request, path: s.path, ok: s.ok };
            break;
          case "mkdir":
          case "setstat":
            client(packet(s.request === "mkdir" ? SFTP.MKDIR : SFTP.SETSTAT, uint32(n), sshString(s.path), NO_ATTRS));
            event = { operation: s.request, path: s.path, ok: s.ok };
            break;
          case "rename":
            two(SFTP.RENAME);
            event = { operation: "rename", path: s.path, newPath: s.other, ok: s.ok };
            break;
          case "symlink":
            // OpenSSH's order: the link's target first, then the link.
            two(SFTP.SYMLINK);
            event = { operation: "symlink", path: s.other, newPath: s.path, ok: s.ok };
            break;
          case "posix-rename":
            extended("posix-rename@openssh.com");
            event = { operation: "rename", path: s.path, newPath: s.other, ok: s.ok };
            break;
          case "hardlink":
            extended("hardlink@openssh.com");
            event = { operation: "link", path: s.path, newPath: s.other, ok: s.ok };
            break;
        }
        server(status(n, s.ok ? 0 : 3, s.ok ? "" : s.message));
        events.push(!s.ok && s.message ? { ...event, error: s.message } : event);
        break;
      }
      case "stat": {
        const n = ++id;
        client(packet(SFTP.STAT, uint32(n), sshString(s.path)));
        server(packet(SFTP.ATTRS, uint32(n), NO_ATTRS));
        break;
      }
    }
  }
  return { packets, events };
}

const valid: fc.Arbitrary<ValidInput> = fc
  .tuple(fc.array(step, { maxLength: 6 }), fc.nat(255), fc.nat(255))
  .map(([steps, clientChunk, serverChunk]) => {
    const { packets, events } = session(steps);
    const records = packets.map(([fromClient, bytes]) => {
      const head = Buffer.alloc(3);
      head[0] = fromClient ? 0 : 1;
      head.writeUInt16BE(bytes.length, 1);
      return Buffer.concat([head, bytes]);
    });
    const bytes = Buffer.concat([Buffer.of(clientChunk, serverChunk), ...records]);
    return {
      bytes,
      verify: () => {
        const got = run(segments(bytes), 1 + (clientChunk % 64), 1 + (serverChunk % 64));
        expect(isDeepStrictEqual(got, events), `events ${JSON.stringify(got)} instead of ${JSON.stringify(events)}`);
      },
    };
  });

export const sftp: FuzzTarget = { name: "sftp", check, valid };
