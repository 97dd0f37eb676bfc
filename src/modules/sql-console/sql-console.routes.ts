/**
 * Thin handlers for the web SQL console. Every route needs only a sign-in: a console belongs to the user
 * who opened it (anyone else's id answers 404), and opening one needs that user's active PostgreSQL role.
 * Answers are never cached (the app sends Cache-Control: no-store on every answer) and never compressed
 * (no-compress.ts: rows may hold secrets next to text the caller chose).
 */
import type { App } from "../../http/app.js";
import * as c from "../../contract/sql-console.js";
import type { SqlConsoleService } from "./sql-console.service.js";

export function registerSqlConsoleRoutes(app: App, deps: { console: SqlConsoleService }) {
  const { console: sqlConsole } = deps;
  const tags = ["sql-console"];

  app.post(
    "/v1/sql-console/sessions",
    {
      config: { requirement: "authenticated" },
      schema: { tags, body: c.sqlConsoleOpenBody, response: { 201: c.sqlConsoleSession } },
    },
    async (req, reply) => reply.code(201).send(await sqlConsole.open(req.actor, req.callContext, req.body)),
  );

  app.get(
    "/v1/sql-console/sessions",
    {
      config: { requirement: "authenticated" },
      schema: { tags, response: { 200: c.sqlConsoleSessionList } },
    },
    async (req) => ({ items: sqlConsole.list(req.actor) }),
  );

  app.post(
    "/v1/sql-console/sessions/:id/queries",
    {
      config: { requirement: "authenticated" },
      schema: {
        tags,
        params: c.sqlConsoleParams,
        body: c.sqlConsoleQueryBody,
        response: { 200: c.sqlConsoleQueryResult },
      },
    },
    async (req) => sqlConsole.query(req.actor, req.params.id, req.body.sql),
  );

  app.delete(
    "/v1/sql-console/sessions/:id",
    {
      config: { requirement: "authenticated" },
      schema: { tags, params: c.sqlConsoleParams },
    },
    async (req, reply) => {
      await sqlConsole.close(req.actor, req.callContext, req.params.id);
      return reply.code(204).send();
    },
  );
}
