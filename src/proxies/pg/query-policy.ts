/**
 * The query policy's parser: PostgreSQL's own grammar (libpg-query, the server's parser compiled to
 * WebAssembly), never regular expressions. Parsing is synchronous once the module is loaded
 * (`loadQueryParser`, at proxy start); results are cached by query text in an LRU, so a client
 * repeating a statement (pgbench -S, an ORM) pays for one parse. The cache holds facts, not decisions:
 * they do not depend on the policy, so sessions under different roles share it.
 */
import { loadModule, parseSync } from "libpg-query";
import type { QueryRules } from "../../contract/query-policy.js";
import { decide, factsOf, type ParsedQuery, type QueryDecision } from "./query-policy.rules.js";

/** Query texts kept; each entry is the text and a few small facts. */
const CACHE_ENTRIES = 2_000;
/** Longer texts are parsed every time (a bulk INSERT … VALUES is not worth keeping). */
const CACHE_MAX_TEXT = 16 * 1024;

let loading: Promise<void> | null = null;
let loaded = false;

/** Loads the WebAssembly parser once; the proxy awaits it before accepting sessions with a policy. */
export function loadQueryParser(): Promise<void> {
  loading ??= loadModule().then(() => {
    loaded = true;
  });
  return loading;
}

const cache = new Map<string, ParsedQuery>();
let hits = 0;
let misses = 0;

/** Parses `sql` (cached): the facts of each statement, or why it does not parse. */
export function parseQuery(sql: string): ParsedQuery {
  const cached = cache.get(sql);
  if (cached !== undefined) {
    hits += 1;
    // Most recently used goes last: Map keeps insertion order.
    cache.delete(sql);
    cache.set(sql, cached);
    return cached;
  }
  misses += 1;
  const parsed = parseUncached(sql);
  if (sql.length <= CACHE_MAX_TEXT) {
    if (cache.size >= CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
    cache.set(sql, parsed);
  }
  return parsed;
}

function parseUncached(sql: string): ParsedQuery {
  if (!loaded) return { ok: false, error: "the SQL parser is not loaded" };
  // An empty string (or only blanks) is PostgreSQL's empty query: nothing runs.
  if (sql.trim() === "") return { ok: true, statements: [] };
  try {
    return { ok: true, statements: factsOf(parseSync(sql)) };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { ok: false, error: message.slice(0, 200) };
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
