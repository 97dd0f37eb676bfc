/**
 * The role's file-transfer policy (`session.files`: download, upload, maxBytes) on the SSH proxy's
 * channels. What counts as a transfer, and what the proxy does with it:
 * - the `sftp` subsystem (sftp, and OpenSSH's default scp): every file handle, by sftp-filter.ts;
 * - `scp -f PATH` / `scp -t PATH` in the plain form an scp client sends (`scp -O`), without a terminal:
 *   refused when its direction is denied, else followed record by record by scp-legacy.ts;
 * - `rsync --server [--sender] …` (parseRsyncCommand): refused when its direction is denied, and under
 *   maxBytes (rsync's own protocol is not followed file by file);
 * - any other exec command that names `scp` with `-f`/`-t`, `sftp-server`, or `rsync` with `--server`
 *   (`sh -c 'scp -f …'`, `/usr/lib/openssh/sftp-server`): refused when a direction it may carry is
 *   denied or maxBytes is set; under a policy that allows everything it runs as an exec, recorded whole.
 * Nothing else is a transfer: a shell or an exec (`cat FILE`, `base64 FILE`, `tar c …`) can print any
 * file the login can read, and its output is in the recording in full. `download: deny` governs the
 * file-transfer protocols, not what a shell may print (docs/sessions.md says so).
 * Every transfer — passed, failed or refused — is a `file_transfer` event in the recording and a
 * `session.file_transfer` audit event (path, direction, size, SHA-256 of the bytes that crossed).
 */
import type { ClientChannel, ServerChannel } from "ssh2";
import type { FileRules } from "../../contract/file-policy.js";
import type { BrokeredSession, FileTransferEvent, UpstreamSsh } from "../../modules/sessions/sessions.types.js";
import { createScpFilter, scpTargetIsDirectory } from "./scp-legacy.js";
import { createSftpFilter, deniedMessage } from "./sftp-filter.js";

type Direction = "upload" | "download";
export type Transform = (data: Buffer) => Buffer[];

/** A transfer the exec command line refuses before anything reaches the target. */
export interface ExecRefusal {
  message: string;
  protocol: FileTransferEvent["protocol"];
  direction: Direction;
  path: string;
  rule: "download" | "upload" | "maxBytes";
  /** scp's own error record (`\x02message\n`) on stdout, which the scp client prints; else stderr. */
  scpRecord: boolean;
}

/**
 * The directions an exec command line may carry files in through a file-transfer program, read
 * loosely (a shell may wrap it: `sh -c 'scp -f …'`): `scp` with `-…f` (download) or `-…t` (upload),
 * `sftp-server` (both), `rsync` with `--server` (`--sender`: download, else upload).
 */
export function transferDirections(command: string): Set<Direction> {
  const directions = new Set<Direction>();
  if (/(^|[^\w.-])scp($|[^\w.-])/.test(command)) {
    if (/(^|[\s'"])-[A-Za-z0-9]*f/.test(command)) directions.add("download");
    if (/(^|[\s'"])-[A-Za-z0-9]*t/.test(command)) directions.add("upload");
  }
  if (command.includes("sftp-server")) {
    directions.add("download");
    directions.add("upload");
  }
  if (/(^|[^\w.-])rsync($|[^\w.-])/.test(command) && command.includes("--server")) {
    directions.add(command.includes("--sender") ? "download" : "upload");
  }
  return directions;
}

/**
 * Whether an exec is refused under the policy. `scp` and `rsync` are the command read strictly
 * (parseScpCommand without a terminal, parseRsyncCommand), or undefined.
 */
export function execRefusal(
  rules: FileRules | undefined,
  role: string,
  command: string,
  scp: { direction: Direction; path: string } | undefined,
  rsync: { direction: Direction; paths: string[] } | undefined,
): ExecRefusal | undefined {
  if (!rules) return undefined;
  if (scp) {
    if (rules[scp.direction] !== "deny") return undefined; // maxBytes: scp-legacy.ts follows it
    const message = deniedMessage(role, scp.direction, scp.path);
    return { message, protocol: "scp", direction: scp.direction, path: scp.path, rule: scp.direction, scpRecord: true };
  }
  if (rsync) {
    const path = rsync.paths.join(" ");
    if (rules[rsync.direction] === "deny") {
      const message = deniedMessage(role, rsync.direction, path);
      return { message, protocol: "rsync", direction: rsync.direction, path, rule: rsync.direction, scpRecord: false };
    }
    if (rules.maxBytes !== undefined) {
      const message = `Stint: rsync cannot be held to the ${rules.maxBytes} bytes role ${role} may transfer (policy session.files.maxBytes); use scp or sftp`;
      return { message, protocol: "rsync", direction: rsync.direction, path, rule: "maxBytes", scpRecord: false };
    }
    return undefined;
  }
  const directions = [...transferDirections(command)];
  const path = command.slice(0, 512);
  for (const direction of directions) {
    if (rules[direction] !== "deny") continue;
    const message = `Stint: this command may carry files (${direction}), and ${direction}s are not allowed for role ${role} (policy session.files.${direction}: deny)`;
    return { message, protocol: "exec", direction, path, rule: direction, scpRecord: false };
  }
  if (directions.length > 0 && rules.maxBytes !== undefined) {
    const message = `Stint: this command may carry files that cannot be held to the ${rules.maxBytes} bytes role ${role} may transfer (policy session.files.maxBytes); use scp or sftp`;
    return { message, protocol: "exec", direction: directions[0]!, path, rule: "maxBytes", scpRecord: false };
  }
  return undefined;
}

/** One transfer into the recording and the audit log. */
export function reportTransfer(
  session: BrokeredSession<UpstreamSsh>,
  event: FileTransferEvent,
  channel?: number,
): void {
  session.recorder.event("file_transfer", { ...event, ...(channel === undefined ? {} : { channel }) });
  session.fileTransfer?.(event);
}

/**
 * The exec request is refused under the file policy: the channel is accepted (ssh2 cannot refuse with
 * a message), told why, and closed with exit status 1; the target never sees the command.
 */
export function refuseExec(
  session: BrokeredSession<UpstreamSsh>,
  accept: () => ServerChannel | undefined,
  refusal: ExecRefusal,
  /** The channel's number in the recording. */
  channel?: number,
): void {
  reportTransfer(
    session,
    {
      protocol: refusal.protocol,
      direction: refusal.direction,
      path: refusal.path,
      bytes: 0,
      sha256: null,
      outcome: "denied",
      rule: refusal.rule,
      reason: refusal.message,
    },
    channel,
  );
  const local = accept();
  if (!local) return;
  local.on("error", () => undefined);
  safely(() => {
    if (refusal.scpRecord) local.write(`\x02${refusal.message}\n`);
    else local.stderr.write(`${refusal.message}\n`);
  });
  safely(() => local.exit(1));
  safely(() => local.end());
}

/** What the relay of one channel runs its bytes through (undefined: no file transfer on it). */
export interface FileChannel {
  fromClient?: Transform;
  fromServer?: Transform;
  /** The channel closed: files cut off are reported. */
  end(): void;
}

export function fileChannel(input: {
  kind: "shell" | "exec" | "subsystem";
  detail: string;
  /** The exec read strictly as scp (parseScpCommand, no terminal). */
  scp: { direction: Direction; path: string } | undefined;
  session: BrokeredSession<UpstreamSsh>;
  local: ServerChannel;
  remote: ClientChannel;
  /** The channel's number in the recording. */
  channel?: number;
}): FileChannel | undefined {
  const { session, local, remote } = input;
  const rules = session.policy.files;
  const report = (event: FileTransferEvent) => reportTransfer(session, event, input.channel);
  /** Stops the channel after the relay passed on what came before the refusal. */
  const stop = (message: string, scpRecord: boolean) =>
    queueMicrotask(() => {
      safely(() => (scpRecord ? local.write(`\x02${message}\n`) : local.stderr.write(`${message}\n`)));
      safely(() => local.exit(1));
      safely(() => local.end());
      safely(() => remote.close());
    });

  if (input.kind === "subsystem" && input.detail === "sftp") {
    const filter = createSftpFilter({
      rules,
      role: session.role,
      toClient: (packet) => safely(() => local.write(packet)),
      notify: (message) => safely(() => local.stderr.write(`${message}\n`)),
      onTransfer: report,
      onBroken: (reason) =>
        stop(`Stint: ${reason}, so the file policy cannot be applied; the channel is closed`, false),
    });
    return { fromClient: filter.fromClient, fromServer: filter.fromServer, end: filter.end };
  }
  if (input.kind === "exec" && input.scp) {
    const { direction, path } = input.scp;
    const filter = createScpFilter({
      direction,
      path,
      targetIsDirectory: scpTargetIsDirectory(input.detail, path),
      role: session.role,
      maxBytes: rules?.maxBytes,
      onTransfer: report,
      onStop: (message) => stop(message, true),
    });
    return direction === "download"
      ? { fromServer: filter.feed, end: filter.end }
      : { fromClient: filter.feed, end: filter.end };
  }
  return undefined;
}

function safely(work: () => unknown): void {
  try {
    work();
  } catch {
    // A channel already gone: nothing left to do.
  }
}
