/**
 * Pure query-policy rules: PostgreSQL's parse tree (libpg-query's JSON) → what each statement does
 * (`factsOf`), and those facts + a role's `queries:` rules → allow, or refuse naming the rule
 * (`decide`). No IO; the parser and its cache are in query-policy.ts.
 *
 * Sound by construction rather than by listing bad things: a statement kind not known to read is
 * `ddl`; a data-changing node anywhere in the tree (a CTE, EXPLAIN, PREPARE, a cursor, COPY's query)
 * makes the statement `dml`; anything that does not parse is refused.
 */
import type { QueryRules, StatementKind } from "../../contract/query-policy.js";

/** What one statement does, independent of any policy (so it can be cached by query text). */
export interface StatementFacts {
  /** The statement as PostgreSQL names it ("DELETE", "SELECT", "COPY", …). */
  command: string;
  /** The kinds a policy must allow for this statement to run. */
  kinds: StatementKind[];
  /** Functions called anywhere in it (lower case, schema dropped). */
  functions: string[];
  /** A DELETE or UPDATE (at any depth) without WHERE. */
  writesWithoutWhere: boolean;
  /** Changes the session's identity (SET ROLE, SET SESSION AUTHORIZATION, set_config('role', …)). */
  identityChange: string | null;
  /** Leaves read-only mode (BEGIN READ WRITE, SET default_transaction_read_only, RESET ALL, …). */
  readWriteEscape: string | null;
  /** EXECUTE name: runs a statement prepared earlier in the session. */
  executes: string | null;
  /**
   * Changes how the server reads SQL text from then on, so that it would no longer read what this
   * parser reads: a client encoding that can hide ASCII bytes in characters (see unsafeClientEncoding),
   * or standard_conforming_strings (off, backslashes escape quotes in '…' strings).
   */
  lexerChange: string | null;
  /** PREPARE name: the statement name it creates. */
  prepares: string | null;
}

export type ParsedQuery = { ok: true; statements: StatementFacts[] } | { ok: false; error: string };

export type QueryDecision =
  | { allowed: true }
  | {
      allowed: false;
      /** Stable rule name: unparsable, statement_kind, function, where_required, identity, parser_settings, read_only, prepared_unknown. */
      rule: QueryRule;
      /** The sentence the client sees (after "refused by Stint query policy"). */
      message: string;
      /** Index of the refused statement in a multi-statement string. */
      statement: number;
    };

export type QueryRule =
  | "unparsable"
  | "statement_kind"
  | "function"
  | "where_required"
  | "identity"
  | "parser_settings"
  | "read_only"
  | "prepared_unknown";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const DML_NODES = new Set(["InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"]);

/** Statements that only read, or only touch the session's own state. */
const READ_STATEMENTS = new Set([
  "SelectStmt",
  "ExplainStmt",
  "VariableShowStmt",
  "VariableSetStmt",
  "TransactionStmt",
  "DeclareCursorStmt",
  "FetchStmt",
  "ClosePortalStmt",
  "PrepareStmt",
  "ExecuteStmt",
  "DeallocateStmt",
  "CopyStmt",
]);
const DML_STATEMENTS = new Set(["InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "TruncateStmt", "CallStmt"]);
const UTILITY_STATEMENTS = new Set([
  "VacuumStmt",
  "ClusterStmt",
  "ReindexStmt",
  "CheckPointStmt",
  "LoadStmt",
  "ListenStmt",
  "UnlistenStmt",
  "NotifyStmt",
  "LockStmt",
  "DiscardStmt",
  "AlterSystemStmt",
]);

/**
 * Functions that change data even in a read-only transaction (large objects, notifications), or
 * whose writes the read-only login would refuse anyway (sequences): refused without `dml`.
 */
const READ_ONLY_DENIED_FUNCTIONS = new Set([
  "lo_create",
  "lo_creat",
  "lo_import",
  "lo_unlink",
  "lo_put",
  "lo_from_bytea",
  "lowrite",
  "lo_truncate",
  "lo_truncate64",
  "pg_notify",
  "nextval",
  "setval",
]);

/** Settings whose change would take the session out of what Stint signed it in as. */
const IDENTITY_SETTINGS = new Set(["role", "session_authorization"]);
/** Settings that hold read-only mode (the upstream login sets default_transaction_read_only=on). */
const READ_ONLY_SETTINGS = new Set(["default_transaction_read_only", "transaction_read_only"]);

function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** "DeleteStmt" → "DELETE", "CreateTableAsStmt" → "CREATE TABLE AS". */
function commandName(tag: string): string {
  return tag
    .replace(/Stmt$/, "")
    .replace(/([a-z])([A-Z])/g, "$1 $2")
    .toUpperCase();
}

/** A string constant's value (A_Const sval), or null. */
function constantString(node: Json | undefined): string | null {
  if (!isObject(node) || !isObject(node.A_Const)) return null;
  const sval = node.A_Const.sval;
  return isObject(sval) && typeof sval.sval === "string" ? sval.sval : null;
}

/** A transaction_read_only DefElem set to false (READ WRITE) among `options`. */
function setsReadWrite(options: Json | undefined): boolean {
  if (!Array.isArray(options)) return false;
  return options.some((option) => {
    if (!isObject(option) || !isObject(option.DefElem)) return false;
    const element = option.DefElem;
    if (element.defname !== "transaction_read_only") return false;
    const arg = element.arg;
    if (!isObject(arg) || !isObject(arg.A_Const)) return true; // not a plain constant: fail closed
    const ival = arg.A_Const.ival;
    return !(isObject(ival) && ival.ival === 1);
  });
}

function functionName(call: JsonObject): string {
  const parts = Array.isArray(call.funcname) ? call.funcname : [];
  const last = parts[parts.length - 1];
  return isObject(last) && isObject(last.String) && typeof last.String.sval === "string"
    ? last.String.sval.toLowerCase()
    : "";
}

/** The facts of one top-level statement node ({ "DeleteStmt": {…} }). */
function statementFacts(statement: JsonObject): StatementFacts {
  const tag = Object.keys(statement)[0] ?? "Unknown";
  const body = statement[tag];
  const kinds = new Set<StatementKind>();
  const functions = new Set<string>();
  let writesWithoutWhere = false;
  let identityChange: string | null = null;
  let readWriteEscape: string | null = null;
  let executes: string | null = null;
  let prepares: string | null = null;
  let lexerChange: string | null = null;

  // The statement's own kind.
  if (tag === "DoStmt") ["dml", "ddl", "utility"].forEach((kind) => kinds.add(kind as StatementKind));
  else if (DML_STATEMENTS.has(tag)) kinds.add("dml");
  else if (UTILITY_STATEMENTS.has(tag)) kinds.add("utility");
  else if (READ_STATEMENTS.has(tag)) kinds.add("select");
  else kinds.add("ddl");

  if (isObject(body)) {
    if (tag === "CopyStmt") {
      if (body.is_from === true) kinds.add("dml");
      // A server-side file or program (TO PROGRAM runs a shell command on the database host).
      if (typeof body.filename === "string" || body.is_program === true) kinds.add("utility");
    } else if (tag === "TransactionStmt") {
      const kind = typeof body.kind === "string" ? body.kind : "";
      if (/PREPARED|TRANS_STMT_PREPARE/.test(kind)) kinds.add("utility");
      if (setsReadWrite(body.options)) readWriteEscape = "BEGIN/START TRANSACTION READ WRITE";
    } else if (tag === "VariableSetStmt") {
      const name = typeof body.name === "string" ? body.name.toLowerCase() : "";
      if (IDENTITY_SETTINGS.has(name)) identityChange = `SET/RESET ${name.replace("_", " ").toUpperCase()}`;
      else if (body.kind === "VAR_RESET_ALL") readWriteEscape = "RESET ALL";
      else if (READ_ONLY_SETTINGS.has(name)) readWriteEscape = `SET/RESET ${name}`;
      else if (name === "standard_conforming_strings") lexerChange = "changing standard_conforming_strings";
      else if (name === "client_encoding" && body.kind === "VAR_SET_VALUE") {
        const value = Array.isArray(body.args) ? constantString(body.args[0]) : null;
        if (value === null || unsafeClientEncoding(value)) lexerChange = `client encoding ${value ?? "(computed)"}`;
      } else if (name === "session characteristics") readWriteEscape = "SET SESSION CHARACTERISTICS";
      else if (name === "transaction" && setsReadWrite(body.args)) readWriteEscape = "SET TRANSACTION READ WRITE";
    } else if (tag === "ExecuteStmt" && typeof body.name === "string") {
      executes = body.name;
    } else if (tag === "PrepareStmt" && typeof body.name === "string") {
      prepares = body.name;
    }
  }

  // Everything nested: data-changing nodes, function calls, SELECT INTO, row locks.
  const walk = (node: Json | undefined, key: string | null): void => {
    if (Array.isArray(node)) {
      for (const item of node) walk(item, null);
      return;
    }
    if (!isObject(node)) return;
    if (key !== null) {
      if (DML_NODES.has(key)) {
        kinds.add("dml");
        if ((key === "DeleteStmt" || key === "UpdateStmt") && node.whereClause === undefined) writesWithoutWhere = true;
      } else if (key === "SelectStmt") {
        if (node.intoClause !== undefined) kinds.add("ddl");
        if (node.lockingClause !== undefined) kinds.add("dml");
      } else if (key === "FuncCall") {
        const name = functionName(node);
        functions.add(name);
        if (name === "set_config") {
          const args = Array.isArray(node.args) ? node.args : [];
          const setting = constantString(args[0])?.toLowerCase() ?? null;
          if (setting === null || IDENTITY_SETTINGS.has(setting))
            identityChange ??= "set_config of role or authorization";
          if (setting === null || READ_ONLY_SETTINGS.has(setting)) readWriteEscape ??= "set_config of read-only mode";
          if (setting === null || setting === "client_encoding" || setting === "standard_conforming_strings")
            lexerChange ??= `set_config of ${setting ?? "a computed setting"}`;
        }
      }
    }
    for (const [childKey, child] of Object.entries(node)) walk(child, childKey);
  };
  walk(body, tag);

  return {
    command: commandName(tag),
    kinds: [...kinds],
    functions: [...functions],
    writesWithoutWhere,
    identityChange,
    readWriteEscape,
    executes,
    prepares,
    lexerChange,
  };
}

/** The facts of every statement in a parse result ({ stmts: [{ stmt: {…} }] }). */
export function factsOf(parseResult: unknown): StatementFacts[] {
  const root = parseResult as JsonObject;
  const statements = Array.isArray(root?.stmts) ? root.stmts : [];
  return statements.map((entry) => {
    const statement = isObject(entry) && isObject(entry.stmt) ? entry.stmt : { Unknown: null };
    return statementFacts(statement);
  });
}

/**
 * Client encodings whose multibyte characters may contain ASCII bytes (a quote, a backslash): the
 * server reads those bytes as part of a character, a UTF-8 parser as syntax. Under a query policy
 * the proxy refuses them (at startup and in SET), so the policy parses what the server will run.
 */
const UNSAFE_ENCODINGS = new Set([
  "sjis",
  "shiftjis",
  "shiftjis2004",
  "mskanji",
  "win932",
  "cp932",
  "big5",
  "win950",
  "cp950",
  "gbk",
  "win936",
  "cp936",
  "uhc",
  "win949",
  "cp949",
  "gb18030",
  "johab",
]);

export function unsafeClientEncoding(name: string): boolean {
  return UNSAFE_ENCODINGS.has(name.toLowerCase().replace(/[^a-z0-9]/g, ""));
}

/** Whether `name` matches a deny pattern (exact, or `prefix*`). */
export function functionDenied(name: string, patterns: readonly string[]): string | null {
  for (const pattern of patterns) {
    if (pattern.endsWith("*") ? name.startsWith(pattern.slice(0, -1)) : name === pattern) return pattern;
  }
  return null;
}

export interface SessionStatements {
  /**
   * Names of the statements this session prepared (PREPARE, or a named Parse) that the policy let
   * through: EXECUTE runs only those (one refused, or never seen, is refused by name).
   */
  preparedNames: ReadonlySet<string>;
}

/** The policy's decision on a whole query string (all statements must pass). */
export function decide(parsed: ParsedQuery, rules: QueryRules, session: SessionStatements): QueryDecision {
  if (!parsed.ok)
    return {
      allowed: false,
      rule: "unparsable",
      message: `the statement does not parse, so it is refused (${parsed.error})`,
      statement: 0,
    };
  const readOnly = !rules.allow.includes("dml");
  /** Earlier statements of the same string may PREPARE what a later one EXECUTEs. */
  const preparedHere = new Set<string>();
  for (let index = 0; index < parsed.statements.length; index++) {
    const facts = parsed.statements[index]!;
    const refuse = (rule: QueryRule, message: string): QueryDecision => ({
      allowed: false,
      rule,
      message,
      statement: index,
    });
    if (facts.identityChange !== null)
      return refuse("identity", `${facts.identityChange} is not allowed: the session runs as the login Stint opened`);
    if (facts.lexerChange !== null)
      return refuse(
        "parser_settings",
        `${facts.lexerChange} is not allowed under a query policy: the server would read SQL text differently from the policy's parser`,
      );
    if (readOnly && facts.readWriteEscape !== null)
      return refuse("read_only", `${facts.readWriteEscape} is not allowed: this role's sessions are read-only`);
    for (const name of facts.functions) {
      if (readOnly && READ_ONLY_DENIED_FUNCTIONS.has(name))
        return refuse("read_only", `function ${name} writes, and this role's sessions are read-only`);
      const pattern = functionDenied(name, rules.denyFunctions);
      if (pattern !== null) return refuse("function", `function ${name} is denied by this role's policy (${pattern})`);
    }
    const missing = facts.kinds.every((kind) => rules.allow.includes(kind))
      ? []
      : facts.kinds.filter((kind) => !rules.allow.includes(kind));
    if (missing.length > 0)
      return refuse(
        "statement_kind",
        `${facts.command} needs ${missing.join(", ")}; this role's policy allows ${rules.allow.join(", ")} statements only`,
      );
    if (rules.requireWhere && facts.writesWithoutWhere)
      return refuse("where_required", `DELETE and UPDATE without WHERE are refused by this role's policy`);
    if (facts.prepares !== null) preparedHere.add(facts.prepares);
    if (facts.executes !== null && !session.preparedNames.has(facts.executes) && !preparedHere.has(facts.executes))
      return refuse(
        "prepared_unknown",
        `prepared statement ${facts.executes} was not prepared under this policy in this session (refused, or never prepared)`,
      );
  }
  return { allowed: true };
}

/**
 * Where the parse tree has integer constants: their offset in the text → value. The parse cache
 * uses it to know which digit runs of a query text are plain integer literals (see query-policy.ts).
 */
export function integerConstants(parseResult: unknown): Map<number, number> {
  const found = new Map<number, number>();
  const walk = (node: Json | undefined, key: string | null): void => {
    if (Array.isArray(node)) {
      for (const item of node) walk(item, null);
      return;
    }
    if (!isObject(node)) return;
    if (key === "A_Const" && isObject(node.ival) && typeof node.location === "number") {
      const value = node.ival.ival;
      found.set(node.location, typeof value === "number" ? value : 0);
    }
    for (const childKey in node) walk(node[childKey], childKey);
  };
  walk(parseResult as Json, null);
  return found;
}
