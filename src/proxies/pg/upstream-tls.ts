/**
 * TLS towards the database, as libpq's sslmode says: SSLRequest, exactly one answer byte, then a TLS
 * handshake on the same socket that checks the chain (verify-ca, verify-full) and the host name
 * (verify-full). A server that answers 'N', or sends anything after its 'S' before the handshake
 * (bytes an attacker could inject in clear, CVE-2021-23222), is refused.
 */
import { isIP, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { encodeSslRequest } from "../../lib/pg-wire.js";
import type { UpstreamPostgres } from "../../modules/sessions/sessions.types.js";

export class UpstreamTlsError extends Error {
  override readonly name = "UpstreamTlsError";
}

/** Reads the one-byte answer to an SSLRequest; rejects when more bytes came with it. */
function sslAnswer(socket: Socket, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const done = (error: Error | null, answer?: string) => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onClose);
      socket.off("error", onClose);
      if (error) reject(error);
      else resolve(answer ?? "");
    };
    const onData = (chunk: Buffer) => {
      socket.pause();
      if (chunk.length !== 1) done(new UpstreamTlsError("the server sent more than its answer to the SSL request"));
      else done(null, chunk.toString("latin1"));
    };
    const onClose = () => done(new UpstreamTlsError("the connection closed during the SSL request"));
    const timer = setTimeout(
      () => done(new UpstreamTlsError(`no answer to the SSL request within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on("data", onData);
    socket.once("close", onClose);
    socket.once("error", onClose);
    socket.write(encodeSslRequest());
  });
}

/** Negotiates TLS on a connected socket; resolves with the TLS socket once the server is verified. */
export async function startUpstreamTls(
  socket: Socket,
  host: string,
  tls: NonNullable<UpstreamPostgres["tls"]>,
  timeoutMs: number,
): Promise<TLSSocket> {
  const answer = await sslAnswer(socket, timeoutMs);
  if (answer !== "S")
    throw new UpstreamTlsError(
      answer === "N"
        ? "the server does not accept TLS (sslmode=disable would opt out)"
        : "the server answered the SSL request badly",
    );
  return tlsHandshake(socket, host, tls, timeoutMs);
}

/**
 * The TLS handshake on a connected socket once the database agreed to it (also the MySQL proxy's):
 * the chain against `tls.ca` (else the system's CAs) unless `require`, the host name with `verify-full`.
 */
export function tlsHandshake(
  socket: Socket,
  host: string,
  tls: NonNullable<UpstreamPostgres["tls"]>,
  timeoutMs: number,
): Promise<TLSSocket> {
  const secure = tlsConnect({
    socket,
    // SNI only for names; the certificate is checked against `host` (IP SANs for an address).
    ...(isIP(host) === 0 ? { servername: host } : {}),
    host,
    ...(tls.ca === null ? {} : { ca: tls.ca }),
    rejectUnauthorized: tls.mode !== "require",
    ...(tls.mode === "verify-full" ? {} : { checkServerIdentity: () => undefined }),
  });
  return new Promise<TLSSocket>((resolve, reject) => {
    const timer = setTimeout(() => {
      secure.destroy();
      reject(new UpstreamTlsError(`the TLS handshake did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    secure.once("secureConnect", () => {
      clearTimeout(timer);
      secure.off("error", onError);
      resolve(secure);
    });
    const onError = (error: Error) => {
      clearTimeout(timer);
      secure.destroy();
      reject(new UpstreamTlsError(`TLS failed: ${error.message}`));
    };
    secure.once("error", onError);
  });
}
