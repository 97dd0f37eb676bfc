/**
 * The PostgreSQL proxy's side towards the server: signing in with the gate's credential (only in a
 * form the target allows), reading the server's refusal, and CancelRequests on a fresh connection.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { Socket } from "node:net";
import { TLSSocket } from "node:tls";
import type { Logger } from "../../lib/logger.js";
import {
  SCRAM_SHA_256,
  SCRAM_SHA_256_PLUS,
  createScramNonce,
  encodeCancelRequest,
  encodePasswordMessage,
  encodeSaslInitialResponse,
  encodeSaslResponse,
  parseBackendMessage,
  parseScramServerFirst,
  scramClientFinal,
  scramClientFirst,
  tlsServerEndPoint,
  verifyScramServerFinal,
  type ScramClientFinal,
  type ScramClientFirst,
} from "../../lib/pg-wire.js";
import type { UpstreamPostgres } from "../../modules/sessions/sessions.types.js";
import { errorMessage } from "../session-listener.js";
import { connectTcp, frameBytes, type FrameInbox, type KeptFrame } from "./wire-stream.js";

export interface CancelTarget {
  /** The secret the proxy gave the client (with the server's real process id). */
  secret: Buffer;
  host: string;
  port: number;
  processId: number;
  secretKey: Buffer;
}

export class UpstreamFailure extends Error {
  constructor(
    readonly sqlstate: string,
    message: string,
  ) {
    super(message);
  }
}

/** PostgreSQL's MD5 password answer: "md5" + md5(md5(password + user) + salt). */
export function md5PasswordAnswer(user: string, password: string, salt: Buffer): string {
  const inner = createHash("md5")
    .update(password + user, "utf8")
    .digest("hex");
  return (
    "md5" +
    createHash("md5")
      .update(Buffer.concat([Buffer.from(inner, "latin1"), salt]))
      .digest("hex")
  );
}

export /** Sends a CancelRequest to a server on a fresh connection; failures are only logged. */
function sendCancel(log: Logger, target: Omit<CancelTarget, "secret">, timeoutMs: number): void {
  connectTcp(target.host, target.port, timeoutMs).then(
    (socket) => {
      socket.on("error", () => {});
      socket.setTimeout(timeoutMs, () => socket.destroy());
      socket.end(encodeCancelRequest(target.processId, target.secretKey));
    },
    (error: unknown) => log.warn({ error: errorMessage(error) }, "could not forward a cancel request upstream"),
  );
}

/**
 * The keys handed out to clients, by the server's real process id (one per session; two servers may
 * reuse a pid). A client's CancelRequest is forwarded only when the pid and the secret match one
 * entry together.
 */
export function createCancelRegistry(
  log: Logger,
  timeoutMs: number,
): {
  add(target: CancelTarget): void;
  remove(target: CancelTarget): void;
  /** A client's CancelRequest: sent to its server when the key is one handed out; else ignored. */
  forward(processId: number, secretKey: Buffer): void;
} {
  const cancelTargets = new Map<number, CancelTarget[]>();
  return {
    add: (target) => {
      cancelTargets.set(target.processId, [...(cancelTargets.get(target.processId) ?? []), target]);
    },
    remove: (target) => {
      const left = (cancelTargets.get(target.processId) ?? []).filter((entry) => entry !== target);
      if (left.length > 0) cancelTargets.set(target.processId, left);
      else cancelTargets.delete(target.processId);
    },
    forward: (processId, secretKey) => {
      const target = (cancelTargets.get(processId) ?? []).find(
        (entry) => entry.secret.length === secretKey.length && timingSafeEqual(entry.secret, secretKey),
      );
      if (target === undefined) {
        log.debug("cancel request with an unknown key ignored");
        return;
      }
      sendCancel(log, target, timeoutMs);
    },
  };
}

/** The server's ErrorResponse during sign-in, as the failure the client is told. */
export function upstreamRefusal(frame: KeptFrame, where: string): UpstreamFailure {
  const message = parseBackendMessage("E", frame.body);
  const fields = message.kind === "ErrorResponse" ? message.fields : {};
  const code = fields.C ?? "08004";
  // Class 28 upstream is about the proxy's credential, not the client's: not "your password is wrong".
  return new UpstreamFailure(
    code.startsWith("28") ? "08004" : code,
    `the database at ${where} refused the session: ${fields.M ?? "no message"}`,
  );
}

/** Refuses a sign-in method the target did not opt into, before any form of the password is sent. */
function requireAllowed(
  target: UpstreamPostgres,
  where: string,
  method: "password" | "md5" | "scram-sha-256",
  what: string,
): void {
  if (target.allowAuth.includes(method)) return;
  throw new UpstreamFailure(
    "08004",
    `the database at ${where} asks for ${what}; Stint signs in there only by SCRAM-SHA-256${target.tls ? " with channel binding" : ""} (the target may opt in with options.auth.allow: [${method}])`,
  );
}

/**
 * Signs in upstream with the gate's credential, up to AuthenticationOk; ParameterStatus and notices
 * the server sends meanwhile go to the client as they are (`toClient`).
 */
export async function authenticate(
  socket: Socket,
  inbox: FrameInbox,
  remaining: () => number,
  target: UpstreamPostgres,
  toClient: (bytes: Buffer) => void,
): Promise<void> {
  const where = `${target.host}:${target.port}`;
  let scram: { first: ScramClientFirst; final: ScramClientFinal | null } | null = null;
  for (;;) {
    const frame = await inbox.next(remaining());
    if (frame.type === "E") throw upstreamRefusal(frame, where);
    if (frame.type === "v" || frame.type === "N") {
      toClient(frameBytes(frame));
      continue;
    }
    if (frame.type !== "R") throw new UpstreamFailure("08P01", `unexpected '${frame.type ?? "?"}' from ${where}`);
    const message = parseBackendMessage("R", frame.body);
    switch (message.kind) {
      case "AuthenticationOk":
        return;
      case "AuthenticationCleartextPassword":
        requireAllowed(target, where, "password", "the password in clear");
        socket.write(encodePasswordMessage(target.password));
        break;
      case "AuthenticationMD5Password":
        requireAllowed(target, where, "md5", "an MD5 password");
        socket.write(encodePasswordMessage(md5PasswordAnswer(target.user, target.password, message.salt)));
        break;
      case "AuthenticationSASL": {
        let first: ScramClientFirst;
        if (socket instanceof TLSSocket && message.mechanisms.includes(SCRAM_SHA_256_PLUS)) {
          const certificate = socket.getPeerCertificate().raw;
          first = scramClientFirst("", createScramNonce(), {
            kind: "tls-server-end-point",
            certificateHash: tlsServerEndPoint(certificate),
          });
        } else if (message.mechanisms.includes(SCRAM_SHA_256)) {
          requireAllowed(target, where, "scram-sha-256", "SCRAM-SHA-256 without channel binding");
          // "y": we could bind but the server did not offer it; a server that did would see the downgrade.
          first = scramClientFirst("", createScramNonce(), {
            kind: socket instanceof TLSSocket ? "unused" : "none",
          });
        } else {
          throw new UpstreamFailure("08004", `${where} offers no supported SASL mechanism`);
        }
        scram = { first, final: null };
        socket.write(encodeSaslInitialResponse(first.mechanism, Buffer.from(first.message, "utf8")));
        break;
      }
      case "AuthenticationSASLContinue": {
        if (scram === null) throw new UpstreamFailure("08P01", `unexpected SASL continue from ${where}`);
        const serverFirst = parseScramServerFirst(message.data.toString("utf8"), scram.first.clientNonce);
        scram.final = scramClientFinal(target.password, scram.first, serverFirst);
        socket.write(encodeSaslResponse(Buffer.from(scram.final.message, "utf8")));
        break;
      }
      case "AuthenticationSASLFinal":
        if (scram?.final == null) throw new UpstreamFailure("08P01", `unexpected SASL final from ${where}`);
        verifyScramServerFinal(message.data.toString("utf8"), scram.final.expectedServerSignature);
        break;
      default:
        throw new UpstreamFailure("08004", `${where} asks for an authentication method the proxy does not support`);
    }
  }
}
