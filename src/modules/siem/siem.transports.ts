/**
 * The two ways a batch of formatted records leaves Stint: an RFC 5424 stream over TCP or TLS (octet-counted
 * frames), and Splunk's HTTP Event Collector. Each says when what it sent counts as delivered; the
 * deliverer (`siem.service.ts`) moves the destination's cursor only then.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import { randomUUID } from "node:crypto";
import { AddressRefusedError, checkHost, resolveAllowedAddress, type Resolve } from "../../lib/address-guard.js";
import type { AddressPolicy } from "../../lib/address-policy.js";
import { currentAddressPolicy } from "../connectors/index.js";
import { hecAckUrl, parseHecAnswer, type Position } from "./siem.rules.js";
import type { HecDestination, SyslogDestination } from "./siem.types.js";

export interface Sender {
  /** Sends one batch (frames in order); rejects when it could not be handed over (the batch is retried). */
  send(frames: Buffer[], after: Position): Promise<void>;
  /** The furthest position that counts as delivered now, if it moved since the last call. */
  confirmed(now: number): Position | undefined;
  /** Batches sent and not confirmed yet. */
  unconfirmed(): number;
  /** When the oldest unconfirmed batch may be confirmed (for the loop's sleep). */
  nextConfirmAt(): number | undefined;
  /** Bytes handed to the connection that it has not passed to the kernel yet. */
  bufferedBytes(): number;
  /** Why the connection broke with batches unconfirmed (they must be sent again), if it did. */
  broken(): Error | undefined;
  /** Forgets what is unconfirmed and drops the connection (after a failure: everything is sent again). */
  reset(): void;
  close(): Promise<void>;
}

export class SendError extends Error {}

function withTimeout<T>(work: Promise<T>, ms: number, what: string, onTimeout?: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      onTimeout?.();
      reject(new SendError(`${what} timed out after ${ms} ms`));
    }, ms);
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

/**
 * The address policy at connect time: the destination's name is resolved on every (re)connection, every answer
 * judged, and the socket opened to the judged address (no second lookup a rebound name could answer).
 */
export interface SiemAddressGuard {
  /** The policy (STINT_ALLOW_NETWORKS / STINT_DENY_NETWORKS); the server's current one by default. */
  policy?: AddressPolicy;
  /** The resolver (tests); the system's by default. */
  resolve?: Resolve;
}

async function allowedAddress(host: string, guard: SiemAddressGuard): Promise<string> {
  try {
    return await resolveAllowedAddress(host, guard.policy ?? currentAddressPolicy(), guard.resolve);
  } catch (error) {
    if (error instanceof AddressRefusedError) throw new SendError(`refused by the address policy: ${error.message}`);
    throw new SendError(`${host} does not resolve`);
  }
}

function readCa(file: string | undefined): Buffer | undefined {
  return file === undefined ? undefined : readFileSync(file);
}

// ---------------------------------------------------------------- syslog over TCP / TLS

/**
 * RFC 5424 over TCP or TLS has no acknowledgement. A batch counts as delivered once its bytes left this
 * process (the write callback) and the connection then stayed up for `settleMs`: a receiver that died
 * meanwhile closes it, and everything not confirmed is sent again on a new connection.
 */
export function createSyslogSender(
  destination: SyslogDestination,
  now: () => number = Date.now,
  guard: SiemAddressGuard = {},
): Sender {
  const ca = readCa(destination.caFile);
  let socket: net.Socket | undefined;
  let alive = false;
  let failure: Error | undefined;
  let pending: { after: Position; flushedAt?: number }[] = [];

  function drop() {
    alive = false;
    socket?.destroy();
    socket = undefined;
    pending = [];
  }

  async function connect(): Promise<net.Socket> {
    if (socket && alive) return socket;
    // Batches written on a connection that broke must go again first: reconnecting here and writing the next
    // batch would let it confirm past them. The deliverer resets and resends from its cursor.
    if (pending.length > 0) throw failure ?? new SendError("the connection closed with batches unconfirmed");
    drop();
    failure = undefined;
    const address = await withTimeout(allowedAddress(destination.host, guard), destination.timeoutMs, "resolving");
    const opened = await withTimeout(
      new Promise<net.Socket>((resolve, reject) => {
        let s: net.Socket;
        if (destination.transport === "tls") {
          const serverName = destination.serverName ?? destination.host;
          s = tls.connect({
            host: address,
            port: destination.port,
            ...(net.isIP(serverName) === 0 && { servername: serverName }),
            ...(ca && { ca }),
            // The certificate chain and the name are checked; there is no plaintext fallback.
            rejectUnauthorized: true,
            minVersion: "TLSv1.2",
            checkServerIdentity: (_host, cert) => tls.checkServerIdentity(serverName, cert),
          });
          s.once("secureConnect", () => resolve(s));
        } else {
          s = net.connect({ host: address, port: destination.port });
          s.once("connect", () => resolve(s));
        }
        s.once("error", reject);
        socket = s;
      }),
      destination.timeoutMs,
      "connecting",
      () => socket?.destroy(),
    );
    opened.removeAllListeners("error");
    opened.setNoDelay(true);
    opened.setKeepAlive(true, 10_000);
    alive = true;
    const lost = (error?: Error) => {
      if (socket !== opened) return;
      alive = false;
      failure = error ?? new SendError("the receiver closed the connection");
    };
    opened.on("error", (error) => lost(new SendError(`connection failed: ${error.message}`)));
    opened.on("end", () => lost());
    opened.on("close", () => lost());
    // A syslog receiver sends nothing; whatever it does is read and dropped so it never fills a buffer.
    opened.on("data", () => undefined);
    return opened;
  }

  function waitDrain(s: net.Socket): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        s.off("drain", done);
        s.off("close", closed);
        resolve();
      };
      const closed = () => {
        s.off("drain", done);
        reject(failure ?? new SendError("the connection closed while waiting to write"));
      };
      s.on("drain", done);
      s.once("close", closed);
    });
  }

  return {
    async send(frames, after) {
      const s = await connect();
      const entry: { after: Position; flushedAt?: number } = { after };
      for (let i = 0; i < frames.length; i++) {
        if (!alive) throw failure ?? new SendError("the connection is closed");
        const last = i === frames.length - 1;
        const flowing = s.write(
          frames[i]!,
          last
            ? (error) => {
                if (!error) entry.flushedAt = now();
              }
            : undefined,
        );
        // Backpressure: no more than the socket's high-water mark waits in this process.
        if (!flowing)
          await withTimeout(waitDrain(s), destination.timeoutMs, "writing to the receiver", () => s.destroy());
      }
      if (!alive) throw failure ?? new SendError("the connection is closed");
      pending.push(entry);
    },
    confirmed(at) {
      if (!alive) return undefined;
      let position: Position | undefined;
      while (pending.length > 0) {
        const first = pending[0]!;
        if (first.flushedAt === undefined || at - first.flushedAt < destination.settleMs) break;
        position = first.after;
        pending.shift();
      }
      return position;
    },
    unconfirmed: () => pending.length,
    nextConfirmAt() {
      const first = pending[0];
      return first?.flushedAt === undefined ? undefined : first.flushedAt + destination.settleMs;
    },
    bufferedBytes: () => socket?.writableLength ?? 0,
    broken: () => (!alive && pending.length > 0 ? (failure ?? new SendError("the connection closed")) : undefined),
    reset: drop,
    async close() {
      const s = socket;
      alive = false;
      socket = undefined;
      pending = [];
      if (!s) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          s.destroy();
          resolve();
        }, 1000);
        s.end(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}

// ---------------------------------------------------------------- Splunk HEC

/** Reads the HEC token once (file or environment variable). Its value is never logged or returned. */
export function readHecToken(destination: HecDestination, env: NodeJS.ProcessEnv = process.env): string {
  let token: string | undefined;
  if (destination.tokenFile !== undefined) {
    try {
      token = readFileSync(destination.tokenFile, "utf8").trim();
    } catch (error) {
      throw new Error(
        `SIEM destination ${destination.name}: cannot read tokenFile ${destination.tokenFile} (${(error as NodeJS.ErrnoException).code ?? "error"})`,
      );
    }
  } else token = env[destination.tokenEnv!]?.trim();
  if (!token)
    throw new Error(
      `SIEM destination ${destination.name}: the HEC token is empty (${destination.tokenFile ?? `$${destination.tokenEnv}`})`,
    );
  if (!/^[\x21-\x7e]+$/.test(token))
    throw new Error(`SIEM destination ${destination.name}: the HEC token must be printable ASCII without spaces`);
  return token;
}

/**
 * One POST per batch to the event endpoint. A batch counts as delivered when HEC answers `code 0` (and,
 * with `ack`, once `/services/collector/ack` says it was indexed); anything else is retried, so a batch whose
 * answer was lost may arrive twice (at least once).
 */
export function createHecSender(destination: HecDestination, token: string, guard: SiemAddressGuard = {}): Sender {
  const url = new URL(destination.url);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  // Called for every new connection (keep-alive reuses one): resolved, judged, pinned. A literal address is
  // not looked up by Node, so send() judges it itself.
  const lookup: net.LookupFunction = (hostname, options, callback) => {
    allowedAddress(hostname, guard).then(
      (address) => {
        const family = net.isIP(address) === 6 ? 6 : 4;
        if ((options as { all?: boolean }).all)
          (callback as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address, family }]);
        else callback(null, address, family);
      },
      (error: Error) => callback(error as NodeJS.ErrnoException, "", 4),
    );
  };
  const ackUrl = new URL(hecAckUrl(destination.url));
  const secure = url.protocol === "https:";
  const ca = readCa(destination.caFile);
  const agent = secure
    ? new https.Agent({ keepAlive: true, maxSockets: 1, ...(ca && { ca }), rejectUnauthorized: true })
    : new http.Agent({ keepAlive: true, maxSockets: 1 });
  const channel = randomUUID();
  let done: Position | undefined;
  /** The send in progress: aborting it ends its request in flight and its acknowledgement poll. */
  let current: AbortController | undefined;

  function post(target: URL, body: Buffer, signal: AbortSignal): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const request = (secure ? https : http).request(
        target,
        {
          method: "POST",
          agent,
          signal,
          lookup,
          headers: {
            authorization: `Splunk ${token}`,
            "content-type": "application/json",
            "content-length": body.length,
            ...(destination.ack && { "x-splunk-request-channel": channel }),
          },
        },
        (response) => {
          const chunks: Buffer[] = [];
          let size = 0;
          response.on("data", (chunk: Buffer) => {
            size += chunk.length;
            if (size <= 65_536) chunks.push(chunk);
          });
          response.on("end", () =>
            resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }),
          );
          response.on("error", (error) => reject(new SendError(`reading the answer failed: ${error.message}`)));
        },
      );
      request.on("error", (error) => reject(new SendError(`request failed: ${error.message}`)));
      request.end(body);
    });
  }

  /** Waits `ms`, or rejects as soon as the send is aborted. */
  function pause(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(new SendError("the send was abandoned"));
      const abandoned = () => {
        clearTimeout(timer);
        reject(new SendError("the send was abandoned"));
      };
      const timer = setTimeout(() => {
        signal.removeEventListener("abort", abandoned);
        resolve();
      }, ms);
      signal.addEventListener("abort", abandoned, { once: true });
    });
  }

  /**
   * Polls the acknowledgement endpoint until the indexer says `ackId` was indexed. It ends with its send: a send
   * that timed out or was reset aborts the poll too, sleeping or not (a receiver that never acknowledges would
   * otherwise keep one more loop alive per retry, forever).
   */
  async function waitForAck(ackId: number, signal: AbortSignal): Promise<void> {
    const body = Buffer.from(JSON.stringify({ acks: [ackId] }));
    for (;;) {
      const answer = await post(ackUrl, body, signal);
      if (answer.status !== 200) throw new SendError(`acknowledgement query answered HTTP ${answer.status}`);
      let acks: Record<string, unknown> = {};
      try {
        acks = (JSON.parse(answer.body) as { acks?: Record<string, unknown> }).acks ?? {};
      } catch {
        throw new SendError("acknowledgement answer is not JSON");
      }
      if (acks[String(ackId)] === true) return;
      await pause(250, signal);
    }
  }

  return {
    async send(frames, after) {
      const body = Buffer.concat(frames.flatMap((frame, i) => (i === 0 ? [frame] : [Buffer.from("\n"), frame])));
      current?.abort();
      const controller = new AbortController();
      current = controller;
      const { signal } = controller;
      if (net.isIP(host) !== 0)
        await checkHost(host, guard.policy ?? currentAddressPolicy()).catch((error: Error) => {
          throw new SendError(`refused by the address policy: ${error.message}`);
        });
      try {
        await withTimeout(
          (async () => {
            const answer = await post(url, body, signal);
            const parsed = parseHecAnswer(answer.status, answer.body);
            if (!parsed.ok) throw new SendError(`HEC answered ${parsed.detail}`);
            if (destination.ack) {
              if (parsed.ackId === undefined)
                throw new SendError("HEC answered without an ackId (is acknowledgement on?)");
              await waitForAck(parsed.ackId, signal);
            }
          })(),
          destination.timeoutMs,
          "the HEC request",
          () => controller.abort(),
        );
      } finally {
        // Settled by itself, the send left nothing running; timed out, it was aborted (its socket with it). A
        // send that succeeded is not aborted: its keep-alive connection goes back to the agent for the next.
        if (current === controller) current = undefined;
      }
      done = after;
    },
    confirmed() {
      const position = done;
      done = undefined;
      return position;
    },
    unconfirmed: () => (done === undefined ? 0 : 1),
    nextConfirmAt: () => undefined,
    bufferedBytes: () => 0,
    broken: () => undefined,
    reset() {
      current?.abort();
      done = undefined;
    },
    async close() {
      current?.abort();
      agent.destroy();
    },
  };
}
