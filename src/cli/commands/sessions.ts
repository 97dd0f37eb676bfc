/**
 * `stint sessions list|show|play|kill`: brokered sessions (SSH and PostgreSQL proxies) for admins and
 * auditors. `play` replays an SSH recording's output (with its timing at a terminal) or prints a
 * PostgreSQL session's query transcript.
 */
import type { Command } from "commander";
import { parseRecording, transcript } from "../../contract/recording.js";
import { session, sessionList, type SessionView } from "../../contract/sessions.js";
import { readBounded } from "../bounded-body.js";
import { segment, type ApiClient } from "../client.js";
import { globalOptions, type CliContext } from "../context.js";
import { usageError } from "../exit-codes.js";
import { type Column, emit, note, renderKeyValues, renderTable, sanitize } from "../output.js";
import { checkReason, clientFor, integerIn } from "./shared.js";

const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function checkId(value: string): string {
  if (!ID.test(value)) throw usageError(`ID "${value}" is not a session id (stint sessions list shows them)`);
  return value.toLowerCase();
}

function clock(iso: string | null): string {
  return iso ? iso.replace(/\.\d{3}(?=Z$)/, "") : "-";
}

const COLUMNS: readonly Column<SessionView>[] = [
  { header: "ID", value: (s) => s.id },
  { header: "KIND", value: (s) => s.kind },
  { header: "USER", value: (s) => s.user },
  { header: "ROLE", value: (s) => s.role },
  { header: "TARGET", value: (s) => s.target },
  { header: "STARTED", value: (s) => clock(s.startedAt) },
  { header: "ENDED", value: (s) => (s.live ? "live" : clock(s.endedAt)) },
  { header: "END", value: (s) => s.endReason ?? "" },
];

/** The fields `list --json` promises, in that order. */
function listItem(s: SessionView) {
  return {
    id: s.id,
    kind: s.kind,
    user: s.user,
    role: s.role,
    target: s.target,
    startedAt: s.startedAt,
    endedAt: s.endedAt,
    endReason: s.endReason,
    live: s.live,
  };
}

/** A recording whose session names no size (an older server): replayed up to this much. */
const RECORDING_UNSIZED_LIMIT = 256 * 1024 * 1024;
/** Past this no recording is read whatever its session says: more than a string can hold. */
const RECORDING_CEILING = 512 * 1024 * 1024 - 1024;

/**
 * A recording, read whole (it is parsed whole) up to the size its session declares: the server, or whoever
 * answers for it, sets no size on our memory.
 */
async function readRecording(client: ApiClient, id: string): Promise<string> {
  const { data } = await client.request("GET", `/v1/sessions/${segment(id)}`, { schema: session });
  const limit = Math.min(data.recording?.bytes ?? RECORDING_UNSIZED_LIMIT, RECORDING_CEILING);
  const stream = await client.stream(`/v1/sessions/${segment(id)}/recording`);
  return (await readBounded(stream, limit, "recording")).toString("utf8");
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function registerSessionCommands(program: Command, ctx: CliContext): void {
  const sessions = program
    .command("sessions")
    .description("brokered SSH and PostgreSQL sessions: live ones, recordings, kill (admins and auditors)");

  sessions
    .command("list")
    .description("sessions, newest first")
    .option("--live", "only sessions that are still open")
    .option("--limit <n>", "at most this many (1-1000)", integerIn(1, 1000), 100)
    .action(async (options: { live?: boolean; limit: number }, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data } = await client.request("GET", "/v1/sessions", {
        query: { live: options.live ? "true" : undefined, limit: options.limit },
        schema: sessionList,
      });
      emit(ctx, json, data.items.map(listItem), () =>
        data.items.length === 0 ? "No sessions.\n" : renderTable(COLUMNS, data.items),
      );
    });

  sessions
    .command("show")
    .description("one session: who, where, how it ended, its recording's SHA-256")
    .argument("<id>", "the session id")
    .action(async (id: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", `/v1/sessions/${segment(checkId(id))}`, { schema: session });
      emit(ctx, json, raw, () =>
        renderKeyValues([
          ["id", data.id],
          ["kind", data.kind],
          ["user", data.user],
          ["role", data.role],
          ["target", data.target],
          ["login", data.login],
          ["client", data.clientAddress ?? "-"],
          ["started", clock(data.startedAt)],
          ["ended", data.live ? "live" : clock(data.endedAt)],
          ["end reason", data.endReason ?? "-"],
          ["detail", data.endDetail ?? "-"],
          ["ended by", data.endedBy ?? "-"],
          ["bytes up/down", `${data.bytesUp} / ${data.bytesDown}`],
          ["recording", data.recording ? (data.recording.sha256 ?? "not finished") : "none"],
        ]),
      );
    });

  sessions
    .command("play")
    .description("replay an SSH session's output, or print a PostgreSQL session's queries")
    .argument("<id>", "the session id")
    .option("--speed <n>", "replay speed (1 = real time)", (v) => {
      const n = Number(v);
      if (!(n > 0 && n <= 100)) throw usageError("--speed must be a number above 0, at most 100");
      return n;
    })
    .option("--max-wait <seconds>", "longest pause between two frames", integerIn(0, 60), 2)
    .addHelpText(
      "after",
      "\nAt a terminal an SSH recording replays with its timing (--speed, --max-wait); piped, the output is\n" +
        "printed at once. Replays are audited.\n\nExamples:\n  stint sessions play 0190…\n  stint sessions play 0190… --speed 4\n",
    )
    .action(async (id: string, options: { speed?: number; maxWait: number }, command: Command) => {
      const client = await clientFor(ctx, command);
      const text = await readRecording(client, checkId(id));
      const recording = parseRecording(text);
      const timed = recording.kind === "ssh" && (ctx.stdout.isTTY === true || options.speed !== undefined);
      if (!timed) {
        ctx.stdout.write(transcript(recording));
        return;
      }
      const speed = options.speed ?? 1;
      let previous = 0;
      for (const frame of recording.frames) {
        if (frame.code !== "o") continue;
        const pause = Math.min((frame.time - previous) / speed, options.maxWait);
        previous = frame.time;
        if (pause > 0) await sleep(pause * 1000);
        ctx.stdout.write(frame.data);
      }
    });

  sessions
    .command("kill")
    .description("end a live session now, on whichever Stint node relays it")
    .argument("<id>", "the session id")
    .requiredOption("--reason <text>", "why (audited, shown to the user)", checkReason)
    .action(async (id: string, options: { reason: string }, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("POST", `/v1/sessions/${segment(checkId(id))}/kill`, {
        body: { reason: options.reason },
        schema: session,
      });
      emit(ctx, json, raw, () => `Killed session ${data.id} of ${sanitize(data.user)} on ${sanitize(data.target)}.\n`);
      if (!json) note(ctx, "The user sees your reason; the session's end is in the audit log.");
    });
}
