/**
 * Brokered sessions: what the proxies (src/proxies/ssh, src/proxies/pg) ask of the sessions module
 * and what they get back. The proxies own sockets and protocols; the module owns every decision
 * (who may connect where, with which upstream credential, under which policy), the recording, the
 * audit trail and the kill switch.
 */

import type { FileRules } from "../../contract/file-policy.js";
import type { ModeratorRule } from "../../contract/live.js";
import type { ModerationGate } from "./live-hub.js";
import type { QueryRules } from "../../contract/query-policy.js";
import type { QueryLogEntry, QueryLogResult, SentStatement, SessionKind } from "../../contract/recording.js";

export type { QueryLogEntry, QueryLogResult, SentStatement, SessionKind };

/**
 * Why a session ended. `killed`: an administrator ended it; `activation_ended`: the activation behind
 * it expired, was deactivated or revoked; `recording_failed`: recording was required and stopped working.
 */
export type EndReason =
  "client_closed" | "upstream_closed" | "killed" | "activation_ended" | "recording_failed" | "error" | "shutdown";

/** The role's policy for brokered sessions (policy `session:` block). */
export interface SessionPolicy {
  /** `required`: a session that cannot be recorded is refused or ended (fail closed). */
  recording: "required" | "optional";
  /** SSH port forwarding (direct-tcpip, tcpip-forward); refused unless true. */
  portForwarding: boolean;
  /** PostgreSQL: keep bound parameter values of extended-protocol queries in the query log. */
  queryParameters: boolean;
  /** PostgreSQL: the query policy (statement kinds, denied functions, WHERE required); absent: none. */
  queries?: QueryRules;
  /** MySQL: LOAD DATA LOCAL (the server asking the client for a file) passes only when true. */
  loadDataLocal?: boolean;
  /** SSH: the file-transfer policy (download, upload, maxBytes); absent: all transfers pass. */
  files?: FileRules;
  /** A moderator must join before anything is opened upstream (live.service.ts); absent: none. */
  moderator?: ModeratorRule;
}

/** A statement the PostgreSQL proxy's query policy refused (audited as `session.query_refused`). */
export interface QueryRefusedEvent {
  rule: string;
  message: string;
  /** The refused text, cut to 2,000 characters. */
  statement: string;
  /** `result`: a result cut at the policy's `maxRows` (rule `max_rows`; the statement is in the query log). */
  protocol: "simple" | "extended" | "function_call" | "result";
}

/**
 * One file the SSH proxy saw cross (or refused): audited as `session.file_transfer`, outcome `success`,
 * `denied` (the policy refused it) or `failed` (the transfer did not complete).
 */
export interface FileTransferEvent {
  protocol: "sftp" | "scp" | "rsync" | "exec";
  direction: "upload" | "download";
  /** The path as the client named it (scp: the command's path joined with the record's name). */
  path: string;
  /** Bytes that crossed the proxy. */
  bytes: number;
  /** SHA-256 (hex) of those bytes in file order; null when they did not come in order or were not seen. */
  sha256: string | null;
  outcome: "success" | "denied" | "failed";
  /** Why it was refused or failed, in words. */
  reason?: string;
  /** The policy rule that refused it: `download`, `upload`, `maxBytes`. */
  rule?: "download" | "upload" | "maxBytes";
}

export interface UpstreamPostgres {
  kind: "postgres";
  host: string;
  /**
   * The IP address \`host\` resolved to when the session opened, judged by the address policy: the proxy
   * connects here and nowhere else (no second lookup, so a name re-pointed afterwards is not followed).
   * \`host\` stays the name, for TLS (SNI, verify-full) and messages.
   */
  address: string;
  port: number;
  /** The target address's database, or one of the target's options.databases the client asked for. */
  database: string;
  user: string;
  password: string;
  /** TLS towards the database as the target's sslmode says; null only when it opted out (sslmode=disable). */
  tls: { mode: "require" | "verify-ca" | "verify-full"; ca: string | null } | null;
  /** Sign-ins accepted besides SCRAM-SHA-256-PLUS (the target's options.auth.allow; scram-sha-256 without TLS). */
  allowAuth: ("scram-sha-256" | "md5" | "password")[];
}

export interface UpstreamMysql {
  kind: "mysql";
  host: string;
  /** The judged IP address \`host\` resolved to: the proxy connects here and nowhere else. */
  address: string;
  port: number;
  /** The database the client asked for at sign-in (null: none); the login's privileges decide the rest. */
  database: string | null;
  user: string;
  password: string;
  /** TLS towards the database as the target's address says (verify-full without `?sslmode=`); null only for disable. */
  tls: { mode: "require" | "verify-ca" | "verify-full"; ca: string | null } | null;
}

export interface UpstreamSsh {
  kind: "ssh";
  host: string;
  /**
   * The IP address \`host\` resolved to when the session opened, judged by the address policy: the proxy
   * connects here and nowhere else (no second lookup, so a name re-pointed afterwards is not followed).
   * \`host\` stays the name, for TLS (SNI, verify-full) and messages.
   */
  address: string;
  port: number;
  username: string;
  /** The host key fingerprint the target is pinned to: "SHA256:<base64>" (`ssh-keygen -lf`). */
  hostKey: string;
  /** Exactly one of password / privateKey (OpenSSH PEM). */
  password?: string;
  privateKey?: string;
}

/**
 * Writes one session's recording. Calls never throw and never block the relay: a write that fails is
 * counted, and when the policy requires recording the session's signal is aborted with reason
 * `recording_failed`. Once the session's `end` has begun the recording takes nothing more: a proxy stops
 * relaying first, so that nothing passes that the recording does not hold.
 */
export interface SessionRecorder {
  /**
   * SSH output of the target's stdout (asciicast "o"). `channel`: the session channel's number in its
   * session (1, 2, … in the order opened), so channels sharing a connection stay apart.
   */
  output(data: Buffer | string, channel?: number): void;
  /** SSH output of the target's stderr, SSH extended data ("e"): never mixed into stdout (the SSH recorder has it). */
  errorOutput?(data: Buffer | string, channel?: number): void;
  /** SSH input: typed at a terminal, or the stdin of an exec channel (asciicast "i"). */
  input(data: Buffer | string, channel?: number): void;
  /** SSH window size change (asciicast "r"). */
  resize(cols: number, rows: number, channel?: number): void;
  /**
   * A non-terminal SSH fact: `exec` {command, exitCode?}, `sftp` {operation, path, direction?, bytes?},
   * `scp` {direction, path, bytes}, `forward` {kind, host, port, allowed}, `subsystem` {name}.
   */
  event(name: string, fields: Record<string, unknown>): void;
  /**
   * A PostgreSQL or MySQL statement, logged before the proxy sends it to the server. False: the
   * recording did not take it (its size limit, a failed disk, the session ending), and under
   * `recording: required` the proxy must not send it. Absent (a test's recorder): taken.
   */
  sent?(statement: SentStatement): boolean;
  /** A PostgreSQL or MySQL statement's result, logged when it comes (or fails); `sent` names its statement's line. */
  query(entry: QueryLogResult): void;
  /**
   * The recording's disk is behind (a stalled or slow disk: more than a few MiB wait to be written): a
   * proxy holds its sources back until `onDrain` rather than let the backlog grow in memory or drop it.
   */
  readonly backlogged?: boolean;
  /** Calls `listener` once the recording is no longer backlogged (at once if it is not). */
  onDrain?(listener: () => void): void;
}

/** A session the module opened: the proxy relays until `signal` aborts or either side closes, then calls `end`. */
export interface BrokeredSession<
  U extends UpstreamPostgres | UpstreamMysql | UpstreamSsh = UpstreamPostgres | UpstreamMysql | UpstreamSsh,
> {
  id: string;
  /** Stint user name, role and target names (for logs and prompts). */
  user: string;
  role: string;
  target: string;
  policy: SessionPolicy;
  /** Where and as whom to connect upstream. Never log it: it holds the credential. */
  upstream: U;
  recorder: SessionRecorder;
  /**
   * Aborted when the session must end at once: an administrator's kill, the activation ending, or a
   * required recording failing. `signal.reason` is a SessionEnd.
   */
  signal: AbortSignal;
  /** Bytes relayed: `up` client → target, `down` target → client. */
  countBytes(direction: "up" | "down", bytes: number): void;
  /** The proxy refused a statement under the role's query policy: audited (never throws, never blocks). */
  queryRefused?(event: QueryRefusedEvent): void;
  /** SSH: a file transfer passed, failed or was refused: audited as `session.file_transfer` (never throws). */
  fileTransfer?(event: FileTransferEvent): void;
  /**
   * SSH: a channel refused because the target's end of it was not what it claimed (an `sftp` subsystem that
   * does not answer as SFTP): audited as `session.channel_refused` (never throws).
   */
  channelRefused?(event: { subsystem: string; reason: string }): void;
  /**
   * SSH: the policy requires a moderator: the proxy opens no channel upstream until `whenAdmitted()`
   * resolves (ssh-proxy.ts, live-moderation.ts). Absent: the session starts at once.
   */
  moderation?: ModerationGate;
  /**
   * Ends the session (idempotent): closes the recording, stores its SHA-256, writes the audit event.
   * After an abort, pass the signal's reason's `reason`.
   */
  end(reason: EndReason, detail?: string): Promise<void>;
}

/** The reason carried by an aborted BrokeredSession.signal. */
export interface SessionEnd {
  reason: EndReason;
  /** A sentence for the user ("your activation of pg-admin was revoked by carol: …"). */
  message: string;
}

/** A refusal the proxy shows the client as is (PostgreSQL ErrorResponse message, SSH banner/disconnect text). */
export class SessionRefusedError extends Error {
  override readonly name = "SessionRefusedError";
  constructor(
    /**
     * Stable code: BAD_CREDENTIALS, NOT_ACTIVE, NO_CREDENTIAL, RECORDING_UNAVAILABLE, TARGET_UNSUPPORTED,
     * ADDRESS_REFUSED (the target's address resolves where the address policy forbids), TARGET_UNREACHABLE,
     * MODERATION_UNSUPPORTED (the policy names moderators and the session is not SSH).
     */
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** What the SSH proxy learns from a client's public-key offer, before the signature is checked. */
export interface SshCertificateLogin {
  /** Stint user name (the certificate's principal). */
  user: string;
  /** The target named after `%` in the SSH user name ("alice%prod-web" → "prod-web"). */
  target: string;
  /** The key the client must prove it holds (verify the userauth signature with it). */
  publicKey: import("node:crypto").KeyObject;
  /** The certificate's serial and key id, for the audit trail. */
  serial: string;
  keyId: string;
}

/** The decisions the proxies ask for. Every method throws SessionRefusedError with a clear message. */
export interface SessionGate {
  /**
   * PostgreSQL: the startup's user ("alice%pg-read": Stint user and role) and the password the client
   * sent (a Stint database token). Returns the opened session, upstream credential included.
   */
  openPostgres(input: {
    user: string;
    password: string;
    database: string | null;
    clientAddress: string;
  }): Promise<BrokeredSession<UpstreamPostgres>>;
  /**
   * MySQL/MariaDB: the sign-in's user ("alice%app-maria": Stint user and role) and the password the client
   * sent in clear (a Stint database token), and the database it asked for. Same checks as openPostgres.
   */
  openMysql(input: {
    user: string;
    password: string;
    database: string | null;
    clientAddress: string;
  }): Promise<BrokeredSession<UpstreamMysql>>;
  /**
   * SSH, step 1: a public-key offer. `username` is what the client logs in as ("alice%prod-web"),
   * `algorithm` and `key` the offered key (a certificate blob). Refuses anything but a valid Stint
   * certificate for that user.
   */
  checkSshCertificate(input: { username: string; algorithm: string; key: Buffer }): SshCertificateLogin;
  /** SSH, step 2: after the signature checked out, the session with its upstream. */
  openSsh(login: SshCertificateLogin, input: { clientAddress: string }): Promise<BrokeredSession<UpstreamSsh>>;
}
