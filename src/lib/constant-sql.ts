/**
 * A hot statement whose text is constant, with one parameter (a JSON or text value that carries everything
 * that varies): built as Kysely's raw SQL of two constant pieces around the value, so there is no query to build
 * per call, node-postgres serializes one value (no array escaped element by element), the text can be prepared
 * on each PostgreSQL connection (`PREPARED` in it), and plugins still see the statement (tests count it or make
 * it fail).
 */
import { sql, type RawBuilder } from "kysely";

/** `text` with `$1` at exactly one place, as a statement taking that parameter's value. */
export function oneParameter<R = unknown>(text: string): (value: unknown) => RawBuilder<R> {
  const pieces = text.split("$1");
  const [before, after] = pieces;
  if (pieces.length !== 2 || before === undefined || after === undefined || /^\d/.test(after))
    throw new Error("oneParameter: the text must hold $1 exactly once");
  const head = sql.raw(before);
  const tail = sql.raw(after);
  return (value) => sql<R>`${head}${value}${tail}`;
}
