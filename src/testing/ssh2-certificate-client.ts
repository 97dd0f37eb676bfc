/**
 * Test support: an ssh2 client signed in to the SSH proxy with a key and the certificate the API issued
 * for it (`${key}-cert.pub`), for tests that drive the protocol past what the OpenSSH client does (many
 * channels, requests in a loop). Signs as the browser terminal does (web-terminal.ts's agent).
 */
import { readFileSync } from "node:fs";
import ssh2, { type AgentAuthMethod, type Client as SshClient } from "ssh2";
import { CertificateAgent } from "../proxies/ssh/web-terminal.js";

function signed(signature: Buffer | Error): Buffer {
  if (signature instanceof Error) throw signature;
  return signature;
}

export async function sshClientWithCertificate(port: number, login: string, keyFile: string): Promise<SshClient> {
  const parsed = ssh2.utils.parseKey(readFileSync(keyFile));
  if (parsed instanceof Error || Array.isArray(parsed)) throw new Error(`cannot read the key ${keyFile}`);
  const certificate = readFileSync(`${keyFile}-cert.pub`, "utf8");
  const client = new ssh2.Client();
  const viaAgent: AgentAuthMethod = {
    type: "agent",
    username: login,
    agent: new CertificateAgent(certificate, (data) => signed(parsed.sign(data))),
  };
  return new Promise((resolve, reject) => {
    client.once("ready", () => resolve(client));
    client.once("error", reject);
    client.connect({
      host: "127.0.0.1",
      port,
      username: login,
      authHandler: [viaAgent],
      hostVerifier: () => true,
      readyTimeout: 30_000,
    });
  });
}
