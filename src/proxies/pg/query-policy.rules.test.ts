/**
 * The query policy's rules, table by table, on trees from PostgreSQL's parser (libpg-query), and the
 * parse cache's sharing of texts that differ only in integer literals.
 */
import { parseSync } from "libpg-query";
import { beforeAll, describe, expect, it } from "vitest";
import { queryRules, type QueryRules } from "../../contract/query-policy.js";
import { checkQuery, loadQueryParser, parseQuery, queryParserStats } from "./query-policy.js";
import { decide, factsOf, functionDenied, unsafeClientEncoding } from "./query-policy.rules.js";

const readOnly: QueryRules = queryRules.parse({});
const dml: QueryRules = queryRules.parse({ allow: ["select", "dml"] });
const everything: QueryRules = queryRules.parse({ allow: ["select", "dml", "ddl", "utility"], denyFunctions: [] });
const NONE = new Set<string>();

const verdict = (sql: string, rules: QueryRules, prepared: ReadonlySet<string> = NONE) => {
  const decision = checkQuery(sql, rules, prepared);
  return decision.allowed ? "allow" : decision.rule;
};

beforeAll(async () => {
  await loadQueryParser();
});

describe("read-only (allow: [select])", () => {
  const table: [string, string][] = [
    ["SELECT * FROM t WHERE id = 1", "allow"],
    ["select 1; select 2", "allow"],
    ["VALUES (1)", "allow"],
    ["TABLE t", "allow"],
    ["SHOW search_path", "allow"],
    ["SET search_path = public", "allow"],
    ["SET statement_timeout = '5s'", "allow"],
    ["BEGIN", "allow"],
    ["BEGIN READ ONLY", "allow"],
    ["START TRANSACTION ISOLATION LEVEL REPEATABLE READ", "allow"],
    ["COMMIT", "allow"],
    ["ROLLBACK TO SAVEPOINT s", "allow"],
    ["EXPLAIN SELECT 1", "allow"],
    ["EXPLAIN ANALYZE SELECT 1", "allow"],
    ["COPY t TO STDOUT", "allow"],
    ["COPY (SELECT 1) TO STDOUT WITH (FORMAT csv)", "allow"],
    ["DECLARE c CURSOR FOR SELECT 1", "allow"],
    ["FETCH 10 FROM c", "allow"],
    ["CLOSE c", "allow"],
    ["PREPARE p AS SELECT $1::int", "allow"],
    ["PREPARE p AS SELECT 1; EXECUTE p", "allow"],
    ["DEALLOCATE ALL", "allow"],
    ["SELECT set_config('search_path', 'public', false)", "allow"],
    ["SELECT $$DELETE FROM t$$", "allow"],
    ["-- DELETE FROM t\nSELECT 1", "allow"],
    ["", "allow"],
    ["  ;  ", "allow"],
    ["DELETE FROM t WHERE id = 1", "statement_kind"],
    ["INSERT INTO t VALUES (1)", "statement_kind"],
    ["SELECT 1; UPDATE t SET x = 1 WHERE id = 1", "statement_kind"],
    ["WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "statement_kind"],
    ["EXPLAIN DELETE FROM t", "statement_kind"],
    ["EXPLAIN ANALYZE DELETE FROM t", "statement_kind"],
    ["COPY t FROM STDIN", "statement_kind"],
    ["COPY t TO PROGRAM 'id'", "statement_kind"],
    ["COPY t TO '/tmp/x'", "statement_kind"],
    ["SELECT * INTO t2 FROM t", "statement_kind"],
    ["SELECT * FROM t FOR UPDATE", "statement_kind"],
    ["SELECT * FROM t FOR SHARE", "statement_kind"],
    ["DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE", "statement_kind"],
    ["PREPARE p AS DELETE FROM t", "statement_kind"],
    ["DO $$ BEGIN END $$", "statement_kind"],
    ["CALL p()", "statement_kind"],
    ["TRUNCATE t", "statement_kind"],
    ["CREATE TABLE x (a int)", "statement_kind"],
    ["CREATE TEMP TABLE x (a int)", "statement_kind"],
    ["VACUUM", "statement_kind"],
    ["LISTEN x", "statement_kind"],
    ["DISCARD ALL", "statement_kind"],
    ["PREPARE TRANSACTION 'x'", "statement_kind"],
    ["ALTER SYSTEM SET work_mem = '1GB'", "statement_kind"],
    ["SELECT pg_terminate_backend(1)", "function"],
    ["SELECT PG_CATALOG.PG_READ_FILE('x')", "function"],
    ["SELECT dblink_connect('x')", "function"],
    ["SELECT * FROM pg_ls_waldir()", "function"],
    ["SELECT (SELECT lo_export(1, '/tmp/x'))", "function"],
    ["SELECT U&\"lo_\\0065xport\"(1, 'x')", "function"],
    ["SET ROLE postgres", "identity"],
    ["RESET ROLE", "identity"],
    ["SET SESSION AUTHORIZATION DEFAULT", "identity"],
    ["SELECT set_config('role', 'postgres', false)", "identity"],
    ["SELECT set_config(x, 'y', false) FROM t", "identity"],
    ["SET client_encoding = 'SJIS'", "parser_settings"],
    ["SET NAMES 'gbk'", "parser_settings"],
    ["SET standard_conforming_strings = off", "parser_settings"],
    ["SET LOCAL standard_conforming_strings TO on", "parser_settings"],
    ["RESET standard_conforming_strings", "parser_settings"],
    ["SELECT set_config('standard_conforming_strings', 'off', false)", "parser_settings"],
    ["BEGIN READ WRITE", "read_only"],
    ["START TRANSACTION READ WRITE", "read_only"],
    ["SET TRANSACTION READ WRITE", "read_only"],
    ["SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", "read_only"],
    ["SET default_transaction_read_only = off", "read_only"],
    ["RESET transaction_read_only", "read_only"],
    ["RESET ALL", "read_only"],
    ["SELECT set_config('default_transaction_read_only', 'off', true)", "read_only"],
    ["SELECT lo_create(0)", "read_only"],
    ["SELECT lo_from_bytea(0, 'x')", "read_only"],
    ["SELECT pg_notify('c', 'x')", "read_only"],
    ["SELECT nextval('s')", "read_only"],
    ["SELECT lo_get(1)", "allow"],
    ["EXECUTE p", "prepared_unknown"],
    ["SELEC 1", "unparsable"],
    ["SELECT 'unterminated", "unparsable"],
    ["DE/**/LETE FROM t", "unparsable"],
  ];
  it.each(table)("%s → %s", (sql, expected) => {
    expect(verdict(sql, readOnly)).toBe(expected);
  });

  it("EXECUTE runs a statement this session prepared under the policy", () => {
    expect(verdict("EXECUTE p(1)", readOnly, new Set(["p"]))).toBe("allow");
    expect(verdict("EXECUTE q(1)", readOnly, new Set(["p"]))).toBe("prepared_unknown");
  });
});

describe("other policies", () => {
  const table: [string, QueryRules, string][] = [
    ["DELETE FROM t WHERE id = 1", dml, "allow"],
    ["UPDATE t SET x = 1 WHERE true", dml, "allow"],
    ["BEGIN READ WRITE", dml, "allow"],
    ["SET default_transaction_read_only = off", dml, "allow"],
    ["DELETE FROM t", dml, "where_required"],
    ["UPDATE t SET x = 1", dml, "where_required"],
    ["WITH d AS (DELETE FROM t RETURNING 1) SELECT 1", dml, "where_required"],
    ["DELETE FROM t", queryRules.parse({ allow: ["select", "dml"], requireWhere: false }), "allow"],
    ["CREATE TABLE x (a int)", dml, "statement_kind"],
    ["DO $$ BEGIN END $$", dml, "statement_kind"],
    ["DO $$ BEGIN END $$", everything, "allow"],
    ["SET ROLE postgres", everything, "identity"],
    ["SET client_encoding = 'BIG5'", everything, "parser_settings"],
    ["SET client_encoding = 'UTF8'", everything, "allow"],
    ["SELECT pg_terminate_backend(1)", everything, "allow"],
    ["SELECT pg_terminate_backend(1)", dml, "function"],
    ["SELECT lo_create(0), nextval('s'), pg_notify('c', 'x')", dml, "allow"],
  ];
  it.each(table)("%s (%j) → %s", (sql, rules, expected) => {
    expect(verdict(sql, rules)).toBe(expected);
  });
});

describe("facts and helpers", () => {
  it("names the refused statement and the rule in the sentence", () => {
    const decision = decide({ ok: true, statements: factsOf(parseSync("SELECT 1; DELETE FROM t")) }, readOnly, {
      preparedNames: NONE,
    });
    expect(decision).toEqual({
      allowed: false,
      rule: "statement_kind",
      message: "DELETE needs dml; this role's policy allows select statements only",
      statement: 1,
    });
  });

  it("function patterns: exact names and prefixes", () => {
    expect(functionDenied("dblink_exec", ["dblink*"])).toBe("dblink*");
    expect(functionDenied("pg_read_file", ["pg_read_file"])).toBe("pg_read_file");
    expect(functionDenied("pg_read_file_x", ["pg_read_file"])).toBeNull();
  });

  it("client encodings whose characters can hold ASCII bytes are unsafe", () => {
    for (const name of ["SJIS", "Shift_JIS", "gbk", "BIG5", "GB18030", "WIN932", "uhc", "JOHAB"])
      expect(unsafeClientEncoding(name), name).toBe(true);
    for (const name of ["UTF8", "utf-8", "SQL_ASCII", "LATIN1", "EUC_JP", "WIN1252"])
      expect(unsafeClientEncoding(name), name).toBe(false);
  });

  it("the schema refuses unknown kinds and bad function patterns", () => {
    expect(queryRules.safeParse({ allow: ["everything"] }).success).toBe(false);
    expect(queryRules.safeParse({ denyFunctions: ["pg_*_file; drop"] }).success).toBe(false);
    expect(queryRules.parse({ denyFunctions: ["DBLINK*"] }).denyFunctions).toEqual(["dblink*"]);
  });
});

describe("the parse cache", () => {
  it("a text that differs only in integer literals is a hit; any other difference is a parse of its own", () => {
    const before = queryParserStats();
    parseQuery("SELECT abalance FROM pgbench_accounts WHERE aid = 17");
    parseQuery("SELECT abalance FROM pgbench_accounts WHERE aid = 4242");
    parseQuery("SELECT abalance FROM pgbench_accounts WHERE aid = 9");
    const after = queryParserStats();
    expect(after.misses - before.misses).toBe(1);
    expect(after.hits - before.hits).toBe(2);
  });

  it("digits in strings, identifiers, comments and parameters are not literals: no sharing", () => {
    const pairs: [string, string, string, string][] = [
      // [first text, its verdict, a text of the same shape, its verdict]
      ["SET client_encoding = 'WIN1252'", "allow", "SET client_encoding = 'WIN932'", "parser_settings"],
      ["SELECT f1()", "allow", "SELECT f2()", "allow"],
      ["SELECT 1 /* 5 */", "allow", "SELECT 1 /* 6 */", "allow"],
      ["EXECUTE p1", "allow", "EXECUTE p2", "prepared_unknown"],
    ];
    for (const [first, firstVerdict, second, secondVerdict] of pairs) {
      const prepared = new Set(["p1"]);
      expect(verdict(first, everything, prepared), first).toBe(firstVerdict);
      const before = queryParserStats();
      expect(verdict(second, everything, prepared), second).toBe(secondVerdict);
      expect(queryParserStats().misses - before.misses, second).toBe(1);
    }
    // A denied function whose name differs from an allowed one only in a digit.
    const rules = queryRules.parse({ allow: ["select"], denyFunctions: ["md4"] });
    expect(verdict("SELECT md5('x')", rules)).toBe("allow");
    expect(verdict("SELECT md4('x')", rules)).toBe("function");
  });
});
