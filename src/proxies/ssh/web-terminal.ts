/**
 * The browser terminal: a WebSocket (`GET /v1/ssh/terminals`, protocol in src/contract/terminal.ts) bridged
 * to an SSH shell through this node's SSH proxy. The bridge is an ordinary SSH client of the proxy: it makes
 * a key pair for this one terminal, has the sessions module certify it for the caller's activation (the same
 * `issueSshCertificate` as `stint ssh login`, audited `ssh.certificate_issued`), and signs in to the proxy
 * over an in-memory connection (`connectLocal`) as `user%target`. So the certificate check, the gate, the
 * recording, the audit events and the kill on revoke or expiry are the proxy's own, one code path with `ssh`;
 * the source address the gate records is the browser's. The private key never leaves this process's memory.
 */
import { generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import type { Duplex } from "node:stream";
import type { FastifyRequest } from "fastify";
import ssh2 from "ssh2";
import type {
  AgentAuthMethod,
  ClientChannel,
  Client as SshClient,
  IdentityCallback,
  ParsedKey,
  SignCallback,
} from "ssh2";
import type { WebSocket } from "@fastify/websocket";
import type { App } from "../../http/app.js";
import { isStintError, StintError, toEnvelope, type ErrorCode } from "../../lib/errors.js";
import type { Logger } from "../../lib/logger.js";
import type { Actor, CallContext } from "../../modules/authz/authz.types.js";
import type { SessionService } from "../../modules/sessions/sessions.service.js";
import {
  TERMINAL_CLOSE,
  TERMINAL_MAX_MESSAGE_BYTES,
  terminalAuth,
  terminalClientMessage,
  type TerminalServerMessage,
} from "../../contract/terminal.js";
import { originAllowed } from "../../http/origin.js";

// ssh2 is CommonJS: Node's ESM loader cannot import its classes by name.
const { Client, BaseAgent } = ssh2;

export interface WebTerminalLimits {
  /** How long a socket may stay open without its `auth` message (default 10 s). */
  authDeadlineMs: number;
  /** A terminal with no input for this long is closed and its session ended (default 30 min). */
  idleMs: number;
  /** Messages a client may send in a burst, and per second after it (defaults 400 and 200). */
  burst: number;
  perSecond: number;
  /** Terminals one user may hold open on this node at once (default 8). */
  perUser: number;
  /** Output waiting to be sent to a slow browser before the shell is paused (default 1 MiB). */
  highWaterBytes: number;
  /** Pings the browser this often; one that did not answer the last ping is cut off (default 30 s). */
  pingMs: number;
}

export const DEFAULT_TERMINAL_LIMITS: WebTerminalLimits = {
  authDeadlineMs: 10_000,
  idleMs: 30 * 60_000,
  burst: 400,
  perSecond: 200,
  perUser: 8,
  highWaterBytes: 1024 * 1024,
  pingMs: 30_000,
};

export interface WebTerminalDeps {
  sessions: Pick<SessionService, "issueSshCertificate">;
  /** Resolves `Bearer <token>` to its actor (the HTTP API's authentication). */
  authenticate(authorization: string): Actor | Promise<Actor>;
  /** Origins the web UI is served from besides the request's own (the configured public URL's). */
  origins: readonly string[];
  logger: Logger;
  limits?: Partial<WebTerminalLimits>;
}

export interface WebTerminals {
  /** This node's SSH proxy (its `connectLocal`), once it listens; until then terminals answer UNAVAILABLE. */
  attach(connect: (clientAddress: string) => Duplex): void;
  /** Terminals open on this node. */
  open(): number;
  /** Serves one WebSocket. */
  serve(socket: WebSocket, request: FastifyRequest): void;
}

const CLOSE_FOR: Partial<Record<ErrorCode, number>> = {
  UNAUTHENTICATED: TERMINAL_CLOSE.unauthenticated,
  TOKEN_EXPIRED: TERMINAL_CLOSE.unauthenticated,
  ACCOUNT_DISABLED: TERMINAL_CLOSE.unauthenticated,
  NOT_ACTIVE: TERMINAL_CLOSE.forbidden,
  FORBIDDEN: TERMINAL_CLOSE.forbidden,
  VALIDATION_FAILED: TERMINAL_CLOSE.badMessage,
  PAYLOAD_TOO_LARGE: TERMINAL_CLOSE.tooLarge,
  RATE_LIMITED: TERMINAL_CLOSE.rateLimited,
  UNAVAILABLE: TERMINAL_CLOSE.unavailable,
  TARGET_UNAVAILABLE: TERMINAL_CLOSE.unavailable,
};

export function createWebTerminals(deps: WebTerminalDeps): WebTerminals {
  const limits = { ...DEFAULT_TERMINAL_LIMITS, ...deps.limits };
  let connectLocal: ((clientAddress: string) => Duplex) | undefined;
  let open = 0;
  const perUser = new Map<string, number>();

  function serve(socket: WebSocket, request: FastifyRequest): void {
    const log = deps.logger.child({ clientAddress: request.ip });
    if (!originAllowed(request, deps.origins)) {
      log.info({ origin: request.headers.origin }, "browser terminal refused: foreign origin");
      socket.close(TERMINAL_CLOSE.badOrigin, "origin not allowed");
      return;
    }
    let state: "auth" | "opening" | "open" | "closed" = "auth";
    let ssh: SshClient | undefined;
    let shell: ClientChannel | undefined;
    let holder: string | undefined;
    let idle: NodeJS.Timeout | undefined;
    let unsent = 0;
    let pausedForBrowser = false;
    let answeredPing = true;
    let tokens = limits.burst;
    let refilledAt = Date.now();

    const authDeadline = setTimeout(() => {
      if (state === "auth")
        fail(new StintError("UNAUTHENTICATED", "The first message must be auth, within 10 seconds."));
    }, limits.authDeadlineMs);
    authDeadline.unref();
    const pinger = setInterval(() => {
      if (!answeredPing) return socket.terminate();
      answeredPing = false;
      safely(() => socket.ping());
    }, limits.pingMs);
    pinger.unref();
    socket.on("pong", () => (answeredPing = true));

    function send(message: TerminalServerMessage): void {
      if (socket.readyState === socket.OPEN) safely(() => socket.send(JSON.stringify(message)));
    }

    /** Says what ended the terminal, closes the socket and the SSH connection (the proxy ends the session). */
    function close(code: number, message: TerminalServerMessage | undefined, why: string): void {
      if (state === "closed") return;
      state = "closed";
      if (message) send(message);
      safely(() => socket.close(code, why));
      cleanup();
    }

    function fail(error: unknown): void {
      const stint = isStintError(error) ? error : new StintError("INTERNAL");
      if (!isStintError(error)) log.error({ err: error }, "browser terminal failed");
      close(CLOSE_FOR[stint.code] ?? 1011, { type: "error", error: toEnvelope(stint).error }, stint.code);
    }

    function cleanup(): void {
      clearTimeout(authDeadline);
      clearInterval(pinger);
      clearTimeout(idle);
      safely(() => ssh?.end());
      if (holder !== undefined) {
        const left = (perUser.get(holder) ?? 1) - 1;
        if (left > 0) perUser.set(holder, left);
        else perUser.delete(holder);
        holder = undefined;
        open--;
      }
    }

    function touch(): void {
      clearTimeout(idle);
      idle = setTimeout(() => {
        const minutes = Math.round(limits.idleMs / 60_000);
        close(
          TERMINAL_CLOSE.idle,
          { type: "ended", message: `Closed after ${minutes} minutes without input.` },
          "idle",
        );
      }, limits.idleMs);
      idle.unref();
    }

    /** One token per message; a client past its burst and rate is cut off (a terminal never needs that many). */
    function withinRate(): boolean {
      const now = Date.now();
      tokens = Math.min(limits.burst, tokens + ((now - refilledAt) / 1000) * limits.perSecond);
      refilledAt = now;
      if (tokens < 1) return false;
      tokens -= 1;
      return true;
    }

    socket.on("close", () => {
      if (state !== "closed") {
        state = "closed";
        cleanup();
      }
    });
    socket.on("error", () => undefined);
    socket.on("message", (data: Buffer, isBinary: boolean) => {
      if (state === "closed") return;
      if (data.length > TERMINAL_MAX_MESSAGE_BYTES)
        return fail(new StintError("PAYLOAD_TOO_LARGE", "A terminal message is at most 64 KiB."));
      if (!withinRate()) return fail(new StintError("RATE_LIMITED", "Too many terminal messages; slow down."));
      let parsed: unknown;
      try {
        if (isBinary) throw new Error("binary");
        parsed = JSON.parse(data.toString("utf8"));
      } catch {
        return fail(new StintError("VALIDATION_FAILED", "Terminal messages are JSON text."));
      }
      if (state === "auth") {
        const auth = terminalAuth.safeParse(parsed);
        if (!auth.success)
          return fail(new StintError("UNAUTHENTICATED", "The first message must be auth (token, role, cols, rows)."));
        state = "opening";
        clearTimeout(authDeadline);
        const context: CallContext = request.callContext;
        void start(auth.data, context).catch(fail);
        return;
      }
      const message = terminalClientMessage.safeParse(parsed);
      if (!message.success)
        return fail(new StintError("VALIDATION_FAILED", "Expected input (text) or resize (cols, rows within bounds)."));
      // Typed ahead of `ready`: the shell is not open yet; a client that waits for `ready` never sends it.
      if (state !== "open" || !shell)
        return fail(new StintError("VALIDATION_FAILED", "Wait for ready before sending input."));
      touch();
      if (message.data.type === "input") shell.write(message.data.data);
      else shell.setWindow(message.data.rows, message.data.cols, 0, 0);
    });

    async function start(
      auth: { token: string; role: string; cols: number; rows: number },
      context: CallContext,
    ): Promise<void> {
      const actor = await deps.authenticate(`Bearer ${auth.token}`);
      if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
      if (!connectLocal)
        throw new StintError("UNAVAILABLE", "This Stint node runs no SSH proxy, so it opens no browser terminal.");
      if ((perUser.get(actor.id) ?? 0) >= limits.perUser)
        throw new StintError("RATE_LIMITED", `At most ${limits.perUser} terminals may be open at once.`);
      if (state !== "opening") return;
      holder = actor.id;
      perUser.set(actor.id, (perUser.get(actor.id) ?? 0) + 1);
      open++;

      const key = terminalKey();
      const issued = await deps.sessions.issueSshCertificate(actor, context, {
        publicKey: key.publicLine,
        role: auth.role,
      });
      if (state !== "opening") return;
      const login = `${actor.name}%${issued.target}`;
      const { client, channel } = await openShell(connectLocal(request.ip), login, issued.certificate, key, auth);
      ssh = client;
      if (state !== "opening") return void safely(() => client.end());
      shell = channel;
      state = "open";
      touch();
      log.info({ user: actor.name, role: issued.role, target: issued.target }, "browser terminal opened");
      send({ type: "ready", role: issued.role, target: issued.target, login });
      relay(channel);
      client.on("close", () =>
        close(TERMINAL_CLOSE.ended, { type: "ended", message: "The session ended." }, "session ended"),
      );
    }

    function relay(channel: ClientChannel): void {
      let exitCode: number | undefined;
      const output = (data: Buffer) => {
        if (state !== "open") return;
        unsent += data.length;
        socket.send(data, { binary: true }, () => {
          unsent -= data.length;
          if (pausedForBrowser && unsent < limits.highWaterBytes / 4) {
            pausedForBrowser = false;
            channel.resume();
          }
        });
        // A browser that reads slowly pauses the shell (the SSH window then holds the target back).
        if (unsent > limits.highWaterBytes && !pausedForBrowser) {
          pausedForBrowser = true;
          channel.pause();
        }
      };
      channel.on("data", output);
      channel.stderr.on("data", output);
      channel.on("exit", (code: number | null) => {
        if (typeof code === "number") exitCode = code;
      });
      channel.on("close", () =>
        close(
          TERMINAL_CLOSE.ended,
          {
            type: "ended",
            message: exitCode === undefined ? "The session ended." : `The shell exited with status ${exitCode}.`,
            ...(exitCode === undefined ? {} : { exitCode }),
          },
          "session ended",
        ),
      );
    }
  }

  return {
    attach: (connect) => {
      connectLocal = connect;
    },
    open: () => open,
    serve,
  };
}

interface TerminalKey {
  privateKey: KeyObject;
  /** "ssh-ed25519 AAAA…", what the sessions module certifies. */
  publicLine: string;
}

/** An Ed25519 key pair for one terminal, held in memory only. */
function terminalKey(): TerminalKey {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const raw = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url");
  const blob = Buffer.concat([sshString(Buffer.from("ssh-ed25519")), sshString(raw)]);
  return { privateKey, publicLine: `ssh-ed25519 ${blob.toString("base64")}` };
}

function sshString(bytes: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

/**
 * ssh2 presents a certificate only through an agent: this one holds the terminal's certificate and signs
 * with its key. ssh2's key parser reads a certificate line as its plain key and would send that key's blob,
 * so the parsed key answers the certificate's own blob instead (ssh2 then names the certificate in the
 * signature blob too; the proxy takes that for Ed25519).
 */
export class CertificateAgent extends BaseAgent<ParsedKey> {
  private readonly identity: ParsedKey;
  constructor(
    certificate: string,
    /** Signs with the certified key (a raw signature, as `crypto.sign` gives). */
    private readonly signer: (data: Buffer) => Buffer,
  ) {
    super();
    const parsed = ssh2.utils.parseKey(certificate);
    if (parsed instanceof Error || Array.isArray(parsed)) throw new Error("the terminal's certificate is unreadable");
    const blob = Buffer.from(certificate.trim().split(/\s+/)[1] ?? "", "base64");
    this.identity = Object.assign(parsed, { getPublicSSH: () => blob });
  }
  getIdentities(cb: IdentityCallback<ParsedKey>): void {
    cb(undefined, [this.identity]);
  }
  sign(_key: ParsedKey, data: Buffer, options: unknown, cb?: SignCallback): void {
    const done = (typeof options === "function" ? options : cb) as SignCallback;
    done(undefined, this.signer(data));
  }
}

/** Signs in to the proxy over `sock` and opens a shell with a terminal; rejects with the proxy's refusal. */
function openShell(
  sock: Duplex,
  login: string,
  certificate: string,
  key: TerminalKey,
  size: { cols: number; rows: number },
): Promise<{ client: SshClient; channel: ClientChannel }> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    let banner = "";
    let settled = false;
    const refuse = (error: StintError) => {
      if (settled) return;
      settled = true;
      safely(() => client.end());
      reject(error);
    };
    client.on("banner", (message: string) => (banner += message));
    client.on("error", (error: Error & { level?: string }) => {
      // The proxy says why it refused in a userauth banner ("Stint: …").
      const said = banner.trim();
      if (error.level === "client-authentication")
        return refuse(new StintError("FORBIDDEN", said || "The SSH proxy refused the session."));
      refuse(new StintError("TARGET_UNAVAILABLE", said || "The SSH proxy could not open the session."));
    });
    client.on("close", () => refuse(new StintError("TARGET_UNAVAILABLE", banner.trim() || "The session closed.")));
    client.once("ready", () => {
      client.shell({ term: "xterm-256color", cols: size.cols, rows: size.rows }, (error, channel) => {
        if (error) return refuse(new StintError("TARGET_UNAVAILABLE", "The target refused to open a shell."));
        if (settled) return safely(() => channel.close());
        settled = true;
        resolve({ client, channel });
      });
    });
    const agentAuth: AgentAuthMethod = {
      type: "agent",
      username: login,
      agent: new CertificateAgent(certificate, (data) => sign(null, data, key.privateKey)),
    };
    client.connect({
      sock: sock as never,
      username: login,
      authHandler: [agentAuth],
      // The connection is in memory, to this process's own proxy: there is no one in between to detect.
      hostVerifier: () => true,
      readyTimeout: 30_000,
    });
  });
}

function safely(work: () => unknown): void {
  try {
    work();
  } catch {
    // A socket or channel already gone: nothing left to do.
  }
}

/** `GET /v1/ssh/terminals`: public at the HTTP level, the socket authenticates in its first message. */
export function registerTerminalRoutes(app: App, deps: { terminals: WebTerminals }): void {
  app.route({
    method: "GET",
    url: "/v1/ssh/terminals",
    config: { requirement: "public" },
    schema: { tags: ["sessions"] },
    // `wsHandler` without `websocket: true`: with it, @fastify/websocket takes `handler` as the socket's
    // handler and answers a plain request 404 with no body. A plain HTTP request gets an answer that says why.
    handler: async () => {
      throw new StintError("VALIDATION_FAILED", "This endpoint is a WebSocket: open it with an Upgrade request.");
    },
    wsHandler: (socket: WebSocket, request: FastifyRequest) => deps.terminals.serve(socket, request),
  } as never);
}
