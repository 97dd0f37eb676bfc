/**
 * Shared set-up of the SSH proxy's security tests: a gate's certificate check as the real gate makes it, and real
 * proxies on free ports, each with its own host key, closed together.
 */
import ssh2 from "ssh2";
import type { Logger } from "../../src/lib/logger.js";
import { SessionRefusedError, type SessionGate } from "../../src/modules/sessions/sessions.types.js";
import { publicKeyObject, verifyCertificate } from "../../src/modules/sessions/ssh-ca.js";
import { createSshProxy, type SshProxy } from "../../src/proxies/ssh/ssh-proxy.js";

/**
 * `checkSshCertificate` for `user` on target `web`: the offered certificate must be signed by `caPublicKey`, valid
 * now and name the login as a principal (else BAD_CREDENTIALS); each call counted in `calls.certificates`.
 */
export function certificateCheck(
  caPublicKey: string,
  user: string,
  calls: { certificates: number },
): SessionGate["checkSshCertificate"] {
  return ({ username, algorithm, key }) => {
    calls.certificates += 1;
    const verdict = verifyCertificate(`${algorithm} ${key.toString("base64")}`, caPublicKey, new Date(), {
      principal: username,
    });
    if (!verdict.ok)
      throw new SessionRefusedError("BAD_CREDENTIALS", `The certificate is not valid: ${verdict.reason}`);
    const { keyId, serial, publicKey } = verdict.certificate;
    return { user, target: "web", keyId, serial: serial.toString(), publicKey: publicKeyObject(publicKey) };
  };
}

/** SSH proxies of `gate` logging to `logger`: `start(maxAuthTries?)` answers a new one's port; `closeAll()` ends them. */
export function sshProxies(gate: Pick<SessionGate, "checkSshCertificate" | "openSsh">, logger: Logger) {
  const proxies: SshProxy[] = [];
  return {
    async start(maxAuthTries?: number): Promise<number> {
      const proxy = createSshProxy({
        gate,
        hostKey: ssh2.utils.generateKeyPairSync("ecdsa", { bits: 256 }).private,
        logger,
        port: 0,
        ...(maxAuthTries === undefined ? {} : { maxAuthTries }),
      });
      proxies.push(proxy);
      return (await proxy.listen()).port;
    },
    async closeAll(): Promise<void> {
      for (const proxy of proxies) await proxy.close();
    },
  };
}
