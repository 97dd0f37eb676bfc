/**
 * The query policy's parser: PostgreSQL's own grammar (libpg-query, the server's parser compiled to
 * WebAssembly), never regular expressions. Parsing is synchronous once the module is loaded
 * (`loadQueryParser`, at proxy start). Results are cached (LRU) so that a client repeating a
 * statement pays for one parse. The cache holds facts, not decisions: they do not depend on the
 * policy, so sessions under different roles share it.
 *
 * The cache also serves texts that differ only in integer literals ("… WHERE aid = 17" and
 * "… WHERE aid = 42", as pgbench and many ORMs send them in the simple protocol): an entry records
 * which digit runs of the parsed text the parser itself read as integer constants (A_Const at that
 * offset with that value, standing alone between non-word characters). A new text matches an entry
 * when everything but those runs is identical, character for character, and those runs are still
 * digits. Such a text lexes the same token by token (the lexer reaches each run in the same state,
 * reads a number and leaves it the same way), so it parses to the same tree with other numbers, or
 * fails at the server. The facts never depend on a number's value. Any other difference (a digit in
 * a string, an identifier, a comment, a $1) means another entry and a parse of its own.
 */
import { loadModule, parseSync } from "libpg-query";
import type { QueryRules } from "../../contract/query-policy.js";
import { decide, factsOf, integerConstants, type ParsedQuery, type QueryDecision } from "./query-policy.rules.js";

/** Query shapes kept; each entry is a text's shape and a few small facts. */
const CACHE_ENTRIES = 2_000;
/** Longer texts are parsed every time (a bulk INSERT … VALUES is not worth keeping). */
const CACHE_MAX_TEXT = 16 * 1024;

let loading: Promise<void> | null = null;
let loaded = false;

/** Loads the WebAssembly parser once; the proxy awaits it before accepting sessions. */
export function loadQueryParser(): Promise<void> {
  loading ??= loadModule().then(() => {
    loaded = true;
  });
  return loading;
}

interface Shape {
  /** The text with each run of ASCII digits replaced by a NUL (never in a query text). */
  key: string;
  runs: string[];
  starts: number[];
  ascii: boolean;
}

interface Entry {
  parsed: ParsedQuery;
  /** `inserted` when this entry last moved to the young end of the LRU order. */
  bumped: number;
  runs: string[];
  /** Per digit run: a plain integer literal of the parsed text (may differ in a matching text). */
  literal: boolean[];
}

const cache = new Map<string, Entry>();
let hits = 0;
let misses = 0;
/** Moves to the young end of the LRU order so far (insertions and bumps). */
let inserted = 0;

const isDigit = (code: number): boolean => code >= 48 && code <= 57;
/** A character that would join a number to a neighbouring token: a word character, `.`, `$`, `'`, `"`, non-ASCII. */
const joins = (code: number): boolean =>
  isDigit(code) ||
  (code >= 65 && code <= 90) ||
  (code >= 97 && code <= 122) ||
  code === 95 || // _
  code === 46 || // .
  code === 36 || // $
  code === 39 || // '
  code === 34 || // "
  code > 127;

function shapeOf(sql: string): Shape {
  const runs: string[] = [];
  const starts: number[] = [];
  let key = "";
  let ascii = true;
  let segment = 0;
  for (let i = 0; i < sql.length; i++) {
    const code = sql.charCodeAt(i);
    if (code > 127) ascii = false;
    if (!isDigit(code)) continue;
    let end = i + 1;
    while (end < sql.length && isDigit(sql.charCodeAt(end))) end++;
    key += sql.slice(segment, i) + "\0";
    runs.push(sql.slice(i, end));
    starts.push(i);
    segment = end;
    i = end - 1;
  }
  key += sql.slice(segment);
  return { key, runs, starts, ascii };
}

function matches(entry: Entry, runs: string[]): boolean {
  if (entry.runs.length !== runs.length) return false;
  for (let i = 0; i < runs.length; i++) if (!entry.literal[i] && entry.runs[i] !== runs[i]) return false;
  return true;
}

/** Parses `sql` (cached): the facts of each statement, or why it does not parse. */
export function parseQuery(sql: string): ParsedQuery {
  if (sql.length > CACHE_MAX_TEXT) {
    misses += 1;
    return parseUncached(sql).parsed;
  }
  const shape = shapeOf(sql);
  const cached = cache.get(shape.key);
  if (cached !== undefined && matches(cached, shape.runs)) {
    hits += 1;
    // Most recently used goes last (Map keeps insertion order); an entry in the younger half stays put.
    if (inserted - cached.bumped > CACHE_ENTRIES / 2) {
      cache.delete(shape.key);
      cache.set(shape.key, cached);
      cached.bumped = ++inserted;
    }
    return cached.parsed;
  }
  misses += 1;
  const { parsed, constants } = parseUncached(sql);
  const literal = shape.runs.map((run, i) => {
    const start = shape.starts[i]!;
    const end = start + run.length;
    return (
      shape.ascii &&
      constants.get(start) === Number(run) &&
      (start === 0 || !joins(sql.charCodeAt(start - 1))) &&
      (end === sql.length || !joins(sql.charCodeAt(end)))
    );
  });
  if (cached === undefined && cache.size >= CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
  cache.delete(shape.key);
  cache.set(shape.key, { parsed, runs: shape.runs, literal, bumped: ++inserted });
  return parsed;
}

const NO_CONSTANTS = new Map<number, number>();

function parseUncached(sql: string): { parsed: ParsedQuery; constants: Map<number, number> } {
  if (!loaded) return { parsed: { ok: false, error: "the SQL parser is not loaded" }, constants: NO_CONSTANTS };
  // An empty string (or only blanks) is PostgreSQL's empty query: nothing runs.
  if (sql.trim() === "") return { parsed: { ok: true, statements: [] }, constants: NO_CONSTANTS };
  try {
    const tree = parseSync(sql);
    return { parsed: { ok: true, statements: factsOf(tree) }, constants: integerConstants(tree) };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { parsed: { ok: false, error: message.slice(0, 200) }, constants: NO_CONSTANTS };
  }
}

/** Parses (cached) and decides in one call. */
export function checkQuery(sql: string, rules: QueryRules, preparedNames: ReadonlySet<string>): QueryDecision {
  return decide(parseQuery(sql), rules, { preparedNames });
}

/** For benchmarks and tests: cache counters since start. */
export function queryParserStats(): { hits: number; misses: number; entries: number } {
  return { hits, misses, entries: cache.size };
}
