/**
 * The configuration-file loader (`stint apply -f`, `stint diff -f`): a user's YAML in, problems
 * out. The input is the file's bytes, read as UTF-8 the way the CLI reads it.
 * Properties: parseConfig never throws (its contract) and never hangs; every problem has a
 * position inside the file and a message; locate() places any later problem without throwing.
 */
import fc from "fast-check";
import { parseConfig } from "../../src/modules/catalog/catalog.config.js";
import { expect, feature, kindOf, only, type FuzzTarget, type ValidInput } from "../harness.js";

/** parseConfig with process warnings caught: the YAML library warns on stderr, past the problem list. */
function parseQuietly(text: string) {
  const warnings: string[] = [];
  const emitWarning = process.emitWarning;
  process.emitWarning = ((warning: string | Error) => {
    warnings.push(String(warning));
  }) as typeof process.emitWarning;
  try {
    return { parsed: parseConfig(text), warnings };
  } finally {
    process.emitWarning = emitWarning;
  }
}

/** The last file parsed by check(), so a valid input's round trip does not parse it a second time. */
let last: { text: string; parsed: ReturnType<typeof parseConfig> } | undefined;

function check(input: Buffer): void {
  const text = input.toString("utf8");
  const result = only(
    () => false,
    "parseConfig",
    () => parseQuietly(text),
  );
  last = result === undefined ? undefined : { text, parsed: result.parsed };
  expect(result === undefined || result.warnings.length === 0, `parseConfig warned: ${result?.warnings.join("; ")}`);
  const parsed = result?.parsed;
  if (parsed === undefined) return;
  const lines = text.split(/\r\n|\r|\n/).length;
  for (const problem of parsed.problems) {
    expect(
      Number.isInteger(problem.line) && problem.line >= 1 && problem.line <= lines + 1,
      `problem at line ${problem.line} of a ${lines}-line file`,
    );
    expect(Number.isInteger(problem.column) && problem.column >= 1, `problem at column ${problem.column}`);
    expect(typeof problem.message === "string" && problem.message.length > 0, "a problem without a message");
    feature(`problem:${kindOf(problem.message)}`);
  }
  feature(parsed.fatal ? "fatal" : `kinds:${Object.keys(parsed.desired).sort().join(",")}`);
  if (parsed.fatal) {
    expect(parsed.problems.length > 0, "a fatal parse without a problem");
    return;
  }
  only(
    () => false,
    "locate",
    () => parsed.locate({ path: ["roles", 0, "name"], message: "x" }),
  );
  only(
    () => false,
    "locate",
    () => parsed.locate({ path: ["nowhere", 99, "deeper"], message: "x", atKey: true }),
  );
}

/** Plain names: the schema's name rules. */
const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/).filter((s) => !["true", "false", "null"].includes(s));
const duration = fc.constantFrom("15m", "1h", "2h", "8h", "1d");

/** A well-formed file built from parts: it parses without problems and asks for what it says. */
const valid: fc.Arbitrary<ValidInput> = fc
  .record({
    groups: fc.uniqueArray(name, { maxLength: 3 }),
    members: fc.uniqueArray(name, { maxLength: 3 }),
    role: name,
    duration,
    risk: fc.constantFrom("low", "medium", "high"),
  })
  .map(({ groups, members, role, duration: d, risk }) => {
    const text = [
      "apiVersion: stint/v1",
      ...(groups.length > 0
        ? ["groups:", ...groups.map((g) => `  - name: ${g}\n    members: [${members.join(", ")}]`)]
        : []),
      "policies:",
      `  - name: p-${role}`,
      `    defaultDuration: ${d}`,
      `    maxDuration: ${d}`,
      "targets:",
      "  - name: stint",
      "    kind: internal",
      "roles:",
      `  - name: ${role}`,
      "    target: stint",
      `    risk: ${risk}`,
      `    policy: p-${role}`,
      "",
    ].join("\n");
    return {
      bytes: Buffer.from(text, "utf8"),
      verify: () => {
        const parsed = last?.text === text ? last.parsed : parseConfig(text);
        expect(parsed.problems.length === 0, `a valid file has problems: ${JSON.stringify(parsed.problems)}`);
        expect(!parsed.fatal, "a valid file is fatal");
        expect((parsed.desired.groups ?? []).length === groups.length, "groups were lost");
        expect((parsed.desired.roles ?? []).length === 1, "the role was lost");
      },
    };
  });

export const config: FuzzTarget = { name: "config", check, valid };
