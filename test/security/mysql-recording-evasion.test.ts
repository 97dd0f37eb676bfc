/**
 * Class: a user with an activation hiding a statement from the MySQL proxy's recording (finding 8's
 * class, for MySQL).
 *
 * A prepared statement's text reaches the query log only with its executions: the session remembers
 * the text per statement id, for at most 10,000 open statements (its memory bound). A client that
 * keeps 10,000 statements open and then prepares `DELETE FROM payroll` would have its execution
 * logged as "statement N, prepared before it was logged", the text nowhere. A prepare beyond the
 * bound is now refused before it reaches the server (the client gets 1227 and can close some).
 * Likewise a statement longer than the 1 MiB the log keeps (a megabyte of comment, then the
 * statement) ran with only its start recorded; it is refused, as the PostgreSQL proxy refuses a
 * statement it cannot log whole (pg-large-messages.test.ts).
 * Socket-free: the proxy's own relays and session, fed the packets a client and MariaDB exchange.
 */
import { describe, expect, it } from "vitest";
import type { QueryLogEntry } from "../../src/modules/sessions/sessions.types.js";
import { createMysqlSession } from "../../src/proxies/mysql/mysql-session.js";
import { COM, createPacketRelay, packet, parseErr } from "../../src/proxies/mysql/mysql-wire.js";

const OPEN_BOUND = 10_000;

/** The session as the proxy wires it; `up`/`down` return what goes on to the server / the client. */
function relay() {
  const logged: QueryLogEntry[] = [];
  const toClient: Buffer[] = [];
  const session = createMysqlSession({
    allowLocalInfile: false,
    record: (entry) => logged.push(entry),
    toServer: () => undefined,
    toClient: (bytes) => toClient.push(bytes),
  });
  const client = createPacketRelay({
    keep: 1 << 20,
    decide: (head) => session.decideClient(head),
    complete: (head, body, emit) => session.completeClient(head, body, emit),
  });
  const server = createPacketRelay({
    keep: 64 * 1024,
    decide: (head) => session.decideServer(head),
    complete: (head, body, emit) => session.completeServer(head, body, emit),
  });
  return {
    logged,
    toClient,
    up: (bytes: Buffer) => Buffer.concat(client.push(bytes)),
    down: (bytes: Buffer) => Buffer.concat(server.push(bytes)),
  };
}

const command = (code: number, body: Buffer | string) =>
  packet(0, Buffer.concat([Buffer.from([code]), Buffer.from(body)]));

/** MariaDB's answer to a COM_STMT_PREPARE without parameters or columns: statement `id`. */
function prepared(id: number): Buffer {
  const body = Buffer.alloc(12);
  body.writeUInt32LE(id, 1);
  return packet(1, body);
}

function execute(id: number): Buffer {
  const body = Buffer.alloc(9);
  body.writeUInt32LE(id, 0);
  body.writeUInt32LE(1, 5); // iteration count
  return command(COM.STMT_EXECUTE, body);
}

describe("MySQL proxy: a statement hidden behind 10,000 open prepared statements", () => {
  it("the hidden statement's text is in the recording, or it never reaches the server", () => {
    const h = relay();
    for (let id = 1; id <= OPEN_BOUND; id++) {
      h.up(command(COM.STMT_PREPARE, `SELECT ${id}`));
      h.down(prepared(id));
    }
    const sent = h.up(command(COM.STMT_PREPARE, "DELETE FROM payroll"));
    if (sent.length > 0) {
      // The server prepared it: its execution must be recorded with its text.
      h.down(prepared(OPEN_BOUND + 1));
      h.up(execute(OPEN_BOUND + 1));
      h.down(packet(1, Buffer.from([0, 42, 0, 2, 0, 0, 0])));
      expect(h.logged.map((entry) => entry.statement)).toContain("DELETE FROM payroll");
    } else {
      // Refused at the proxy: the client is told why, and the attempt is recorded.
      expect(h.toClient).toHaveLength(1);
      expect(parseErr(h.toClient[0]!.subarray(4))).toMatchObject({ code: 1227 });
      expect(parseErr(h.toClient[0]!.subarray(4)).message).toMatch(/10,000 prepared statements/);
      expect(h.logged.at(-1)?.statement).toBe("/* COM_STMT_PREPARE */");
    }
    // Closing one makes room again.
    h.up(command(COM.STMT_CLOSE, Buffer.from([1, 0, 0, 0])));
    expect(h.up(command(COM.STMT_PREPARE, "SELECT 'again'")).length).toBeGreaterThan(0);
  });
});

describe("MySQL proxy: a statement hidden behind a megabyte of comment", () => {
  it("a statement longer than the query log keeps is refused, not run with its end unrecorded", () => {
    const h = relay();
    const text = `/*${"x".repeat(1 << 20)}*/ DELETE FROM payroll`;
    const sent = h.up(command(COM.QUERY, text));
    if (sent.length > 0) {
      h.down(packet(1, Buffer.from([0, 42, 0, 2, 0, 0, 0])));
      expect(h.logged.at(-1)?.statement).toContain("DELETE FROM payroll");
    } else {
      expect(parseErr(h.toClient[0]!.subarray(4))).toMatchObject({ code: 1227 });
      expect(parseErr(h.toClient[0]!.subarray(4)).message).toMatch(/1 MiB or more/);
    }
    // One just within the bound runs and is recorded whole.
    const within = `/*${"x".repeat((1 << 20) - 40)}*/ DELETE FROM payroll`;
    expect(h.up(command(COM.QUERY, within)).length).toBeGreaterThan(0);
    h.down(packet(1, Buffer.from([0, 42, 0, 2, 0, 0, 0])));
    expect(h.logged.at(-1)?.statement).toBe(within);
  });
});
