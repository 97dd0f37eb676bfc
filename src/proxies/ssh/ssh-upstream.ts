/** The proxy's own connection to the target: the vaulted credential, the pinned host key. */
import { createHash, timingSafeEqual } from "node:crypto";
import ssh2 from "ssh2";
import type { Client as SshClient } from "ssh2";
import type { UpstreamSsh } from "../../modules/sessions/sessions.types.js";
import { safely } from "./session-end.js";

// ssh2 is CommonJS: Node's ESM loader cannot import its classes by name.
const { Client } = ssh2;

/** "SHA256:<base64 without padding>" of an SSH public key blob, as `ssh-keygen -l` prints it. */
export function hostKeyFingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash("sha256").update(keyBlob).digest("base64").replace(/=+$/, "")}`;
}

function fingerprintMatches(keyBlob: Buffer, pinned: string): boolean {
  const seen = Buffer.from(hostKeyFingerprint(keyBlob));
  const expected = Buffer.from(pinned.trim());
  return seen.length === expected.length && timingSafeEqual(seen, expected);
}

/** Connects with the vaulted credential; refuses a target whose host key is not the pinned one. */
export function connectUpstream(upstream: UpstreamSsh, timeoutMs: number): Promise<SshClient> {
  return new Promise((resolve, reject) => {
    const connection = new Client();
    let hostKeyMismatch = false;
    connection.once("ready", () => {
      // The caller adds its own listener; until then an error must not crash the process.
      connection.removeAllListeners("error");
      connection.on("error", () => undefined);
      resolve(connection);
    });
    connection.once("error", (error: Error & { level?: string }) => {
      connection.on("error", () => undefined);
      safely(() => connection.end());
      if (hostKeyMismatch) return reject(new Error("the target's host key does not match the pinned key"));
      if (error.level === "client-authentication") return reject(new Error("the target refused the credential"));
      if (error.level === "client-timeout") return reject(new Error("the target did not answer in time"));
      reject(new Error("the target cannot be reached"));
    });
    try {
      connection.connect({
        // The address the gate resolved and judged by the address policy: no second lookup.
        host: upstream.address,
        port: upstream.port,
        username: upstream.username,
        ...(upstream.privateKey !== undefined
          ? { privateKey: upstream.privateKey, authHandler: ["publickey"] }
          : { password: upstream.password, authHandler: ["password"] }),
        hostVerifier: (key: Buffer) => {
          const ok = fingerprintMatches(key, upstream.hostKey);
          if (!ok) hostKeyMismatch = true;
          return ok;
        },
        readyTimeout: timeoutMs,
        keepaliveInterval: 30_000,
      });
      // As on the client side: the relay batches its writes, Nagle would only hold back a packet's tail.
      connection.setNoDelay(true);
    } catch {
      reject(new Error("the target's connection settings are not usable"));
    }
  });
}
