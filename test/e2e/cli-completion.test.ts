/**
 * Shell completion (issue 17 item 16): `stint completion bash` is sourced in a real bash with bash-completion's
 * helpers, and pressing Tab there offers Stint's commands, subcommands and options, asked of the built CLI.
 * zsh, fish and PowerShell get their scripts; an unknown shell is a usage error.
 *
 * Needs the build (`npm run build`) and bash-completion (.ci/run installs it).
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assertBuilt, BIN } from "./support.js";

const BASH_COMPLETION = "/usr/share/bash-completion/bash_completion";

describe("stint completion", () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(() => {
    assertBuilt();
    // `stint` on the PATH, as `npm install -g` would put it.
    dir = mkdtempSync(path.join(tmpdir(), "stint-completion-"));
    writeFileSync(path.join(dir, "stint"), `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`);
    chmodSync(path.join(dir, "stint"), 0o755);
    env = { ...process.env, PATH: `${dir}:${process.env.PATH ?? ""}`, STINT_CONFIG_DIR: dir };
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function stint(...args: string[]) {
    const run = spawnSync("stint", args, { env, encoding: "utf8", timeout: 30_000 });
    return { status: run.status, stdout: run.stdout, stderr: run.stderr };
  }

  /** What bash offers when Tab is pressed after `line` (the cursor at its end). */
  function tabAfter(line: string): string[] {
    const script = [
      `source ${BASH_COMPLETION}`,
      "source <(stint completion bash)",
      `COMP_LINE=${JSON.stringify(line)}`,
      "COMP_POINT=${#COMP_LINE}",
      'read -r -a COMP_WORDS <<< "$COMP_LINE"',
      // A line ending in a space is completing a new, empty word.
      '[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")',
      "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))",
      "__stint_complete",
      'printf "%s\\n" "${COMPREPLY[@]}"',
    ].join("\n");
    const run = spawnSync("bash", ["-c", script], { env, encoding: "utf8", timeout: 60_000 });
    expect(run.status, run.stderr).toBe(0);
    return run.stdout.split("\n").filter(Boolean);
  }

  it("offers the commands that start with what was typed", () => {
    expect(tabAfter("stint us")).toEqual(["users"]);
    expect(tabAfter("stint a")).toEqual(expect.arrayContaining(["activate", "approve", "apply", "audit"]));
  });

  it("offers a command's subcommands, and options after a dash", () => {
    expect(tabAfter("stint users ")).toEqual(expect.arrayContaining(["create", "list", "disable", "enable"]));
    expect(tabAfter("stint users dis")).toEqual(["disable"]);
    expect(tabAfter("stint audit list --ac").sort()).toEqual(["--action", "--actor"]);
  });

  it("prints zsh, fish and PowerShell scripts for stint, and refuses a shell it does not know", () => {
    expect(stint("completion", "zsh").stdout).toContain("compdef _stint stint");
    expect(stint("completion", "fish").stdout).toContain("complete -c stint");
    expect(stint("completion", "powershell")).toMatchObject({ status: 0 });
    const tcsh = stint("completion", "tcsh");
    expect(tcsh.status).toBe(2);
    expect(tcsh.stderr).toContain("Allowed choices are zsh, bash, fish, powershell");
  });
});
