/**
 * The ssh-host connector's SSH connections: signed-in admin connections pooled per target
 * (../connection-pool.ts), the host key checked against the pinned fingerprint on every new connection before
 * signing in, a connection of its own to sign in as a login (verifyPassword), aborts, and errors scrubbed of
 * the keys. The operations (ssh-host.connector.ts) run inside `withSession`.
 */
import { randomBytes } from "node:crypto";
import { Socket } from "node:net";
import { Client, type ClientErrorExtensions } from "ssh2";
import { createConnectionPools, poolKey } from "../connection-pool.js";
import { ConnectorError, refused, unavailable, type CallOptions, type ConnectorTarget } from "../connector.types.js";
import {
  buildBatch,
  buildCommand,
  fingerprintFromHex,
  optionProblems,
  parseAddress,
  parseOptions,
  splitBatch,
  type CommandResult,
  type SshAddress,
  type SshHostOptions,
} from "./ssh-host.rules.js";

const CONNECT_TIMEOUT_MS = 5_000;
const COMMAND_TIMEOUT_MS = 30_000;
const CLOSE_WAIT_MS = 250;
/**
 * How long a command's channel may take to open. A live sshd answers at once; a pooled connection whose host
 * went silent (no FIN: a pause, a network cut) would otherwise hold the call for the whole command timeout.
 */
const CHANNEL_OPEN_TIMEOUT_MS = 10_000;

export interface Command {
  argv: string[];
  /** Through `sudo -n` when useSudo is on and the admin user is not root (default true). */
  privileged?: boolean;
}

export interface Session {
  address: SshAddress;
  options: SshHostOptions;
  /** Runs the commands in order in one round trip, whatever their exit status; one result each. */
  run(...commands: Command[]): Promise<CommandResult[]>;
}

/** One signed-in SSH connection. */
interface SshConnection {
  client: Client;
  /** Our own socket, so that it can be closed for certain (ssh2's destroy() does nothing once end() ran). */
  socket: Socket;
  where: string;
  /** Rejects with ConnectionLost when the connection closes; raced against the sign-in (steps use untilLost). */
  lost: Promise<never>;
  closed: boolean;
}

/** The connection closed under a call, or would not open a channel: a new connection may succeed. */
class ConnectionLost extends ConnectorError {
  constructor(message: string) {
    super("unavailable", message);
  }
}

/**
 * `pending`, or ConnectionLost when the connection closes first. The close listener lives as long as the step:
 * racing every step against the connection's long-lived `lost` promise would leave a reaction on it per step,
 * each keeping that step's result alive for as long as the pooled connection lives.
 */
function untilLost<R>(connection: SshConnection, pending: Promise<R>): Promise<R> {
  const lost = () => new ConnectionLost(`the SSH connection to ${connection.where} closed`);
  if (connection.closed) {
    pending.catch(() => undefined);
    return Promise.reject(lost());
  }
  return new Promise<R>((resolve, reject) => {
    // Deferred so that the "error" event, which says why, is handled first.
    const onClose = () => setImmediate(() => reject(lost()));
    connection.client.once("close", onClose);
    pending.then(resolve, reject).finally(() => connection.client.removeListener("close", onClose));
  });
}

/** The server refused the key: a refusal, which verifyPassword reports as false. */
export class AuthenticationFailed extends ConnectorError {
  constructor(message: string) {
    super("refused", message);
  }
}

async function closeConnection(connection: SshConnection): Promise<void> {
  const { client, socket } = connection;
  if (!connection.closed && !socket.destroyed) {
    // A polite disconnect, a short wait for the server to hang up, then the socket goes regardless.
    const gone = new Promise<void>((resolve) => client.once("close", () => resolve()));
    client.end();
    await Promise.race([gone, new Promise((resolve) => setTimeout(resolve, CLOSE_WAIT_MS).unref())]);
  }
  socket.destroy();
}

/**
 * The pools of admin connections (see ../connection-pool.ts), keyed by the target's address, options and admin
 * key: a rotated key gets new connections, and the old key's connections are closed. A pooled connection keeps
 * no key (ssh2 needs it only to sign in).
 */
export const sshHostPools = createConnectionPools<SshConnection>({
  close: closeConnection,
  watch: (connection, lost) => connection.client.once("close", lost),
  reusable: (connection) => !connection.closed && !connection.socket.destroyed,
  lostConnection: (error) => error instanceof ConnectionLost,
  hold: (connection, held) => (held ? connection.socket.ref() : connection.socket.unref()),
});

/** Rejects when `signal` aborts (after `onAbort`); `stop` removes the listener. */
function abortion(where: string, signal: AbortSignal | undefined, onAbort: () => void) {
  let stop = () => {};
  const aborted = new Promise<never>((_, reject) => {
    if (!signal) return;
    const listener = () => {
      onAbort();
      reject(unavailable(`call to ${where} aborted`));
    };
    // An abort between the caller's check and here (while the pool handed out a connection) counts too.
    if (signal.aborted) return listener();
    signal.addEventListener("abort", listener, { once: true });
    stop = () => signal.removeEventListener("abort", listener);
  });
  aborted.catch(() => undefined);
  return { aborted, stop };
}

/** Opens a connection, checks the host key before signing in, and signs in with the key. */
async function openConnection(
  address: SshAddress,
  hostKey: string,
  privateKey: string,
  signal: AbortSignal | undefined,
): Promise<SshConnection> {
  const where = `${address.host}:${address.port}`;
  if (signal?.aborted) throw unavailable(`call to ${where} aborted`);
  const client = new Client();
  const socket = new Socket();
  let markClosed = () => {};
  const lost = new Promise<never>((_, reject) => {
    // Deferred so that the "error" event, which says why, is handled first.
    client.once("close", () => {
      markClosed();
      setImmediate(() => reject(new ConnectionLost(`the SSH connection to ${where} closed`)));
    });
  });
  lost.catch(() => undefined);
  const connection: SshConnection = { client, socket, where, lost, closed: false };
  markClosed = () => (connection.closed = true);
  const { aborted, stop } = abortion(where, signal, () => socket.destroy());
  try {
    socket.connect({ host: address.host, port: address.port });
    await Promise.race([connect(client, socket, address, hostKey, privateKey, where), lost, aborted]);
    return connection;
  } catch (error) {
    socket.destroy();
    throw error;
  } finally {
    stop();
  }
}

/**
 * Runs `work` on an admin connection of the target's pool (see sshHostPools), or, signing in as another user
 * (`as`, verifyPassword), on a connection of its own that is always closed. Errors leave as ConnectorError with
 * the keys scrubbed. On abort the call fails at once and its connection is destroyed.
 */
export async function withSession<T>(
  target: ConnectorTarget,
  call: CallOptions | undefined,
  work: (session: Session) => Promise<T>,
  extra: {
    /** Sign in as this user with this key instead of the admin (the address's user and the credential). */
    as?: { user: string; privateKey: string };
    /** Secrets besides the credential to keep out of messages. */
    secrets?: string[];
  } = {},
): Promise<T> {
  const problems = optionProblems(target.options);
  if (problems.length > 0) throw refused(`target ${target.name}: ${problems.join("; ")}`);
  const options = parseOptions(target.options);
  const parsed = parseAddress(target.address);
  if ("problem" in parsed) throw refused(`target ${target.name}: ${parsed.problem}`);
  const address = extra.as ? { ...parsed, user: extra.as.user } : parsed;
  const privateKey = extra.as ? extra.as.privateKey : target.credential;
  if (!privateKey) throw refused(`target ${target.name} has no credential: set the admin user's private key`);
  const secrets = [target.credential ?? "", ...(extra.secrets ?? [])];
  const where = `${address.host}:${address.port}`;
  const signal = call?.signal;
  if (signal?.aborted) throw unavailable(`call to ${where} aborted`);

  const sudo = options.useSudo && address.user !== "root";
  const run = async (connection: SshConnection) => {
    const { aborted, stop } = abortion(where, signal, () => connection.socket.destroy());
    const step = <R>(pending: Promise<R>) => Promise.race([untilLost(connection, pending), aborted]);
    try {
      const session: Session = {
        address,
        options,
        run: async (...commands) => {
          const lines = commands.map((command) => buildCommand(command.argv, sudo && command.privileged !== false));
          if (lines.length === 1) return [await step(exec(connection, lines[0]!))];
          const marker = `stint-${randomBytes(12).toString("hex")}`;
          const script = buildCommand(["sh", "-c", buildBatch(lines, marker)], false);
          const batch = await step(exec(connection, script));
          const results = splitBatch(batch.stdout, batch.stderr, marker, lines.length);
          if (results.length < lines.length) {
            throw unavailable(`a command batch on ${where} stopped early: ${firstLine(batch.stderr) || "no message"}`);
          }
          return results;
        },
      };
      return await step(work(session));
    } finally {
      stop();
    }
  };

  try {
    if (extra.as) {
      const connection = await openConnection(address, options.hostKey, privateKey, signal);
      try {
        return await run(connection);
      } finally {
        await closeConnection(connection);
      }
    }
    return await sshHostPools.use(
      poolKey("ssh-host", target),
      (opening) => openConnection(address, options.hostKey, privateKey, opening),
      run,
      signal,
    );
  } catch (error) {
    if (signal?.aborted) throw unavailable(`call to ${where} aborted`);
    throw scrub(error, secrets);
  }
}

export function firstLine(text: string): string {
  return text.trim().split("\n")[0] ?? "";
}

function connect(
  client: Client,
  socket: Socket,
  address: SshAddress,
  hostKey: string,
  privateKey: string,
  where: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let presented: string | undefined;
    let ready = false;
    client.once("ready", () => {
      ready = true;
      resolve();
    });
    // Kept for the connection's life: an "error" without a listener would crash the process. After ready,
    // "close" follows, which the pool and the call in progress hear.
    client.on("error", (error: Error & ClientErrorExtensions & { code?: string }) => {
      if (ready) return;
      if (presented !== undefined && presented !== hostKey) {
        reject(
          refused(
            `the host key of ${where} is ${presented}, not ${hostKey} as options.hostKey says; refusing to talk to it`,
          ),
        );
      } else if (error.level === "client-authentication") {
        reject(
          new AuthenticationFailed(
            `${address.user}@${where} did not accept the key (public key authentication failed)`,
          ),
        );
      } else if (error.level === "client-timeout") {
        reject(unavailable(`no SSH answer from ${where} within ${CONNECT_TIMEOUT_MS / 1000} s`));
      } else if (error.code) {
        reject(unavailable(`cannot reach ${where}: ${error.code}`));
      } else {
        reject(unavailable(`SSH connection to ${where} failed: ${error.message}`));
      }
    });
    try {
      client.connect({
        sock: socket,
        username: address.user,
        privateKey,
        readyTimeout: CONNECT_TIMEOUT_MS,
        hostHash: "sha256",
        hostVerifier: (hex: string) => {
          presented = fingerprintFromHex(hex);
          return presented === hostKey;
        },
      });
    } catch {
      // ssh2 throws synchronously on a key it cannot parse; its message is not repeated, to be safe.
      reject(refused("the credential is not a private key this connector can read (OpenSSH or PEM, no passphrase)"));
    }
  });
}

function exec(connection: SshConnection, command: string): Promise<CommandResult> {
  const { client, where } = connection;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(unavailable(`a command on ${where} did not finish within ${COMMAND_TIMEOUT_MS / 1000} s`));
      // The command may still run: this connection is not reused (the pool closes it after the failure).
      client.end();
    }, COMMAND_TIMEOUT_MS);
    timer.unref();
    const opening = setTimeout(() => {
      clearTimeout(timer);
      reject(new ConnectionLost(`${where} did not open a channel within ${CHANNEL_OPEN_TIMEOUT_MS / 1000} s`));
      // Nothing ran: the connection is closed (not reused), and a reused one is retried on a new connection.
      connection.socket.destroy();
    }, CHANNEL_OPEN_TIMEOUT_MS);
    opening.unref();
    client.exec(command, (error, channel) => {
      clearTimeout(opening);
      if (error) {
        clearTimeout(timer);
        // No channel on a connection that was fine when the call took it: most likely it died meanwhile.
        reject(new ConnectionLost(`${where} would not run a command: ${error.message}`));
        return;
      }
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      let code: number | null = null;
      channel.on("data", (chunk: Buffer) => stdout.push(chunk));
      channel.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
      channel.on("exit", (exitCode: number | null) => {
        code = typeof exitCode === "number" ? exitCode : null;
      });
      channel.on("close", () => {
        clearTimeout(timer);
        resolve({ code, stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString() });
      });
    });
  });
}

/** Every error leaves as a ConnectorError, with the credentials (and each line of them) cut out. */
function scrub(error: unknown, credentials: string[]): ConnectorError {
  const secrets = credentials
    .flatMap((credential) => [credential, ...credential.split("\n").filter((line) => line.trim().length >= 12)])
    .map((s) => s.trim());
  const clean = (message: string) =>
    secrets.reduce((text, secret) => (secret ? text.split(secret).join("[redacted]") : text), message);
  if (error instanceof AuthenticationFailed) return new AuthenticationFailed(clean(error.message));
  if (error instanceof ConnectorError) return new ConnectorError(error.reason, clean(error.message));
  return unavailable(clean(`unexpected error: ${error instanceof Error ? error.message : String(error)}`));
}
