/**
 * `stint ssh login [ROLE]`: a short-lived OpenSSH certificate for your key, valid no longer than your
 * activation, written next to the key (and added to your agent when one runs). `stint ssh config`:
 * the ssh_config block and known_hosts line for Stint's SSH proxy. `stint ssh ca`: the CA public key
 * for hosts that trust Stint's certificates directly (TrustedUserCAKeys). `stint ssh krl`: the revocation
 * list of certificates whose activation ended, for those hosts' RevokedKeys.
 */
import { execFile } from "node:child_process";
import { isIP } from "node:net";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import type { Command } from "commander";
import { generateEd25519KeyPair } from "../../lib/ssh-keys.js";
import { sshCertificate, sshInfo } from "../../contract/sessions.js";
import { MAX_RESPONSE_BYTES, readBounded } from "../bounded-body.js";
import { profileDir, replaceFile, writePrivateFile } from "../credentials.js";
import { globalOptions, type CliContext } from "../context.js";
import { CliError } from "../exit-codes.js";
import { emit, note, sanitize, warn } from "../output.js";
import { checkName, clientFor } from "./shared.js";

const run = promisify(execFile);

function sshDir(ctx: CliContext): string {
  return path.join(profileDir(ctx.env), "ssh");
}

const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;
const HOST_KEY =
  /^(?:ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)) [A-Za-z0-9+/]{16,16384}={0,2}(?: [ -~]{0,255})?$/;

/**
 * The proxy's address and host key as the server gave them, before they go into ssh_config, known_hosts or a
 * command line: a host name or address and one key line, nothing that starts another directive or line
 * (a newline in the host put a `ProxyCommand` of the server's choosing in the user's ~/.ssh/config).
 */
function checkedProxy<P extends { host: string; port: number; hostKey: string }>(proxy: P): P {
  if (
    !(HOST_NAME.test(proxy.host) || isIP(proxy.host) !== 0) ||
    proxy.port < 1 ||
    proxy.port > 65535 ||
    !HOST_KEY.test(proxy.hostKey)
  )
    throw new CliError("BAD_RESPONSE", "the server's SSH proxy address or host key is not a host name, port and key");
  return proxy;
}

/**
 * The key Stint certifies: `--key` (a private key path; its `.pub` is read), else Stint's own key, made once. A new
 * private key goes into a fresh 0600 file, whatever a file of that name left behind (its mode included).
 */
export async function keyPair(
  ctx: CliContext,
  keyPath: string | undefined,
): Promise<{ privatePath: string; publicKey: string }> {
  if (keyPath) {
    const publicPath = keyPath.endsWith(".pub") ? keyPath : `${keyPath}.pub`;
    const publicKey = await readFile(publicPath, "utf8").catch(() => {
      throw new CliError("USAGE", `cannot read the public key ${publicPath}`);
    });
    return { privatePath: publicPath.slice(0, -4), publicKey: publicKey.trim() };
  }
  const dir = sshDir(ctx);
  const privatePath = path.join(dir, "id_ed25519");
  try {
    return { privatePath, publicKey: (await readFile(`${privatePath}.pub`, "utf8")).trim() };
  } catch {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const pair = generateEd25519KeyPair("stint");
    await writePrivateFile(privatePath, pair.privateKey);
    await writeFile(`${privatePath}.pub`, `${pair.publicKey}\n`, { mode: 0o644 });
    return { privatePath, publicKey: pair.publicKey };
  }
}

export function registerSshCommands(program: Command, ctx: CliContext): void {
  const ssh = program.command("ssh").description("hosts reached through Stint's SSH proxy");

  ssh
    .command("login")
    .description("get a certificate for your SSH key, valid while your activation lasts")
    .argument("[role]", "the activated role (default: your activation on an SSH host that lasts longest)")
    .option("--key <path>", "certify this key (private key path or its .pub) instead of Stint's own key")
    .option("--no-agent", "do not add the key and certificate to the running ssh-agent")
    .addHelpText(
      "after",
      "\nThe certificate is written next to the key as <key>-cert.pub; ssh offers it automatically.\n" +
        "It expires with the activation, and the proxy checks the activation at every connection.\n" +
        "\nExamples:\n  stint ssh login\n  stint ssh login web-root --key ~/.ssh/id_ed25519\n",
    )
    .action(async (roleName: string | undefined, options: { key?: string; agent: boolean }, command: Command) => {
      const { json } = globalOptions(command);
      const role = roleName === undefined ? undefined : checkName("role", roleName);
      const client = await clientFor(ctx, command);
      client.requireSession();
      const { privatePath, publicKey } = await keyPair(ctx, options.key);
      const { data, raw } = await client.request("POST", "/v1/ssh/certificates", {
        body: { publicKey, ...(role ? { role } : {}) },
        schema: sshCertificate,
      });
      const certPath = `${privatePath}-cert.pub`;
      await writeFile(certPath, `${data.certificate}\n`, { mode: 0o644 });
      await chmod(certPath, 0o644);
      let agent = false;
      if (options.agent && ctx.env.SSH_AUTH_SOCK) {
        const lifetime = Math.max(1, Math.floor((Date.parse(data.validBefore) - ctx.now()) / 1000));
        try {
          // ssh-add loads <key>-cert.pub with the key; -t drops both when the certificate expires.
          await run("ssh-add", ["-t", String(lifetime), privatePath], { env: { ...process.env, ...ctx.env } });
          agent = true;
        } catch (error) {
          warn(ctx, `could not add the key to ssh-agent: ${(error as Error).message.split("\n")[0]}`);
        }
      }
      const info = await client.request("GET", "/v1/ssh/ca", { schema: sshInfo, auth: false });
      const proxy = info.data.proxy && checkedProxy(info.data.proxy);
      // The certificate's one principal is the login: <you>%<target>.
      const login = data.principals[0] ?? `you%${data.target}`;
      emit(ctx, json, { ...(raw as object), certificateFile: certPath, identityFile: privatePath, agent, proxy }, () =>
        [
          `Certificate for ${sanitize(data.principals.join(", "))} (${sanitize(data.role)} on ${sanitize(data.target)}), valid until ${data.validBefore}.`,
          `Written to ${certPath}${agent ? " and added to your ssh-agent" : ""}.`,
          ...(proxy
            ? [
                `Connect: ssh -i ${privatePath} -p ${proxy.port} ${login}@${proxy.host}`,
                "(or add `stint ssh config` to ~/.ssh/config and run: ssh " + `${login}@stint)`,
              ]
            : [
                "This Stint server runs no SSH proxy; hosts that trust `stint ssh ca` accept the certificate directly",
                `for the principal ${login} (list it in their AuthorizedPrincipalsFile).`,
              ]),
          "",
        ].join("\n"),
      );
    });

  ssh
    .command("config")
    .description("print the ~/.ssh/config block for Stint's SSH proxy (and save its host key)")
    .action(async (_options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", "/v1/ssh/ca", { schema: sshInfo, auth: false });
      if (!data.proxy) throw new CliError("UNAVAILABLE", "this Stint server runs no SSH proxy");
      const proxy = checkedProxy(data.proxy);
      const dir = sshDir(ctx);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const knownHosts = path.join(dir, "known_hosts");
      const hostEntry = proxy.port === 22 ? proxy.host : `[${proxy.host}]:${proxy.port}`;
      await writeFile(knownHosts, `${hostEntry} ${proxy.hostKey}\n`, { mode: 0o644 });
      const identity = path.join(dir, "id_ed25519");
      const block = [
        "# Stint SSH proxy: ssh <you>%<target>@stint (after `stint activate` and `stint ssh login`)",
        "Host stint",
        `  HostName ${proxy.host}`,
        `  Port ${proxy.port}`,
        `  IdentityFile ${identity}`,
        `  CertificateFile ${identity}-cert.pub`,
        "  IdentitiesOnly yes",
        `  UserKnownHostsFile ${knownHosts}`,
        "  StrictHostKeyChecking yes",
        "",
      ].join("\n");
      emit(ctx, json, { ...(raw as object), knownHostsFile: knownHosts, config: block }, () => block);
      if (!json) note(ctx, `Append this to ~/.ssh/config. The proxy's host key is saved in ${knownHosts}.`);
    });

  ssh
    .command("krl")
    .description("write Stint's SSH key revocation list (for sshd's RevokedKeys on hosts that trust the CA)")
    .option("-o, --output <file>", "where to write it (replaced atomically); default: standard output")
    .addHelpText(
      "after",
      "\nThe list holds every Stint certificate whose activation ended before the certificate expires.\n" +
        "Fetch it often (cron or a systemd timer) on hosts with TrustedUserCAKeys; no sign-in is needed.\n" +
        "\nExample:\n  stint ssh krl -o /etc/ssh/stint.krl   # sshd_config: RevokedKeys /etc/ssh/stint.krl\n",
    )
    .action(async (options: { output?: string }, command: Command) => {
      const client = await clientFor(ctx, command);
      const stream = await client.stream("/v1/ssh/krl", undefined, false);
      const krl = await readBounded(stream, MAX_RESPONSE_BYTES, "revocation list");
      // "SSHKRL\n\0": never replace a host's list with something else (an error page, a proxy's answer).
      if (!krl.subarray(0, 8).equals(Buffer.from("SSHKRL\n\0", "latin1")))
        throw new CliError("BAD_RESPONSE", "the server's answer is not an OpenSSH KRL");
      if (!options.output) {
        ctx.stdout.write(krl);
        return;
      }
      // sshd reads the file at every sign-in: write it whole under another name (random, opened exclusively:
      // never a link planted at a name known in advance), then rename.
      await replaceFile(options.output, krl, 0o644);
      note(ctx, `Wrote ${krl.length} bytes to ${options.output}.`);
    });

  ssh
    .command("ca")
    .description("print Stint's SSH user CA public key (for sshd's TrustedUserCAKeys)")
    .action(async (_options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", "/v1/ssh/ca", { schema: sshInfo, auth: false });
      emit(ctx, json, raw, () => `${data.caPublicKey}\n`);
    });
}
