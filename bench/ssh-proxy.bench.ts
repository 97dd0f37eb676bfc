/**
 * SSH proxy throughput against an OpenSSH jump host (issue 14, acceptance 7).
 *
 * A `--size-mb` file of random bytes is copied to and from a real sshd (this machine's OpenSSH, on a high
 * port, as root) by the real clients, three ways:
 *
 * - direct: the client straight to the sshd;
 * - jump host: `-J` through a second local sshd (OpenSSH's direct-tcpip relay: the end-to-end SSH
 *   connection passes through one more encrypted hop that records nothing);
 * - Stint: through Stint's SSH proxy with a Stint certificate; the proxy logs in upstream with the vaulted
 *   key and records the session (recording required by the policy: `scp`/`sftp` events with byte totals,
 *   an `exec` recording for rsync).
 *
 * Tools: scp (SFTP, OpenSSH's default), scp -O (the legacy protocol), sftp (get/put in batch mode) and
 * rsync (over `ssh -F …`), each in both directions. Rounds are interleaved (every case and path once, then
 * again, the path order rotating) so that a burst of load from elsewhere hits every path alike. Every copy
 * is checked at the destination (size and SHA-256). Per run: MB/s, the ratio to the same round's direct
 * run and the CPU seconds Stint's process spent; per case: medians, the median ratios and PASS when Stint's
 * ratio is at least the jump host's.
 *
 *   node --import tsx bench/ssh-proxy.bench.ts [--size-mb=200] [--rounds=3] [--tools=scp,scp-O,sftp,rsync]
 *     [--directions=download,upload]
 *
 * `runSshProxyBench()` returns the figures (for an aggregate harness); the main prints them. Everything
 * started (Stint in this process on PGlite, both sshds, the Unix user and group, temp files) is removed at
 * the end, also on failure.
 */
import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, readFileSync } from "node:fs";
import { mkdtemp, open, rm, stat, unlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Session as InspectorSession } from "node:inspector/promises";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { ADMIN_PASSWORD } from "../src/testing/server.js";
import { sshSessionsHarness } from "../src/testing/ssh-sessions.js";
import { startSshd } from "../src/testing/sshd.js";

export type SshTool = "scp" | "scp-O" | "sftp" | "rsync";
export type Direction = "download" | "upload";
export type SshPath = "direct" | "jump" | "stint";

export interface SshProxyBenchOptions {
  sizeMb: number;
  rounds: number;
  tools: SshTool[];
  directions: Direction[];
  /** The paths run (default all three); without `direct` there are no ratios (while iterating on one path). */
  paths?: SshPath[];
  /** Writes a V8 CPU profile of this process (so of Stint's proxy) covering the first Stint run only. */
  profileFile?: string;
  /** Progress lines (default: stderr). */
  progress?: (line: string) => void;
}

export interface SshRun {
  round: number;
  seconds: number;
  mbPerSecond: number;
  /** This run's MB/s over the same round's direct run. */
  ratio: number;
  /** CPU seconds (user + system) of the process Stint runs in, during the run. */
  stintCpuSeconds: number;
  /** CPU seconds of the jump host's sshd (the listener and the connections it reaped), during the run. */
  jumpCpuSeconds: number;
  /** 1-minute load average when the run started. */
  load: number;
}

export interface SshCase {
  tool: SshTool;
  direction: Direction;
  runs: Record<SshPath, SshRun[]>;
  medianMbPerSecond: Record<SshPath, number>;
  /** Medians of the per-round ratios to direct. */
  medianRatio: { jump: number; stint: number };
  /** Stint's median ratio ≥ the jump host's. */
  pass: boolean;
  /**
   * What relaying the file cost each relay, median CPU seconds: Stint's process during its run minus its
   * background (its CPU per second during the same round's direct run, times the run's length), and the
   * jump host's sshd during the jump run. Steadier than MB/s on a loaded host.
   */
  relayCpuSeconds: { jump: number; stint: number };
}

export interface SshProxyBenchResult {
  sizeMb: number;
  bytes: number;
  rounds: number;
  machine: { cpus: number; model: string; node: string };
  uptimeBefore: string;
  uptimeAfter: string;
  cases: SshCase[];
  /** What Stint recorded for its runs (one session per run). */
  stintSessions: { sessions: number; recorded: number; recordingBytes: number; largestRecordingBytes: number };
  pass: boolean;
}

const PATHS: SshPath[] = ["direct", "jump", "stint"];
const ROLE = "web-shell";

export async function runSshProxyBench(options: SshProxyBenchOptions): Promise<SshProxyBenchResult> {
  const progress = options.progress ?? ((line: string) => console.error(`· ${line}`));
  const cleanups: (() => Promise<unknown>)[] = [];
  const defer = (step: () => Promise<unknown>) => cleanups.push(step);
  try {
    const uptimeBefore = await uptime();
    progress("starting the target sshd, the jump host sshd and Stint (PGlite, SSH proxy, recording required)");
    const harness = await sshSessionsHarness({
      sshdConfig: ["Subsystem sftp internal-sftp"],
      // The server's default polling (the test harness polls every 100 ms), as a deployed Stint runs.
      env: { STINT_OUTBOX_POLL: "1s", STINT_SCHEDULER_POLL: "250ms" },
    });
    defer(() => harness.cleanup());
    const jump = await startSshd();
    defer(() => jump.stop());
    const user = harness.users[0]!;
    await harness.activate(user, ROLE, "8h");
    const certified = await harness.certify(user, ROLE);

    const dir = await mkdtemp(path.join(os.tmpdir(), "stint-bench-sshproxy-"));
    defer(() => rm(dir, { recursive: true, force: true }));
    const targetKey = path.join(dir, "target_ed25519");
    const jumpKey = path.join(dir, "jump_ed25519");
    await writeFile(targetKey, harness.sshd.adminPrivateKey, { mode: 0o600 });
    await writeFile(jumpKey, jump.adminPrivateKey, { mode: 0o600 });
    const knownHosts = path.join(dir, "known_hosts");
    const scanned = await mustRun("ssh-keyscan", [...["-t", "ed25519", "-p", String(harness.sshd.port), "127.0.0.1"]]);
    const scannedJump = await mustRun("ssh-keyscan", ["-t", "ed25519", "-p", String(jump.port), "127.0.0.1"]);
    const proxyLine = readFileSync(path.join(harness.dir, "known_hosts"), "utf8");
    await writeFile(knownHosts, `${scanned.stdout}${scannedJump.stdout}${proxyLine}`);
    // One config for every client (scp, sftp, and rsync's ssh; ProxyJump's own ssh reads it too).
    const config = path.join(dir, "ssh_config");
    await writeFile(
      config,
      [
        "Host target",
        "  HostName 127.0.0.1",
        `  Port ${harness.sshd.port}`,
        "  User root",
        `  IdentityFile ${targetKey}`,
        "Host jump",
        "  HostName 127.0.0.1",
        `  Port ${jump.port}`,
        "  User root",
        `  IdentityFile ${jumpKey}`,
        "Host stint",
        "  HostName 127.0.0.1",
        `  Port ${harness.proxyPort}`,
        `  User ${user}%web`,
        `  IdentityFile ${certified.key}`,
        "Host *",
        "  BatchMode yes",
        "  IdentitiesOnly yes",
        "  StrictHostKeyChecking yes",
        `  UserKnownHostsFile ${knownHosts}`,
        "  GlobalKnownHostsFile /dev/null",
        "  LogLevel ERROR",
        "  ConnectTimeout 20",
        "",
      ].join("\n"),
    );

    const bytes = options.sizeMb * 1024 * 1024;
    progress(`writing ${options.sizeMb} MiB of random bytes`);
    const source = path.join(dir, "source.bin");
    const sha256 = await randomFile(source, options.sizeMb);
    const destination = path.join(dir, "copy.bin");

    const cases: { tool: SshTool; direction: Direction; runs: Record<SshPath, SshRun[]> }[] = [];
    for (const tool of options.tools)
      for (const direction of options.directions)
        cases.push({ tool, direction, runs: { direct: [], jump: [], stint: [] } });

    const profiler = options.profileFile ? new InspectorSession() : null;
    let profiled = false;
    if (profiler !== null) {
      profiler.connect();
      await profiler.post("Profiler.enable");
      await profiler.post("Profiler.setSamplingInterval", { interval: 200 });
      defer(async () => profiler.disconnect());
    }

    for (let round = 1; round <= options.rounds; round++) {
      // The path order rotates from round to round: none always runs first after another case.
      const paths = options.paths ?? PATHS;
      const order = paths.map((_, i) => paths[(i + round - 1) % paths.length]!);
      for (const entry of cases) {
        const measured = new Map<SshPath, Omit<SshRun, "ratio">>();
        for (const via of order) {
          const load = os.loadavg()[0]!;
          const jumpCpu = processCpuSeconds(jump.pid);
          const cpu = process.cpuUsage();
          const profiling = via === "stint" && profiler !== null && !profiled;
          if (profiling) await profiler.post("Profiler.start");
          const started = performance.now();
          await transfer(entry.tool, entry.direction, via, { config, source, destination });
          const seconds = (performance.now() - started) / 1000;
          if (profiling) {
            const { profile } = await profiler.post("Profiler.stop");
            await writeFile(options.profileFile!, JSON.stringify(profile));
            profiled = true;
            progress(`CPU profile of this Stint run: ${options.profileFile}`);
          }
          const used = process.cpuUsage(cpu);
          // The jump host's connection processes are reaped (and counted) once the client is gone.
          const jumpCpuSeconds = await settledCpu(jump.pid, jumpCpu);
          await checkCopy(destination, bytes, sha256, `${entry.tool} ${entry.direction} ${via}`);
          await unlink(destination);
          const run = {
            round,
            seconds,
            mbPerSecond: bytes / 1e6 / seconds,
            stintCpuSeconds: (used.user + used.system) / 1e6,
            jumpCpuSeconds,
            load,
          };
          measured.set(via, run);
          progress(
            `round ${round}/${options.rounds} ${label(entry.tool, entry.direction).padEnd(17)} ${via.padEnd(6)} ` +
              `${run.mbPerSecond.toFixed(1).padStart(6)} MB/s  ${seconds.toFixed(2)} s  load ${load.toFixed(2)}` +
              (via === "direct"
                ? ""
                : `  ${via === "stint" ? "Stint process" : "jump sshd"} CPU ` +
                  `${(((via === "stint" ? run.stintCpuSeconds : run.jumpCpuSeconds) * 1e6) / (bytes / 1e6)).toFixed(0)} µs/MB`),
          );
        }
        const direct = measured.get("direct")?.mbPerSecond ?? Number.NaN;
        for (const [via, run] of measured) entry.runs[via].push({ ...run, ratio: run.mbPerSecond / direct });
      }
    }

    const stintSessions = await recorded(harness, user, options.rounds * cases.length);
    const results: SshCase[] = cases.map((entry) => {
      const medianMbPerSecond = Object.fromEntries(
        PATHS.map((via) => [via, median(entry.runs[via].map((r) => r.mbPerSecond))]),
      ) as Record<SshPath, number>;
      const medianRatio = {
        jump: median(entry.runs.jump.map((r) => r.ratio)),
        stint: median(entry.runs.stint.map((r) => r.ratio)),
      };
      const relayCpuSeconds = {
        jump: median(entry.runs.jump.map((r) => r.jumpCpuSeconds)),
        stint: median(
          entry.runs.stint.map((r, i) => {
            const direct = entry.runs.direct[i];
            const background = direct ? (direct.stintCpuSeconds / direct.seconds) * r.seconds : 0;
            return Math.max(0, r.stintCpuSeconds - background);
          }),
        ),
      };
      return {
        ...entry,
        medianMbPerSecond,
        medianRatio,
        pass: medianRatio.stint >= medianRatio.jump,
        relayCpuSeconds,
      };
    });
    const cpus = os.cpus();
    return {
      sizeMb: options.sizeMb,
      bytes,
      rounds: options.rounds,
      machine: { cpus: cpus.length, model: cpus[0]?.model.trim() ?? "unknown", node: process.version },
      uptimeBefore,
      uptimeAfter: await uptime(),
      cases: results,
      stintSessions,
      pass: results.every((c) => c.pass),
    };
  } finally {
    for (const step of cleanups.reverse()) {
      await step().catch((error: unknown) => console.error(`cleanup failed: ${String(error)}`));
    }
  }
}

// ---- the clients ----

interface Files {
  config: string;
  /** The file uploaded, and the file downloaded (same machine). */
  source: string;
  /** Where the copy lands, either way. */
  destination: string;
}

const HOSTS: Record<SshPath, { host: string; jump: string[] }> = {
  direct: { host: "target", jump: [] },
  jump: { host: "target", jump: ["-J", "jump"] },
  stint: { host: "stint", jump: [] },
};

async function transfer(tool: SshTool, direction: Direction, via: SshPath, files: Files): Promise<void> {
  const { host, jump } = HOSTS[via];
  const [from, to] =
    direction === "upload"
      ? [files.source, `${host}:${files.destination}`]
      : [`${host}:${files.source}`, files.destination];
  switch (tool) {
    case "scp":
    case "scp-O":
      await mustRun("scp", ["-q", "-F", files.config, ...(tool === "scp-O" ? ["-O"] : []), ...jump, from, to]);
      return;
    case "sftp": {
      const command =
        direction === "upload"
          ? `put ${files.source} ${files.destination}`
          : `get ${files.source} ${files.destination}`;
      await mustRun("sftp", ["-q", "-F", files.config, ...jump, "-b", "-", host], command);
      return;
    }
    case "rsync":
      // A fresh destination each time: the whole file crosses (no delta against an old copy).
      await mustRun("rsync", ["-e", ["ssh", "-F", files.config, ...jump].join(" "), from, to]);
      return;
  }
}

function label(tool: SshTool, direction: Direction): string {
  if (tool === "sftp") return direction === "download" ? "sftp get" : "sftp put";
  return `${tool === "scp-O" ? "scp -O" : tool} ${direction === "download" ? "down" : "up"}`;
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a client without blocking the event loop (Stint's proxy lives in this process). */
function runClient(file: string, args: string[], input = ""): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout = (stdout + chunk.toString()).slice(-8000)));
    child.stderr.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-8000)));
    const timer = setTimeout(() => child.kill("SIGKILL"), 900_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

async function mustRun(file: string, args: string[], input?: string): Promise<Ran> {
  const ran = await runClient(file, args, input);
  if (ran.code !== 0) throw new Error(`${file} ${args.join(" ")} failed (exit ${ran.code}): ${ran.stderr.trim()}`);
  return ran;
}

const TICKS_PER_SECOND = 100;

/** utime + stime + cutime + cstime of a process (/proc/PID/stat), in seconds; 0 if it cannot be read. */
function processCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14–17 of proc(5) are the 12th–15th after the command name.
    return fields.slice(11, 15).reduce((sum, field) => sum + Number(field), 0) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/** The CPU a process and its reaped children used since `before`, once it stops moving (children reaped). */
async function settledCpu(pid: number, before: number): Promise<number> {
  let last = processCpuSeconds(pid);
  for (let i = 0; i < 20; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const now = processCpuSeconds(pid);
    if (now === last && i >= 2) break;
    last = now;
  }
  return Math.max(0, last - before);
}

function uptime(): Promise<string> {
  return new Promise((resolve) =>
    execFile("uptime", (error, stdout) => resolve(error ? os.loadavg().join(" ") : stdout.trim())),
  );
}

// ---- files ----

/** A file of random bytes (incompressible), written in 1 MiB chunks; returns its SHA-256. */
async function randomFile(file: string, sizeMb: number): Promise<string> {
  const hash = createHash("sha256");
  const handle = await open(file, "w", 0o644);
  try {
    for (let i = 0; i < sizeMb; i++) {
      const chunk = randomBytes(1024 * 1024);
      hash.update(chunk);
      await handle.write(chunk);
    }
  } finally {
    await handle.close();
  }
  return hash.digest("hex");
}

async function checkCopy(file: string, bytes: number, sha256: string, what: string): Promise<void> {
  const copied = await stat(file);
  if (copied.size !== bytes) throw new Error(`${what}: ${copied.size} bytes at the destination, expected ${bytes}`);
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  if (hash.digest("hex") !== sha256) throw new Error(`${what}: the copy's SHA-256 differs from the source's`);
}

// ---- what Stint recorded ----

interface SessionRow {
  kind: string;
  user: string;
  live: boolean;
  recording: { bytes: number | null; available: boolean } | null;
}

async function recorded(
  harness: Awaited<ReturnType<typeof sshSessionsHarness>>,
  user: string,
  expected: number,
): Promise<SshProxyBenchResult["stintSessions"]> {
  const deadline = Date.now() + 30_000;
  // A fresh sign-in: the harness's own may have expired during a long run.
  const { server } = harness;
  const auth = await server.login(server.config.bootstrapAdminName, ADMIN_PASSWORD);
  for (;;) {
    const reply = await server.app.inject({
      method: "GET",
      url: "/v1/sessions?limit=1000",
      headers: { authorization: auth },
    });
    if (reply.statusCode !== 200) throw new Error(`GET /v1/sessions: ${reply.statusCode} ${reply.body}`);
    const listed = { body: reply.json<{ items?: SessionRow[] }>() };
    const mine = ((listed.body.items ?? []) as SessionRow[]).filter((s) => s.user === user && s.kind === "ssh");
    const settled = mine.length >= expected && mine.every((s) => !s.live);
    if (settled || Date.now() > deadline) {
      const sizes = mine.map((s) => s.recording?.bytes ?? 0);
      return {
        sessions: mine.length,
        recorded: mine.filter((s) => s.recording?.available).length,
        recordingBytes: sizes.reduce((a, b) => a + b, 0),
        largestRecordingBytes: Math.max(0, ...sizes),
      };
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const median = (values: number[]) => {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

// ---- main ----

function parseArgs(argv: string[]): SshProxyBenchOptions {
  const options: SshProxyBenchOptions = {
    sizeMb: 200,
    rounds: 3,
    tools: ["scp", "scp-O", "sftp", "rsync"],
    directions: ["download", "upload"],
  };
  const count = (value: string | undefined) => (value && /^[1-9]\d*$/.test(value) ? Number(value) : undefined);
  for (const arg of argv) {
    const [key, value = ""] = arg.split("=", 2);
    if (key === "--size-mb" && count(value)) options.sizeMb = count(value)!;
    else if (key === "--rounds" && count(value)) options.rounds = count(value)!;
    else if (key === "--tools" && value.split(",").every((t) => ["scp", "scp-O", "sftp", "rsync"].includes(t)))
      options.tools = value.split(",") as SshTool[];
    else if (key === "--directions" && value.split(",").every((d) => d === "download" || d === "upload"))
      options.directions = value.split(",") as Direction[];
    else if (key === "--paths" && value.split(",").every((p) => (PATHS as string[]).includes(p)))
      options.paths = value.split(",") as SshPath[];
    else if (key === "--profile" && value) options.profileFile = path.resolve(value);
    else
      throw new Error(
        `unknown argument ${arg} (use --size-mb=N, --rounds=N, --tools=scp,scp-O,sftp,rsync, --directions=download,upload, ` +
          "--paths=direct,jump,stint, --profile=FILE.cpuprofile)",
      );
  }
  return options;
}

export function printSshProxyBench(result: SshProxyBenchResult): void {
  console.log(
    `SSH proxy vs OpenSSH jump host — ${result.sizeMb} MiB (${(result.bytes / 1e6).toFixed(1)} MB), ` +
      `${result.rounds} interleaved rounds; node ${result.machine.node}, ${result.machine.cpus} × ${result.machine.model}`,
  );
  console.log(`uptime before: ${result.uptimeBefore}`);
  console.log("");
  console.log(
    `${"case".padEnd(17)}${"path".padEnd(8)}${"MB/s per round".padStart(24)}${"median".padStart(9)}` +
      `${"× direct per round".padStart(22)}${"median ×".padStart(10)}${"relay CPU µs/MB".padStart(17)}`,
  );
  for (const entry of result.cases) {
    for (const via of PATHS) {
      const runs = entry.runs[via];
      if (runs.length === 0) continue;
      console.log(
        `${label(entry.tool, entry.direction).padEnd(17)}${via.padEnd(8)}` +
          `${runs
            .map((r) => r.mbPerSecond.toFixed(1))
            .join(" ")
            .padStart(24)}${entry.medianMbPerSecond[via].toFixed(1).padStart(9)}` +
          `${runs
            .map((r) => r.ratio.toFixed(2))
            .join(" ")
            .padStart(22)}` +
          `${(via === "direct" ? "1.00" : entry.medianRatio[via].toFixed(2)).padStart(10)}` +
          `${(via === "direct" ? "" : ((entry.relayCpuSeconds[via] * 1e6) / (result.bytes / 1e6)).toFixed(0)).padStart(17)}`,
      );
    }
    console.log(
      `${"".padEnd(17)}${entry.pass ? "PASS" : "FAIL"}: Stint ${entry.medianRatio.stint.toFixed(2)}× of direct, ` +
        `jump host ${entry.medianRatio.jump.toFixed(2)}× (Stint ≥ jump host wanted)`,
    );
  }
  const s = result.stintSessions;
  console.log("");
  console.log(
    `Stint sessions: ${s.sessions}, ${s.recorded} with a recording; recordings ${(s.recordingBytes / 1e3).toFixed(1)} kB ` +
      `in all, largest ${(s.largestRecordingBytes / 1e3).toFixed(1)} kB` +
      (s.largestRecordingBytes < result.bytes / 100
        ? " (file contents not recorded, byte counts only)"
        : " (a recording holds file contents)"),
  );
  console.log(
    "relay CPU µs/MB: what relaying one MB cost — the jump host's sshd (its connections' processes) during the jump run; Stint's process during " +
      "its run less its background (its CPU rate in the same round's direct run).",
  );
  console.log(`uptime after: ${result.uptimeAfter}`);
  console.log(
    `${result.pass ? "PASS" : "FAIL"}: ${result.cases.filter((c) => c.pass).length}/${result.cases.length} cases ` +
      "with Stint's ratio to direct ≥ the jump host's",
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runSshProxyBench(parseArgs(process.argv.slice(2)))
    .then((result) => {
      printSshProxyBench(result);
      if (!result.pass) process.exitCode = 1;
    })
    .catch((error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    })
    .then(() => process.exit());
}
