/**
 * The SFTP handshake on an `sftp` subsystem channel, judged before anything else of the client's passes.
 * Root on a target can make its `sftp` subsystem anything (`Subsystem sftp /bin/sh` in sshd_config); the
 * proxy would take the channel for SFTP (packet headers read, file events recorded, neither keystrokes nor
 * output) while the client drives a shell. So the client's INIT goes on as the canonical nine bytes
 * (version 3, no extension: nothing of the client's own, not one newline, reaches what runs there) and
 * nothing more of the client's passes until the target answered with a well-formed SSH_FXP_VERSION for
 * version 3. Anything else (other bytes, a channel that closes, no answer within SFTP_VERSION_TIMEOUT_MS)
 * refuses the channel. Socket-free: buffers in, verdicts out (ssh-channels.ts holds the channel).
 *
 * This keeps a shell from posing as the SFTP server; a program that answers VERSION and then reads SFTP
 * packets is SFTP to the proxy, whatever it does with them (root on the target can always run anything).
 */

/** SSH_FXP_INIT, version 3, no extension data: what the target's subsystem receives of the client's INIT. */
export const SFTP_INIT_V3: Buffer = Buffer.from([0, 0, 0, 5, 1, 0, 0, 0, 3]);

/** How long the target's subsystem has to answer the INIT with its VERSION. */
export const SFTP_VERSION_TIMEOUT_MS = 20_000;

/** An INIT or VERSION packet longer than this is not one (OpenSSH's VERSION with its extensions: ~300 bytes). */
const MAX_HANDSHAKE_PACKET = 64 * 1024;

const FXP_INIT = 1;
const FXP_VERSION = 2;

export type HandshakeStep =
  /** Not a whole packet yet, and nothing wrong so far. */
  | { state: "more" }
  /** The whole packet: its length in bytes (with the length field); what follows it is the next packet's. */
  | { state: "done"; length: number }
  | { state: "refused"; reason: string };

const MORE: HandshakeStep = { state: "more" };

/** The client's first packet: an SSH_FXP_INIT asking for version 3 or later (the target is offered 3). */
export function readClientInit(data: Buffer): HandshakeStep {
  const head = packetHead(data, FXP_INIT, "the client's first SFTP packet is not an INIT");
  if (head.state !== "done") return head;
  if (data.readUInt32BE(5) < 3) return { state: "refused", reason: "the client asks for an SFTP version before 3" };
  return head;
}

/**
 * The target's first bytes: an SSH_FXP_VERSION for version 3 whose extension data is whole name/value
 * string pairs. Refused as soon as the bytes seen cannot begin one (a shell's prompt or error line).
 */
export function readServerVersion(data: Buffer): HandshakeStep {
  const head = packetHead(data, FXP_VERSION, "the target's sftp subsystem did not answer with an SFTP VERSION");
  if (head.state !== "done") return head;
  const version = data.readUInt32BE(5);
  if (version !== 3)
    return { state: "refused", reason: `the target's sftp subsystem answered version ${version}, not 3` };
  let at = 9;
  while (at < head.length) {
    if (at + 4 > head.length) return malformed;
    at += 4 + data.readUInt32BE(at);
    if (at > head.length) return malformed;
  }
  let strings = 0;
  for (at = 9; at < head.length; strings += 1) at += 4 + data.readUInt32BE(at);
  return strings % 2 === 0 ? head : malformed;
}

const malformed: HandshakeStep = { state: "refused", reason: "the target's SFTP VERSION packet is malformed" };

function packetHead(data: Buffer, type: number, wrongType: string): HandshakeStep {
  if (data.length >= 4) {
    const length = data.readUInt32BE(0);
    if (length < 5 || length > MAX_HANDSHAKE_PACKET) return { state: "refused", reason: wrongType };
    if (data.length >= 5 && data[4] !== type) return { state: "refused", reason: wrongType };
    if (data.length >= 4 + length) return { state: "done", length: 4 + length };
  }
  return MORE;
}
