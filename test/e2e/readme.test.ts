/**
 * The README's first run, typed exactly as written (issue 17 item 11): the Quickstart's and the five-minute
 * walkthrough's `npx stint …` lines run in order against a fresh server started as the README says, through
 * the CLI's own code, with a terminal that answers the password prompts. Only what the README leaves to the
 * reader is filled in: `<CODE>` (the setup code the server printed, then the authenticator app's code),
 * `<ID>` (from `requests --pending`), the passwords typed, and the server's port (a free one, not 8420).
 *
 * Needs the build (`npm run build`): the server runs as `node bin/stint.js server`, as `npm start` does.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import * as OTPAuth from "otpauth";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliContext } from "../../src/cli/context.js";
import { runCli } from "../../src/cli/program.js";
import { assertBuilt, BIN, freePort, ROOT, start, waitForHealth, type RunningProcess } from "./support.js";

/** The passwords the people in the README type (each meets the password rules). */
const PASSWORDS: Record<string, string> = {
  admin: "first-run-root-secret",
  alice: "tulip-orbit-7-marble",
  carol: "quartz-meadow-42-lantern",
};

/** The README's `npx stint` lines and its access.yaml, in order, from Quickstart to "Run the tests". */
function readmeSteps(): { commands: string[]; accessYaml: string } {
  const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
  const start = readme.indexOf("## Quickstart");
  const end = readme.indexOf("Run the tests:");
  expect(start, "README has a Quickstart").toBeGreaterThan(-1);
  const part = readme.slice(start, end);
  const blocks = [...part.matchAll(/```(\w+)\n([\s\S]*?)```/g)];
  const yaml = blocks.find(([, lang, body]) => lang === "yaml" && body!.startsWith("# access.yaml"));
  expect(yaml, "the walkthrough declares access.yaml").toBeDefined();
  const commands = blocks
    .filter(([, lang]) => lang === "sh")
    .flatMap(([, , body]) => body!.split("\n"))
    .map((line) => line.trim())
    .filter((line) => line.startsWith("npx stint "));
  return { commands, accessYaml: yaml![2]! };
}

/** Words of a command line as a POSIX shell splits them (double and single quotes; `#` starts a comment). */
function words(line: string): string[] {
  const out: string[] = [];
  let current = "";
  let quote: '"' | "'" | null = null;
  let inWord = false;
  for (const char of line) {
    if (quote) {
      if (char === quote) quote = null;
      else current += char;
    } else if (char === '"' || char === "'") {
      quote = char;
      inWord = true;
    } else if (char === "#" && !inWord) break;
    else if (/\s/.test(char)) {
      if (inWord) out.push(current);
      current = "";
      inWord = false;
    } else {
      current += char;
      inWord = true;
    }
  }
  if (inWord) out.push(current);
  return out;
}

describe("the README's first run, as written", () => {
  let work: string;
  let url: string;
  let server: RunningProcess;
  let cwd: string;

  beforeAll(async () => {
    assertBuilt();
    expect(BIN).toContain("bin/stint.js");
    work = mkdtempSync(path.join(tmpdir(), "stint-readme-"));
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    server = start(process.execPath, [BIN, "server"], {
      cwd: work,
      env: {
        ...process.env,
        STINT_LISTEN: `127.0.0.1:${port}`,
        STINT_DATA_DIR: path.join(work, ".stint"),
        STINT_LOG_LEVEL: "warn",
        STINT_SSH_PROXY_LISTEN: "off",
        STINT_PG_PROXY_LISTEN: "off",
        STINT_MYSQL_PROXY_LISTEN: "off",
      },
    });
    await waitForHealth(url, 60_000);
    cwd = process.cwd();
    process.chdir(work); // `stint apply -f access.yaml` reads it from the current directory
  }, 120_000);

  afterAll(async () => {
    if (cwd) process.chdir(cwd);
    await server?.kill("SIGTERM");
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /**
   * Runs one `npx stint …` line in-process; a prompt ending in ": " is answered with `answer(prompt, stdout so
   * far)` (no answer: the prompt stays unanswered).
   */
  async function stint(
    args: string[],
    answer: (prompt: string, stdout: string) => string | undefined | Promise<string | undefined>,
    input?: string,
  ) {
    const interactive = input === undefined;
    const stdin = Object.assign(new PassThrough(), {
      isTTY: interactive,
      ...(interactive ? { setRawMode: () => undefined } : {}),
    });
    if (!interactive) stdin.end(input);
    const out: string[] = [];
    const err: string[] = [];
    const ctx: CliContext = {
      stdin,
      stdout: { write: (chunk) => out.push(String(chunk)) > 0 },
      stderr: {
        write: (chunk) => {
          const text = String(chunk);
          err.push(text);
          if (text.endsWith(": "))
            void Promise.resolve(answer(text, out.join(""))).then((reply) => {
              if (reply !== undefined) setImmediate(() => stdin.write(`${reply}\r`));
            });
          return true;
        },
      },
      env: { STINT_CONFIG_DIR: path.join(work, "cli"), HOME: work, STINT_SERVER: url },
      fetch: globalThis.fetch,
      now: () => Date.now(),
      version: "0.0.0-readme",
    };
    const code = await runCli(args, ctx);
    return { code, stdout: out.join(""), stderr: err.join("") };
  }

  it("every Quickstart and walkthrough command succeeds, in order", async () => {
    const { commands, accessYaml } = readmeSteps();
    expect(commands.length).toBeGreaterThan(12);
    writeFileSync(path.join(work, "access.yaml"), accessYaml);
    const [, setupCode] = await server.waitFor(/npx stint setup --server \S+ --code (\S+) --user admin/);
    const totpSecrets = new Map<string, string>();
    let lastStep = -1;
    let requestId = "";

    /** A fresh code from the profile's authenticator app: each 30-second code is accepted once. */
    async function appCode(profile: string): Promise<string> {
      const secret = totpSecrets.get(profile);
      expect(secret, `${profile} enrolled an authenticator first`).toBeDefined();
      let step = Math.floor(Date.now() / 30_000);
      if (step <= lastStep) {
        await new Promise((resolve) => setTimeout(resolve, (step + 1) * 30_000 - Date.now() + 50));
        step = Math.floor(Date.now() / 30_000);
      }
      lastStep = step;
      return new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret!), digits: 6, period: 30 }).generate();
    }

    for (const line of commands) {
      const args = words(line).slice(2); // "npx stint"
      const profileAt = args.indexOf("--profile");
      const profile = profileAt === -1 ? "default" : args[profileAt + 1]!;
      const userAt = args.indexOf("--user");
      const created = args[0] === "users" && args[1] === "create" ? args[2] : undefined;
      const person = created ?? (userAt === -1 ? (profile === "default" ? "admin" : profile) : args[userAt + 1]!);
      for (let i = 0; i < args.length; i++) {
        if (args[i] === "http://127.0.0.1:8420") args[i] = url;
        if (args[i] === "<ID>") args[i] = requestId;
        if (args[i] === "<CODE>") args[i] = args[0] === "setup" ? setupCode! : await appCode(profile);
      }
      const password = PASSWORDS[person];
      expect(password, `a password for ${person} (${line})`).toBeDefined();
      // A terminal where the README's reader would type a password or a one-time code (a profile's enrolment,
      // the MFA-checked activation); elsewhere stdin is a pipe (as in a script), so nothing waits for a prompt
      // nobody answers. The admin's `mfa enroll` in the Quickstart runs without a terminal: it only prints.
      const typesAtTerminal =
        ((args.includes("login") || args.includes("setup")) && !args.includes("--password-stdin")) ||
        (profile !== "default" && (args.includes("enroll") || args[2] === "activate"));
      const result = await stint(
        args,
        async (prompt, stdout) => {
          if (/password|repeat to confirm/i.test(prompt)) return password;
          if (!/code/i.test(prompt)) return undefined;
          // The enrolment prints the secret before it asks: the reader adds it to the app, then types its code.
          const secret = /secret:?\s+([A-Z2-7]+)/.exec(stdout)?.[1];
          if (args.includes("enroll") && secret) totpSecrets.set(profile, secret);
          return appCode(profile);
        },
        typesAtTerminal ? undefined : args.includes("--password-stdin") ? `${password}\n` : "",
      );
      expect(result.code, `${line}\n${result.stdout}\n${result.stderr}`).toBe(0);
      // Codes are typed at prompts, never passed in argv (which would warn).
      expect(result.stderr).not.toMatch(/one-time code on the command line/i);

      if (args.includes("enroll")) {
        const secret = /secret:?\s+([A-Z2-7]+)/.exec(result.stdout)?.[1];
        expect(secret, result.stdout).toBeDefined();
        totpSecrets.set(profile, secret!);
      }
      if (args.includes("enroll") && profile !== "default")
        expect(result.stderr, "the enrolment at a terminal confirms it and shows recovery codes").toMatch(/MFA is on/);
      if (args.includes("--pending")) {
        const row = result.stdout.split("\n").find((l) => l.includes("prod-db-reader") && l.includes("alice"));
        expect(row, result.stdout).toBeDefined();
        requestId = row!.split(/\s+/)[0]!;
      }
      if (args[0] === "check" || args.includes("check"))
        expect(result.stdout).toMatch(/^allowed: alice holds prod-db-reader until /);
    }
    expect(requestId).toMatch(/^[0-9a-f]{8}$/);
  });
});
