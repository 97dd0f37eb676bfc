/**
 * Hot statements built once (issue 14 item 4): a Kysely query is compiled the first time it runs, with a
 * placeholder for each value its caller passes and its constants written into the text as literals, and the
 * text is marked `PREPARED` (lib/db.ts), so PostgreSQL parses and plans it once per connection (a partial
 * index whose predicate names those constants stays usable by its generic plan). Each later call only binds
 * its values: no query building, compiling or planning per call. PGlite runs the same text unprepared.
 */
import { CompiledQuery, type Compilable, type Kysely, type QueryResult } from "kysely";
import type { Database } from "../../db/index.js";
import { PREPARED } from "../../lib/db.js";

/** A placeholder's value while compiling: a text no caller's value starts with. */
const HOLE = "\u0000stint-precompiled:";

/** A constant of the query as an SQL literal; anything else must be one of the caller's values. */
function literal(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  if (typeof value === "string") return `'${value.replaceAll("'", "''")}'`;
  throw new TypeError(`precompiled: a constant of type ${typeof value} must be passed as a value`);
}

/** The text and, for each of its parameters in order, the name of the caller's value it takes. */
export function compileOnce(query: { sql: string; parameters: readonly unknown[] }) {
  const order: string[] = [];
  const text = query.sql.replace(/\$(\d+)\b/g, (_, k: string) => {
    const value = query.parameters[Number(k) - 1];
    if (typeof value !== "string" || !value.startsWith(HOLE)) return literal(value);
    order.push(value.slice(HOLE.length));
    return `$${order.length}`;
  });
  return { text: `${PREPARED} ${text}`, order };
}

/**
 * `build` run once with placeholders for `names`; the statement it returns, run with the caller's values.
 * `build` must not branch on its values (they are placeholders); a statement of another shape is another
 * precompiled one.
 */
export function precompiled<P extends Record<string, unknown>, R>(
  names: readonly (keyof P & string)[],
  build: (db: Kysely<Database>, p: P) => Compilable<R>,
): (db: Kysely<Database>, values: P) => Promise<QueryResult<R>> {
  let compiled: ReturnType<typeof compileOnce> | undefined;
  return (db, values) => {
    if (!compiled) {
      const holes = Object.fromEntries(names.map((name) => [name, HOLE + name])) as P;
      compiled = compileOnce(build(db, holes).compile());
      const missing = names.filter((name) => !compiled!.order.includes(name));
      if (missing.length > 0) throw new TypeError(`precompiled: ${missing.join(", ")} not in the statement`);
    }
    const { text, order } = compiled;
    return db.executeQuery(
      CompiledQuery.raw(
        text,
        order.map((name) => values[name]),
      ) as CompiledQuery<R>,
    );
  };
}
