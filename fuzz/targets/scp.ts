/**
 * The SSH proxy's reading of legacy scp (src/proxies/ssh/ssh-proxy.ts): `parseScpCommand`, which
 * decides whether an exec request is a plain `scp -t/-f PATH` (recorded as an `scp` event, its file
 * bytes counted, not recorded) or anything else (recorded as an exec); and `createScpCounter`, which
 * counts the file bytes of the sending side's stream. Input layout: byte 0 even: the rest is an exec
 * command (UTF-8); odd: the rest is an scp stream, fed in chunks of 1 + byte 1 % 64 bytes.
 * Properties: neither throws; a command read as scp runs scp and nothing else in a shell (its path
 * has no shell syntax and, unquoted, no space); chunking does not change the count, which never
 * exceeds the bytes fed; generated commands and streams give back their direction, path and byte total.
 */
import fc from "fast-check";
import { createScpCounter, parseScpCommand } from "../../src/proxies/ssh/ssh-proxy.js";
import { expect, feature, only, type FuzzTarget, type ValidInput } from "../harness.js";

/**
 * The words a POSIX shell makes of a command, when it is only words, blanks and single quotes;
 * undefined when it has anything a shell reads as more (operators, expansions, other quoting,
 * globs, comments, a line break).
 */
export function shellWords(command: string): string[] | undefined {
  const words: string[] = [];
  let word: string | undefined;
  for (let i = 0; i < command.length; i++) {
    const c = command[i]!;
    if (c === "'") {
      const end = command.indexOf("'", i + 1);
      if (end < 0) return undefined;
      word = (word ?? "") + command.slice(i + 1, end);
      i = end;
    } else if (c === " " || c === "\t") {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (/[;&|`$<>(){}\\\n\r*?[\]!#~"]/.test(c) || /\s/.test(c)) {
      return undefined;
    } else {
      word = (word ?? "") + c;
    }
  }
  if (word !== undefined) words.push(word);
  return words;
}

function count(stream: Buffer, chunk: number): number {
  const counter = createScpCounter();
  for (let at = 0; at < stream.length; at += chunk) counter.feed(stream.subarray(at, at + chunk));
  return counter.bytes();
}

function checkCommand(command: string): void {
  const scp = only(
    () => false,
    "parseScpCommand",
    () => parseScpCommand(command),
  );
  feature(scp === undefined ? "command:other" : `command:${scp.direction}`);
  if (scp === undefined) return;
  // OpenSSH's sshd refuses a command with a NUL (sshpkt_get_cstring): nothing runs.
  if (command.includes("\0")) return;
  // What the target's shell will run must be scp, its options, and the one path recorded.
  const words = shellWords(command);
  const shown = JSON.stringify(command);
  expect(words !== undefined, `read as scp, but a shell runs more than one plain command: ${shown}`);
  if (words === undefined) return;
  expect(/(^|\/)scp$/.test(words[0] ?? ""), `read as scp, but the shell runs ${words[0]}: ${shown}`);
  const rest = words.slice(1);
  const last = rest.at(-1);
  expect(
    last === scp.path && rest.slice(0, -1).every((w) => w.startsWith("-")),
    `read as scp of ${JSON.stringify(scp.path)}, but the shell gives other arguments: ${JSON.stringify(rest.join(" | "))} for ${shown}`,
  );
}

function checkStream(input: Buffer): void {
  const stream = input.subarray(2);
  const chunk = 1 + ((input[1] ?? 0) % 64);
  const whole = only(
    () => false,
    "scp counter",
    () => count(stream, Math.max(1, stream.length)),
  );
  const chunked = only(
    () => false,
    "scp counter chunked",
    () => count(stream, chunk),
  );
  if (whole === undefined || chunked === undefined) return;
  expect(whole === chunked, `chunking (${chunk}) changed the count: ${chunked} vs ${whole}`);
  expect(Number.isSafeInteger(whole) && whole >= 0 && whole <= stream.length, `counted ${whole} of ${stream.length}`);
  feature(`stream:${whole === 0 ? "none" : whole === stream.length ? "all" : "some"}`);
}

function check(input: Buffer): void {
  if (((input[0] ?? 0) & 1) === 0) checkCommand(input.subarray(1).toString("utf8"));
  else checkStream(input);
}

/** Paths scp sends: no shell syntax; with a space only inside single quotes. */
const plainPath = fc.stringMatching(/^[A-Za-z0-9_./][A-Za-z0-9_./-]{0,23}$/);
const spacedPath = fc.stringMatching(/^[A-Za-z0-9_./][A-Za-z0-9_. /-]{0,23}$/);

const command: fc.Arbitrary<ValidInput> = fc
  .tuple(
    fc.constantFrom("scp", "/usr/bin/scp"),
    fc.constantFrom("t", "f"),
    fc.constantFrom("", "r", "p", "v", "rp"),
    fc.oneof(
      plainPath.map((p) => [p, p] as const),
      spacedPath.map((p) => [p, `'${p}'`] as const),
    ),
  )
  .map(([program, mode, extra, [path, written]]) => {
    const text = `${program} -${extra}${mode} ${written}`;
    return {
      bytes: Buffer.concat([Buffer.of(0), Buffer.from(text, "utf8")]),
      verify: () => {
        const scp = parseScpCommand(text);
        const direction = mode === "t" ? "upload" : "download";
        expect(scp?.direction === direction && scp.path === path, `${text} read as ${JSON.stringify(scp)}`);
        expect(parseScpCommand(`${text}; sh`) === undefined, `${text}; sh read as scp`);
      },
    };
  });

/** A sending side: T (times), D/E (directories) and C (a file, its bytes, a status byte). */
const stream: fc.Arbitrary<ValidInput> = fc
  .tuple(
    fc.array(
      fc.oneof(
        fc.integer({ min: 0, max: 2000 }).map((size) => ({ kind: "C" as const, size })),
        fc.constant({ kind: "D" as const, size: 0 }),
        fc.constant({ kind: "E" as const, size: 0 }),
        fc.constant({ kind: "T" as const, size: 0 }),
      ),
      { maxLength: 6 },
    ),
    fc.nat(255),
  )
  .map(([parts, chunk]) => {
    const pieces = parts.map(({ kind, size }, i) => {
      switch (kind) {
        case "C":
          return Buffer.concat([Buffer.from(`C0644 ${size} file${i}\n`), Buffer.alloc(size, 0x0a), Buffer.of(0)]);
        case "D":
          return Buffer.from(`D0755 0 dir${i}\n`);
        case "E":
          return Buffer.from("E\n");
        case "T":
          return Buffer.from("T1700000000 0 1700000000 0\n");
      }
    });
    const body = Buffer.concat(pieces);
    const total = parts.reduce((a, p) => a + p.size, 0);
    return {
      bytes: Buffer.concat([Buffer.of(1, chunk), body]),
      verify: () => {
        const got = count(body, 1 + (chunk % 64));
        expect(got === total, `counted ${got} file bytes of ${total}`);
      },
    };
  });

export const scp: FuzzTarget = { name: "scp", check, valid: fc.oneof(command, stream) };
