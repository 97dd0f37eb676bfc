/**
 * Password literals out of SQL text bound for the audit log (and so the SIEM): a statement a user typed through
 * a database proxy may carry one (`ALTER ROLE app PASSWORD 'hunter2…'`, MySQL's `IDENTIFIED BY '…'`, `SET
 * PASSWORD = '…'`, a foreign server's `OPTIONS (password '…')`, a `dblink` connection string's `password=…`).
 * The recording keeps the statement as it ran; an audit event gets this redacted copy.
 *
 * Deliberately blunt, so that no dialect or quoting trick leaves a secret behind: a text in which the word
 * `password` or `identified` appears anywhere (any case; in a literal or a comment too) has **every** quoted
 * token replaced by `'<redacted>'` — single-quoted (read both with backslashes as escapes and as characters,
 * doubled quotes as escapes; an unclosed one runs to the end), double-quoted (MySQL strings; PostgreSQL identifiers lose their name), and
 * dollar-quoted. The audit trail may lose a detail (a `VALID UNTIL` date, a user name), never a secret; the
 * statement's shape stays readable. A text without either word comes back unchanged. Values bound to such a
 * statement's parameters (`INSERT … (name, password) VALUES ($1, $2)`) are redacted by the caller
 * (`mentionsPassword`).
 */

export const REDACTED = "'<redacted>'";

const TRIGGER = /password|identified/i;
const DOLLAR = String.raw`\$([A-Za-z_][A-Za-z0-9_]*)?\$[\s\S]*?(?:\$\1\$|$)`;
/** Quoted tokens read with backslashes as escapes (MySQL, PostgreSQL's E'…'). */
const ESCAPED = new RegExp(
  String.raw`[Ee]?'(?:[^'\\]|\\[\s\S]|'')*(?:'|$)|"(?:[^"\\]|\\[\s\S]|"")*(?:"|$)|${DOLLAR}`,
  "g",
);
/** Quoted tokens read with backslashes as characters (PostgreSQL's standard strings). */
const STANDARD = new RegExp(String.raw`'(?:[^']|'')*(?:'|$)|"(?:[^"]|"")*(?:"|$)|${DOLLAR}`, "g");

/** Whether `sql` mentions a password (see above): its quoted tokens, and any values bound to it, are redacted. */
export function mentionsPassword(sql: string): boolean {
  return TRIGGER.test(sql);
}

/**
 * `sql` with every quoted token redacted when it mentions a password (see above); otherwise unchanged. `mentions`:
 * the decision taken on a longer text this one was cut from. The text is read both ways a backslash may be meant
 * (an escape, or a character), and whatever either reading takes for quoted goes: a dialect's quoting never
 * leaves part of a secret outside.
 */
export function redactSqlSecrets(sql: string, mentions = mentionsPassword(sql)): string {
  if (!mentions) return sql;
  const ranges: [number, number][] = [];
  for (const pattern of [ESCAPED, STANDARD])
    for (const match of sql.matchAll(pattern)) ranges.push([match.index, match.index + match[0].length]);
  ranges.sort((a, b) => a[0] - b[0]);
  let out = "";
  let at = 0;
  for (let i = 0; i < ranges.length;) {
    const start = ranges[i]![0];
    let end = ranges[i]![1];
    for (i += 1; i < ranges.length && ranges[i]![0] < end; i += 1) end = Math.max(end, ranges[i]![1]);
    out += sql.slice(at, start) + REDACTED;
    at = end;
  }
  return out + sql.slice(at);
}
