/** The client's startup parameters: which go upstream (pure). */

/**
 * Startup parameters passed on to the server (lower case: PostgreSQL compares them so). All are
 * settings a session may SET itself anyway; the rest are dropped and `options` (which sets any
 * setting, `-c role=…` too) is refused. user and database are the gate's.
 */
const FORWARDED_PARAMETERS = new Map(
  [
    "application_name",
    "client_encoding",
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "extra_float_digits",
    "search_path",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
  ].map((name) => [name.toLowerCase(), name]),
);
/** The startup parameters that go upstream (and the names dropped), or why the connection is refused. */
export function forwardedParameters(
  parameters: Record<string, string>,
): { forwarded: Record<string, string>; dropped: string[] } | { refused: string } {
  const forwarded: Record<string, string> = {};
  const dropped: string[] = [];
  for (const [name, value] of Object.entries(parameters)) {
    const lower = name.toLowerCase();
    if (lower === "user" || lower === "database" || lower === "replication") continue;
    if (lower === "options")
      return {
        refused:
          "the Stint proxy does not pass on the options startup parameter (command-line settings); SET what you need after connecting",
      };
    const canonical = FORWARDED_PARAMETERS.get(lower);
    if (canonical === undefined) dropped.push(name.slice(0, 64));
    else forwarded[canonical] = value;
  }
  return { forwarded, dropped };
}
