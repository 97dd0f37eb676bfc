/**
 * One client session channel relayed to the target: its requests (pty, env, signals, shell, exec,
 * subsystem) with the file-transfer policy and moderation before anything opens upstream, then the bytes
 * both ways, recorded.
 */
import type { ClientChannel, Connection, PseudoTtyInfo, ServerChannel, Session } from "ssh2";
import type { Logger } from "../../lib/logger.js";
import type { BrokeredSession, SessionEnd, UpstreamSsh } from "../../modules/sessions/sessions.types.js";
import { closeUnstarted, MAX_ENV_PER_CHANNEL } from "./channel-limits.js";
import { parseRsyncCommand, parseScpCommand, createScpCounter } from "./exec-commands.js";
import { execRefusal, fileChannel, refuseExec } from "./file-policy.js";
import { whenModerated } from "./live-moderation.js";
import { safely } from "./session-end.js";
import { readClientInit, readServerVersion, SFTP_INIT_V3, SFTP_VERSION_TIMEOUT_MS } from "./sftp-handshake.js";
import { createSftpTracker } from "./sftp-log.js";
import { countPerTick, relayStream } from "./ssh-relay.js";
import type { Live } from "./ssh-connection.js";

/** What a channel reads of its connection, at the moment it reads it (ssh-connection.ts owns the state). */
export interface ChannelContext {
  /** The connection's logger, with the session's ids once signed in. */
  readonly log: Logger;
  /** The session started to end: nothing more opens, nothing more is relayed. */
  readonly ending: boolean;
  /** Set when Stint ends the session: a channel the client opens during the grace period gets the message too. */
  readonly killing: SessionEnd | undefined;
  /** After a request was recorded: while the recording's disk is behind, the connection is not read. */
  holdForRecording(): void;
}

export function relaySession(
  connection: ChannelContext,
  channelSession: Session,
  live: Live,
  /** The client's connection, and this channel's place in its budget (channel-limits.ts), given back once closed. */
  { client, release }: { client: Connection; release: () => void },
): void {
  const { session, upstream, channels } = live;
  /** This channel's number in the recording: its frames and markers name it. */
  const channel = (live.opened += 1);
  let pty: PseudoTtyInfo | undefined;
  const env: Record<string, string> = {};
  let remote: ClientChannel | undefined;
  let started = false;
  /** A window change came before the target's channel was open. */
  let resized = false;
  let envCount = 0;
  channelSession.once("close", () => {
    release();
    if (!started) closeUnstarted(client, channelSession);
  });

  channelSession.on("pty", (accept, reject, info) => {
    // One terminal per channel (OpenSSH's sshd refuses a second too).
    if (started || pty) return reject?.();
    pty = info;
    session.recorder.resize(info.cols, info.rows, channel);
    connection.holdForRecording();
    accept?.();
  });
  channelSession.on("window-change", (accept, _reject, info) => {
    session.recorder.resize(info.cols, info.rows, channel);
    if (pty) {
      pty = { ...pty, cols: info.cols, rows: info.rows, width: info.width, height: info.height };
      resized = true;
    }
    safely(() => remote?.setWindow(info.rows, info.cols, info.height, info.width));
    connection.holdForRecording();
    accept?.();
  });
  channelSession.on("env", (accept, reject, info) => {
    if (started || envCount >= MAX_ENV_PER_CHANNEL) return reject?.();
    envCount += 1;
    // Recorded: the target's sshd may pass it to the shell (Debian's `AcceptEnv LANG LC_*`), and a
    // command line `eval "$LC_X"` runs what it holds.
    session.recorder.event("env", { name: info.key, value: info.val, channel });
    env[info.key] = info.val;
    connection.holdForRecording();
    accept?.();
  });
  channelSession.on("signal", (accept, _reject, info) => {
    session.recorder.event("signal", { name: info.name, channel });
    safely(() => remote?.signal(info.name));
    connection.holdForRecording();
    accept?.();
  });
  channelSession.on("auth-agent", (_accept, reject) => reject?.());
  channelSession.on("x11", (_accept, reject) => reject?.());

  /**
   * ssh2 must accept a shell/exec/subsystem request at once: a client EOF that follows (an empty
   * stdin) makes a later accept impossible. So the client's channel is accepted first and its data
   * waits, paused, until the target's channel is open; a target that refuses gets the client a
   * message and exit status 1.
   */
  const start = (kind: "shell" | "exec" | "subsystem", detail: string, open: (done: OpenCallback) => void) => {
    return (accept: () => ServerChannel | undefined, reject: () => void) => {
      if (started || connection.ending) return reject();
      started = true;
      const local = accept();
      if (!local) return;
      local.pause();
      channels.add(local);
      if (connection.killing) {
        const { message } = connection.killing;
        safely(() => local.stderr.write(`\r\nStint: ${message}\r\n`));
      }
      local.on("close", () => {
        channels.delete(local);
        release();
      });
      local.on("error", (error: Error) => connection.log.debug({ err: error }, "ssh client channel error"));
      const refuse = (reason: string | undefined) => {
        connection.log.info({ kind, reason }, "ssh channel refused by the target");
        safely(() => local.stderr.write(`Stint: ${session.target} refused the ${kind} request.\r\n`));
        safely(() => local.exit(1));
        safely(() => local.end());
      };
      const openUpstream = () => {
        try {
          open((error, upstreamChannel) => {
            if (error || !upstreamChannel) return refuse(error?.message);
            if (connection.ending || local.destroyed) return safely(() => upstreamChannel.close());
            remote = upstreamChannel;
            if (pty && resized) safely(() => upstreamChannel.setWindow(pty!.rows, pty!.cols, pty!.height, pty!.width));
            relayChannel(connection, local, upstreamChannel, { kind, detail, channel }, session, pty !== undefined);
          });
        } catch (error) {
          refuse((error as Error).message);
        }
      };
      // A moderated session opens nothing upstream before a moderator joined (live-moderation.ts).
      whenModerated(
        session,
        (text) => safely(() => local.stderr.write(text)),
        () => connection.ending || local.destroyed,
        openUpstream,
      );
    };
  };
  const options = () => ({ ...(pty ? { pty: ptyOptions(pty) } : {}), env });

  channelSession.on(
    "shell",
    start("shell", "", (done) => upstream.shell(pty ? ptyOptions(pty) : false, { env }, done)),
  );
  channelSession.on("exec", (accept, reject, info) => {
    // The file-transfer policy (file-policy.ts): a denied scp/rsync/sftp-server never reaches the target.
    const scp = pty ? undefined : parseScpCommand(info.command);
    const refusal = execRefusal(
      session.policy.files,
      session.role,
      info.command,
      scp,
      pty ? undefined : parseRsyncCommand(info.command),
    );
    if (refusal && !started && !connection.ending) {
      started = true;
      return refuseExec(session, accept, refusal, channel);
    }
    start("exec", info.command, (done) => upstream.exec(info.command, options(), done))(accept, reject);
  });
  channelSession.on("subsystem", (accept, reject, info) => {
    // Only SFTP is understood (sftp-log.ts); any other subsystem could be a shell by another name.
    if (info.name !== "sftp") {
      session.recorder.event("subsystem", { name: info.name, allowed: false, channel });
      connection.holdForRecording();
      connection.log.info({ subsystem: info.name }, "ssh subsystem refused");
      return reject();
    }
    start("subsystem", info.name, (done) => upstream.subsys(info.name, done))(accept, reject);
  });
}

/**
 * Pipes one session channel both ways. Shell: output and input recorded. Exec: the output recorded,
 * then an `exec` event with the exit code; scp is an `scp` event instead, rsync an `rsync` event (file
 * data counted, not recorded). SFTP: `sftp` events.
 */
function relayChannel(
  connection: ChannelContext,
  local: ServerChannel,
  remote: ClientChannel,
  { kind, detail, channel }: { kind: "shell" | "exec" | "subsystem"; detail: string; channel: number },
  session: BrokeredSession<UpstreamSsh>,
  withTerminal: boolean,
): void {
  const { recorder } = session;
  /** The relay stops the moment the session starts to end, before its recording is closed. */
  const relaying = () => !connection.ending;
  // scp's file bytes are counted, not recorded: only for a plain scp command without a terminal.
  const scp = kind === "exec" && !withTerminal ? parseScpCommand(detail) : undefined;
  // rsync's likewise: the command, the paths and the bytes its sending side sent.
  const rsync = kind === "exec" && !withTerminal && !scp ? parseRsyncCommand(detail) : undefined;
  let rsyncBytes = 0;
  const sftp = kind === "subsystem" && detail === "sftp" ? createSftpTracker() : undefined;
  const scpBytes = scp ? createScpCounter() : undefined;
  if (kind === "subsystem") recorder.event("subsystem", { name: detail, channel });
  // The file-transfer policy, sizes and SHA-256s of SFTP and legacy scp (file-policy.ts).
  const files = fileChannel({ kind, detail, scp, session, local, remote, channel });
  let exit: { exitCode?: number; signal?: string } = {};

  const recordOutput = kind === "shell" || (kind === "exec" && !scp && !rsync);
  const countDown = countPerTick((bytes) => session.countBytes("down", bytes));
  const countUp = countPerTick((bytes) => session.countBytes("up", bytes));
  const fromTarget = (data: Buffer) => {
    countDown(data.length);
    if (recordOutput) recorder.output(data, channel);
    if (sftp) for (const event of sftp.fromServer(data)) recorder.event("sftp", { ...event, channel });
    if (scp?.direction === "download") scpBytes?.feed(data);
    if (rsync?.direction === "download") rsyncBytes += data.length;
  };
  // The target's stderr (SSH extended data): its own stream in the recording, on every kind of channel (an
  // sftp-server's or rsync's messages too), never fed to a protocol tracker or counter of the data stream.
  const fromTargetStderr = (data: Buffer) => {
    countDown(data.length);
    if (recorder.errorOutput) recorder.errorOutput(data, channel);
    else recorder.output(data, channel);
  };
  const fromClient = (data: Buffer) => {
    countUp(data.length);
    // A terminal's keystrokes, and an exec's stdin (`echo CMD | ssh host sh` runs what it carries).
    if (recordOutput) recorder.input(data, channel);
    if (sftp) for (const event of sftp.fromClient(data)) recorder.event("sftp", { ...event, channel });
    if (scp?.direction === "upload") scpBytes?.feed(data);
    if (rsync?.direction === "upload") rsyncBytes += data.length;
  };

  const relayClient = () => {
    relayStream(local, remote, fromClient, relaying, files?.fromClient, recorder);
    local.resume();
  };
  // An sftp channel: nothing more than the INIT passes before the target answered as SFTP (sftp-handshake.ts).
  const handshake = sftp
    ? guardSftp(local, remote, {
        passInit(init) {
          if (!relaying()) return;
          fromClient(init);
          for (const part of files?.fromClient ? files.fromClient(init) : [init]) remote.write(part);
        },
        open: relayClient,
        refuse(reason, received) {
          const received64 = received.toString("base64");
          recorder.event("subsystem", { name: detail, allowed: false, reason, received: received64, channel });
          session.channelRefused?.({ subsystem: detail, reason });
          connection.log.warn({ subsystem: detail, reason }, "ssh sftp channel refused: the target did not speak SFTP");
          safely(() => local.stderr.write(`Stint: ${session.target}'s sftp subsystem is not SFTP (${reason}).\r\n`));
          safely(() => local.exit(1));
          safely(() => local.end());
          safely(() => remote.close());
        },
      })
    : undefined;
  const filter = files?.fromServer;
  const fromServer = handshake && filter ? (data: Buffer) => handshake(data).flatMap(filter) : (handshake ?? filter);
  relayStream(remote, local, fromTarget, relaying, fromServer, recorder);
  relayStream(remote.stderr, local.stderr, fromTargetStderr, relaying, undefined, recorder);
  // The client's EOF goes on to the target; the target's EOF waits for its exit status (below).
  local.on("end", () => safely(() => remote.end()));
  if (!handshake) relayClient();
  remote.on("error", (error: Error) => connection.log.debug({ err: error }, "ssh target channel error"));

  remote.on("exit", (code: number | null, signal?: string, coreDumped?: boolean, description?: string) => {
    // Once the relay stopped (a required recording failed or reached its limit), the client did not get
    // all the output: it gets no exit status (a success) for it either; the connection closes.
    if (!relaying()) return;
    if (typeof code === "number") {
      exit = { exitCode: code };
      safely(() => local.exit(code));
    } else if (signal) {
      exit = { signal: signal.replace(/^SIG/, "") };
      safely(() => local.exit(signal.replace(/^SIG/, ""), coreDumped === true, description ?? ""));
    }
  });
  let recorded = false;
  const recordEnd = () => {
    if (recorded) return;
    recorded = true;
    if (scp) {
      recorder.event("scp", { direction: scp.direction, path: scp.path, bytes: scpBytes?.bytes() ?? 0, channel });
    } else if (rsync) {
      const { direction, paths, options } = rsync;
      recorder.event("rsync", { command: detail, direction, paths, options, bytes: rsyncBytes, ...exit, channel });
    } else if (kind === "exec") {
      recorder.event("exec", { command: detail, ...exit, channel });
    }
    if (sftp) for (const event of sftp.end()) recorder.event("sftp", { ...event, channel });
    files?.end();
  };
  remote.on("close", () => {
    recordEnd();
    if (relaying()) safely(() => local.end());
  });
  local.on("close", () => {
    recordEnd();
    safely(() => remote.close());
  });
}

/**
 * The SFTP handshake of an sftp channel (sftp-handshake.ts): the client's INIT goes on as the canonical
 * nine bytes; the rest of the client's data waits (the channel paused, its window not topped up) until the
 * target's VERSION, then `open` relays it. Anything else refuses the channel. Returns the transform of
 * the target's stdout: nothing passes before the VERSION, the VERSION and all that follows after it.
 */
function guardSftp(
  local: ServerChannel,
  remote: ClientChannel,
  on: { passInit(init: Buffer): void; open(): void; refuse(reason: string, received: Buffer): void },
): (data: Buffer) => Buffer[] {
  let state: "init" | "version" | "open" | "refused" = "init";
  let client: Buffer = Buffer.alloc(0);
  let server: Buffer = Buffer.alloc(0);
  const refuse = (reason: string, received: Buffer) => {
    if (state === "open" || state === "refused") return;
    state = "refused";
    clearTimeout(timer);
    local.pause();
    local.off("data", fromClient);
    on.refuse(reason, received.subarray(0, 256));
  };
  const fromClient = (data: Buffer) => {
    client = client.length > 0 ? Buffer.concat([client, data]) : data;
    const step = readClientInit(client);
    if (step.state === "more") return;
    local.pause();
    local.off("data", fromClient);
    if (step.state === "refused") return refuse(step.reason, client);
    state = "version";
    if (client.length > step.length) local.unshift(client.subarray(step.length));
    client = Buffer.alloc(0);
    on.passInit(SFTP_INIT_V3);
  };
  const timer = setTimeout(
    () => refuse(`no SFTP VERSION within ${SFTP_VERSION_TIMEOUT_MS / 1000} s`, server),
    SFTP_VERSION_TIMEOUT_MS,
  );
  timer.unref();
  remote.once("close", () => {
    clearTimeout(timer);
    if (state === "version") refuse("the subsystem closed before its SFTP VERSION", server);
  });
  local.once("close", () => clearTimeout(timer));
  local.on("data", fromClient);
  local.resume();
  return (data) => {
    if (state === "open") return [data];
    if (state === "refused") return [];
    server = server.length > 0 ? Buffer.concat([server, data]) : data;
    const step = readServerVersion(server);
    if (step.state === "refused") refuse(step.reason, server);
    else if (step.state === "done" && state === "init")
      refuse("the subsystem answered before the client's INIT", server);
    else if (step.state === "done") {
      state = "open";
      clearTimeout(timer);
      on.open();
      return [server];
    }
    return [];
  };
}

type OpenCallback = (error: Error | undefined, channel: ClientChannel | undefined) => void;

function ptyOptions(info: PseudoTtyInfo) {
  return {
    term: info.term,
    cols: info.cols,
    rows: info.rows,
    width: info.width,
    height: info.height,
    modes: info.modes,
  };
}
