/**
 * The SQL console: a web page's PostgreSQL session, run THROUGH this node's PostgreSQL proxy. Opening one
 * mints a single-use database token for the caller's active role (audited as `session.token_issued`) and
 * connects node-postgres to the proxy's own listener with it, so the gate, the recording (query log), the
 * query policy and the kill on revoke or expiry are the proxy's, unchanged: there is no second path to a
 * database. The connection is held per console (in this process's memory), closed after an idle time, when
 * its owner closes it, or when the proxy ends the session.
 */
import { X509Certificate } from "node:crypto";
import { rootCertificates } from "node:tls";
import pg from "pg";
import {
  SQL_CONSOLE_MAX_QUERY_BYTES,
  SQL_CONSOLE_MAX_ROWS,
  type SqlConsoleQueryResultDto,
  type SqlConsoleSessionDto,
} from "../../contract/sql-console.js";
import type { Clock } from "../../lib/clock.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import type { Logger } from "../../lib/logger.js";
import type { AuditLog } from "../audit/audit.service.js";
import { SYSTEM, type Actor, type CallContext } from "../authz/authz.types.js";
import type { SessionService } from "../sessions/sessions.service.js";
import { ConsoleQuery, DEFAULT_MAX_CELLS } from "./console-query.js";

export const SQL_CONSOLE_DEFAULTS = {
  idleTimeoutMs: 15 * 60_000,
  /** The server's statement_timeout for console queries (sent at startup); a user may SET it otherwise. */
  statementTimeoutMs: 60_000,
  /** A query still unanswered this long ends the console (the server ignored its own timeout). */
  queryDeadlineMs: 5 * 60_000,
  maxPerUser: 3,
  maxTotal: 200,
  /** Characters of row values kept per query (across all its results). */
  maxChars: 2_000_000,
  /** Values (NULL and empty ones too), rows and columns kept per query (across all its results). */
  maxCells: DEFAULT_MAX_CELLS,
  /** An ended console still answers why (SQL_CONSOLE_ENDED) this long, then 404. */
  keepEndedMs: 30 * 60_000,
} as const;

export interface SqlConsoleDeps {
  sessions: Pick<SessionService, "issueDatabaseToken" | "localProxyAddress" | "awaitSessionOf">;
  audit: Pick<AuditLog, "record">;
  clock: Clock;
  logger: Logger;
  /**
   * The PostgreSQL proxy's TLS certificate chain (PEM) when it has one: the console then speaks TLS to it and
   * accepts only that certificate (its SHA-256 fingerprint), whatever signed it.
   */
  proxyTlsCert?: (() => Promise<string | null>) | undefined;
  limits?: Partial<typeof SQL_CONSOLE_DEFAULTS>;
}

interface ConsoleEntry {
  dto: SqlConsoleSessionDto;
  principalId: string;
  principalName: string;
  client: pg.Client;
  context: CallContext;
  busy: boolean;
  /** Why it ended (a sentence), or null while it is open. */
  ended: string | null;
  idleTimer: NodeJS.Timeout | undefined;
}

export type SqlConsoleService = ReturnType<typeof createSqlConsoleService>;

export function createSqlConsoleService(deps: SqlConsoleDeps) {
  const { sessions, audit, clock, logger } = deps;
  const limits = { ...SQL_CONSOLE_DEFAULTS, ...deps.limits };
  const consoles = new Map<string, ConsoleEntry>();
  /** Consoles being opened, per principal and in all: counted against the limits until they are open or failed. */
  const opening = new Map<string, number>();
  let openingTotal = 0;

  function principalOf(actor: Actor) {
    if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
    return actor;
  }

  /** The caller's own console, or NOT_FOUND: another user's id answers as if there were none. */
  function own(actor: Actor, id: string): ConsoleEntry {
    const principal = principalOf(actor);
    const entry = consoles.get(id);
    if (!entry || entry.principalId !== principal.id)
      throw new StintError("NOT_FOUND", `There is no SQL console ${id} of yours.`);
    return entry;
  }

  function open(entries: Iterable<ConsoleEntry>) {
    return [...entries].filter((e) => e.ended === null);
  }

  function armIdle(entry: ConsoleEntry) {
    clearTimeout(entry.idleTimer);
    entry.idleTimer = setTimeout(
      () =>
        finish(
          entry,
          `It was idle for ${Math.round(limits.idleTimeoutMs / 60_000)} minutes, so it was closed.`,
          "idle",
          SYSTEM,
        ),
      limits.idleTimeoutMs,
    );
    entry.idleTimer.unref();
  }

  /** Ends a console once: closes its connection (the proxy then ends the session) and audits why. */
  function finish(entry: ConsoleEntry, sentence: string, cause: "closed" | "idle" | "session_ended", by: Actor) {
    if (entry.ended !== null) return;
    entry.ended = sentence;
    clearTimeout(entry.idleTimer);
    entry.client.end().catch(() => undefined);
    const forget = setTimeout(() => consoles.delete(entry.dto.id), limits.keepEndedMs);
    forget.unref();
    audit
      .record(by, entry.context, {
        action: "sql_console.closed",
        outcome: "success",
        subject: `session:${entry.dto.sessionId}`,
        reason: sentence,
        details: { console: entry.dto.id, user: entry.principalName, role: entry.dto.role, cause },
      })
      .catch((error: unknown) =>
        logger.error({ err: error, console: entry.dto.id }, "could not audit a console's end"),
      );
  }

  async function tlsOptions(): Promise<pg.ClientConfig["ssl"]> {
    const pem = await deps.proxyTlsCert?.();
    if (!pem) return false;
    const leaf = new X509Certificate(pem);
    return {
      // A self-signed certificate verifies against itself, one from a public CA against the usual roots; either
      // way only this exact certificate is accepted.
      ca: [...rootCertificates, pem],
      checkServerIdentity: (_host, cert) =>
        cert.fingerprint256 === leaf.fingerprint256
          ? undefined
          : new Error("the PostgreSQL proxy presented a certificate other than its configured one"),
    };
  }

  async function connect(
    actor: Actor,
    principal: { id: string; name: string },
    ctx: CallContext,
    input: { role: string; database?: string | undefined },
  ): Promise<SqlConsoleSessionDto> {
    // Throws NOT_ACTIVE without an active activation of that role, VALIDATION_FAILED for a role not on PostgreSQL,
    // UNAVAILABLE when this node runs no PostgreSQL proxy.
    const token = await sessions.issueDatabaseToken(actor, ctx, { role: input.role, once: true });
    const local = sessions.localProxyAddress("postgres");
    if (!local)
      throw new StintError(
        "UNAVAILABLE",
        "The PostgreSQL proxy is not running on this server, so the SQL console cannot connect.",
      );
    let opened: { id: string; target: string } | null = null;
    const stopWaiting = sessions.awaitSessionOf(token.password, (session) => (opened = session));
    const client = new pg.Client({
      host: local.host,
      port: local.port,
      user: token.user,
      password: token.password,
      database: input.database ?? token.database,
      application_name: "stint-sql-console",
      statement_timeout: limits.statementTimeoutMs,
      connectionTimeoutMillis: 15_000,
      keepAlive: true,
      ssl: await tlsOptions(),
    });
    // Errors after the sign-in are handled by the 'error' listener below; until then by connect()'s rejection.
    client.on("error", () => undefined);
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => undefined);
      const e = error as { code?: string; message?: string };
      if (typeof e.code === "string" && /^[0-9A-Z]{5}$/.test(e.code))
        throw new StintError("SQL_CONSOLE_REFUSED", `The PostgreSQL proxy refused the console: ${e.message}`);
      logger.warn({ err: error }, "the SQL console could not reach this node's PostgreSQL proxy");
      throw new StintError("UNAVAILABLE", "The SQL console could not reach the PostgreSQL proxy; try again.");
    } finally {
      stopWaiting();
    }
    const session = opened as { id: string; target: string } | null;
    if (session === null) {
      // Signed in, yet not through this node's gate: never hold such a connection.
      await client.end().catch(() => undefined);
      logger.error({ role: input.role }, "the SQL console's connection was not opened by this node's proxy");
      throw new StintError("INTERNAL");
    }
    const dto: SqlConsoleSessionDto = {
      id: newId(),
      role: input.role,
      target: session.target,
      database: input.database ?? token.database,
      sessionId: session.id,
      openedAt: clock.now().toISOString(),
      idleTimeoutSeconds: Math.round(limits.idleTimeoutMs / 1000),
      expiresAt: token.expiresAt,
    };
    const entry: ConsoleEntry = {
      dto,
      principalId: principal.id,
      principalName: principal.name,
      client,
      context: ctx,
      busy: false,
      ended: null,
      idleTimer: undefined,
    };
    // The proxy ends the session (kill, revoke, expiry: FATAL 57P01 with the reason) or the socket drops.
    client.on("error", (error: Error) => finish(entry, error.message, "session_ended", SYSTEM));
    client.on("end", () => finish(entry, "The connection to the PostgreSQL proxy closed.", "session_ended", SYSTEM));
    consoles.set(dto.id, entry);
    armIdle(entry);
    await audit.record(actor, ctx, {
      action: "sql_console.opened",
      outcome: "success",
      subject: `session:${session.id}`,
      details: { console: dto.id, role: dto.role, target: dto.target, database: dto.database },
    });
    return dto;
  }

  return {
    limits,

    async open(actor: Actor, ctx: CallContext, input: { role: string; database?: string | undefined }) {
      const principal = principalOf(actor);
      const mine =
        open(consoles.values()).filter((e) => e.principalId === principal.id).length + (opening.get(principal.id) ?? 0);
      if (mine >= limits.maxPerUser)
        throw new StintError(
          "SQL_CONSOLE_LIMIT",
          `You have ${mine} SQL consoles open, the most allowed; close one first.`,
        );
      if (open(consoles.values()).length + openingTotal >= limits.maxTotal)
        throw new StintError("SQL_CONSOLE_LIMIT", "This server has as many SQL consoles open as it allows; try later.");
      opening.set(principal.id, (opening.get(principal.id) ?? 0) + 1);
      openingTotal += 1;
      try {
        return await connect(actor, principal, ctx, input);
      } finally {
        openingTotal -= 1;
        const left = (opening.get(principal.id) ?? 1) - 1;
        if (left > 0) opening.set(principal.id, left);
        else opening.delete(principal.id);
      }
    },

    list(actor: Actor): SqlConsoleSessionDto[] {
      const principal = principalOf(actor);
      return open(consoles.values())
        .filter((e) => e.principalId === principal.id)
        .map((e) => e.dto);
    },

    async query(actor: Actor, id: string, sql: string): Promise<SqlConsoleQueryResultDto> {
      const entry = own(actor, id);
      if (entry.ended !== null)
        throw new StintError(
          "SQL_CONSOLE_ENDED",
          `This SQL console has ended: ${entry.ended} Open a new one from My access.`,
        );
      const bytes = Buffer.byteLength(sql, "utf8");
      if (bytes > SQL_CONSOLE_MAX_QUERY_BYTES)
        throw new StintError(
          "SQL_QUERY_TOO_LARGE",
          `The query is ${bytes} bytes; the SQL console takes at most ${SQL_CONSOLE_MAX_QUERY_BYTES}. Run larger scripts with psql through \`stint db proxy\`.`,
        );
      if (entry.busy)
        throw new StintError("SQL_CONSOLE_BUSY", "A query is still running in this console; wait for its answer.");
      entry.busy = true;
      clearTimeout(entry.idleTimer);
      const started = performance.now();
      const query = new ConsoleQuery(sql, {
        maxRows: SQL_CONSOLE_MAX_ROWS,
        maxChars: limits.maxChars,
        maxCells: limits.maxCells,
      });
      let deadline: NodeJS.Timeout | undefined;
      try {
        entry.client.query(query);
        const answer = await Promise.race([
          query.done,
          new Promise<null>((resolve) => {
            deadline = setTimeout(() => resolve(null), limits.queryDeadlineMs);
            deadline.unref();
          }),
        ]);
        if (answer === null) {
          finish(
            entry,
            "A query went unanswered past the console's deadline, so the console was closed.",
            "session_ended",
            SYSTEM,
          );
          throw new StintError("SQL_CONSOLE_ENDED", `This SQL console has ended: ${entry.ended} Open a new one.`);
        }
        if (answer.error?.fatal) {
          finish(entry, answer.error.message, "session_ended", SYSTEM);
          throw new StintError(
            "SQL_CONSOLE_ENDED",
            `This SQL console has ended: ${entry.ended} Open a new one from My access.`,
          );
        }
        const { fatal: _fatal, ...error } = answer.error ?? { fatal: false };
        return {
          results: answer.results,
          error: answer.error ? (error as SqlConsoleQueryResultDto["error"]) : null,
          elapsedMs: Math.round((performance.now() - started) * 10) / 10,
        };
      } finally {
        clearTimeout(deadline);
        entry.busy = false;
        if (entry.ended === null) armIdle(entry);
      }
    },

    async close(actor: Actor, ctx: CallContext, id: string): Promise<void> {
      const entry = own(actor, id);
      if (entry.ended !== null) return;
      entry.context = ctx;
      finish(entry, "Closed by its user.", "closed", actor);
    },

    /** Ends every console (server shutdown). */
    async stop(): Promise<void> {
      for (const entry of consoles.values()) finish(entry, "Stint is shutting down.", "session_ended", SYSTEM);
      consoles.clear();
    },
  };
}
