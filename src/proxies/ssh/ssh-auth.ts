/** Signing in to the proxy: which certificates are offered, whether the userauth signature holds, refusals. */
import { verify, type KeyObject } from "node:crypto";
import type { AuthContext, PublicKeyAuthContext } from "ssh2";
import { SessionRefusedError } from "../../modules/sessions/sessions.types.js";
import { safely } from "./session-end.js";

/** Userauth refusals one connection gets before it is closed: OpenSSH's MaxAuthTries default (STINT_SSH_PROXY_MAX_AUTH_TRIES). */
export const DEFAULT_MAX_AUTH_TRIES = 6;

/** Certificate key algorithms a client may offer (OpenSSH PROTOCOL.certkeys). */
export const CERTIFICATE_ALGORITHMS = new Set([
  "ssh-ed25519-cert-v01@openssh.com",
  "ssh-rsa-cert-v01@openssh.com",
  "rsa-sha2-256-cert-v01@openssh.com",
  "rsa-sha2-512-cert-v01@openssh.com",
]);

/**
 * The certificate type to hand the gate: the offered algorithm, except that RSA certificates signed
 * with SHA-2 are offered as rsa-sha2-256/512-cert-v01 while the certificate itself says ssh-rsa-cert-v01.
 */
export function certificateKeyType(algorithm: string): string {
  return algorithm.startsWith("rsa-sha2-") ? "ssh-rsa-cert-v01@openssh.com" : algorithm;
}

/**
 * Whether the userauth request is signed by the key the certificate certifies. ssh2 leaves a
 * certificate's signature as the SSH signature blob (string algorithm, string signature); the
 * algorithm must match the certified key and the offered algorithm (no SHA-1 RSA).
 */
export function userauthSignatureValid(
  ctx: Pick<PublicKeyAuthContext, "key" | "signature" | "blob">,
  publicKey: KeyObject,
): boolean {
  if (!ctx.signature || !ctx.blob) return false;
  try {
    const offered = ctx.key.algo;
    if (publicKey.asymmetricKeyType === "ed25519") {
      if (offered !== "ssh-ed25519-cert-v01@openssh.com") return false;
      // OpenSSH names the plain key's algorithm in the blob; ssh2's client (the browser terminal's,
      // web-terminal.ts) repeats the certificate's name, and ssh2's server then hands over the bare 64-byte
      // signature (it strips a name equal to the offered algorithm). All are taken: Ed25519 has one signature
      // scheme, so the name picks nothing (RSA's picks the hash, and stays strict below), and the signature
      // must still verify with the certified key over this session's userauth data.
      const named = parseSignatureBlob(ctx.signature);
      if (named && !ED25519_SIGNATURE_NAMES.has(named.algorithm)) return false;
      const signature = named?.signature ?? ctx.signature;
      if (signature.length !== ED25519_SIGNATURE_BYTES) return false;
      return verify(null, ctx.blob, publicKey, signature);
    }
    const parsed = parseSignatureBlob(ctx.signature);
    if (!parsed) return false;
    const { algorithm, signature } = parsed;
    if (publicKey.asymmetricKeyType === "rsa") {
      const hash = algorithm === "rsa-sha2-256" ? "sha256" : algorithm === "rsa-sha2-512" ? "sha512" : undefined;
      if (!hash || offered !== `${algorithm}-cert-v01@openssh.com`) return false;
      return verify(hash, ctx.blob, publicKey, signature);
    }
    return false;
  } catch {
    return false;
  }
}

const ED25519_SIGNATURE_NAMES = new Set(["ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com"]);
const ED25519_SIGNATURE_BYTES = 64;

function parseSignatureBlob(blob: Buffer): { algorithm: string; signature: Buffer } | undefined {
  if (blob.length < 4) return undefined;
  const nameLength = blob.readUInt32BE(0);
  if (nameLength === 0 || nameLength > 64 || 4 + nameLength + 4 > blob.length) return undefined;
  const algorithm = blob.subarray(4, 4 + nameLength).toString("latin1");
  const signatureLength = blob.readUInt32BE(4 + nameLength);
  const start = 8 + nameLength;
  if (start + signatureLength !== blob.length) return undefined;
  return { algorithm, signature: blob.subarray(start) };
}

/** What ssh2's Protocol object must look like for sendAuthBanner (checked at run time). */
interface ProtocolInternals {
  _kexinit?: unknown;
  _queue?: Buffer[];
  _packetRW: { write: { allocStart: number; alloc(size: number): Buffer; finalize(packet: Buffer): Buffer } };
  _cipher: { encrypt(packet: Buffer): void };
}

const MESSAGE_DISCONNECT = 1;
const MESSAGE_USERAUTH_BANNER = 53;
/** RFC 4253 §11.1: SSH_DISCONNECT_NO_MORE_AUTH_METHODS_AVAILABLE. */
const DISCONNECT_NO_MORE_AUTH_METHODS = 14;

/**
 * Sends SSH_MSG_USERAUTH_BANNER (RFC 4252 §5.4) so the client shows why it is refused. ssh2 only sends
 * the fixed banner of the server options, so this writes the packet through ssh2's own packet writer;
 * if ssh2's internals ever change shape, the client is refused without the message.
 */
export function sendAuthBanner(ctx: AuthContext, message: string): void {
  sendText(ctx, MESSAGE_USERAUTH_BANNER, undefined, `${message.replace(/[\r\n]+$/, "")}\n`);
}

/**
 * Sends SSH_MSG_DISCONNECT with reason "no more authentication methods available" and `message` as its
 * description (OpenSSH's ssh prints it: "Received disconnect from …: <message>"); ssh2's own disconnect
 * has no description. The caller still ends the connection.
 */
export function sendAuthDisconnect(ctx: AuthContext, message: string): void {
  sendText(ctx, MESSAGE_DISCONNECT, DISCONNECT_NO_MORE_AUTH_METHODS, message);
}

/** One packet of `type`: [uint32 code], string text, string language tag (empty), through ssh2's writer. */
function sendText(ctx: AuthContext, type: number, code: number | undefined, message: string): void {
  const protocol = (ctx as unknown as { _protocol?: Partial<ProtocolInternals> })._protocol;
  if (
    !protocol ||
    typeof protocol._packetRW?.write.alloc !== "function" ||
    typeof protocol._packetRW.write.finalize !== "function" ||
    typeof protocol._cipher?.encrypt !== "function"
  ) {
    return;
  }
  const { write } = protocol._packetRW;
  const cipher = protocol._cipher;
  safely(() => {
    const text = Buffer.from(message, "utf8");
    const head = code === undefined ? 1 : 5;
    const start = write.allocStart;
    const packet = write.alloc(head + 4 + text.length + 4);
    packet[start] = type;
    if (code !== undefined) packet.writeUInt32BE(code, start + 1);
    packet.writeUInt32BE(text.length, start + head);
    text.copy(packet, start + head + 4);
    packet.writeUInt32BE(0, start + head + 4 + text.length); // language tag
    const finalized = write.finalize(packet);
    if (protocol._kexinit !== undefined) {
      // A key exchange is running: queue it as ssh2 does.
      (protocol._queue ??= []).push(finalized);
    } else {
      cipher.encrypt(finalized);
    }
  });
}

export function refusalText(error: unknown): string {
  if (error instanceof SessionRefusedError) return error.message;
  return "Stint could not open the session.";
}
