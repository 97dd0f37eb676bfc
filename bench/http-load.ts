/**
 * A small closed-loop HTTP/1.1 load generator for the benchmarks, run in its own process so that the
 * server under test and the client do not share an event loop (on a two-core host: one core each).
 *
 * `connections` keep-alive sockets each send one GET, wait for the whole response, and send the next
 * (no pipelining), round robin over `requests`. Responses are parsed just enough to check them: the
 * status line, Content-Length and, when a request names one, a substring the body must contain. It
 * writes raw bytes on plain sockets because Node's own HTTP client costs more per request than a bare
 * Fastify route does, and would be what the run measured.
 *
 *   const result = await loadHttp({ port, requests: [{ path: "/", expect: "{}" }], connections: 50, seconds: 5 });
 */
import { spawn } from "node:child_process";
import net from "node:net";
import { fileURLToPath } from "node:url";

export interface LoadRequest {
  path: string;
  headers?: Record<string, string>;
  /** The status the response must have (200 by default). */
  status?: number;
  /** A substring the body must contain. */
  expect?: string;
}

export interface LoadOptions {
  port: number;
  host?: string;
  requests: LoadRequest[];
  connections: number;
  seconds: number;
  /** Requests sent before the measured part (not counted). */
  warmupSeconds?: number;
}

export interface LoadResult {
  requests: number;
  /** Every response, the warm-up's included (for counting what the server did). */
  responses: number;
  /** Responses with another status or without the expected substring (the first few are described in `problems`). */
  wrong: number;
  problems: string[];
  seconds: number;
  perSecond: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Runs the load from a child process and returns its figures. */
export function loadHttp(options: LoadOptions): Promise<LoadResult> {
  const self = fileURLToPath(import.meta.url);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", self], { stdio: ["pipe", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")));
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code !== 0) return reject(new Error(`the load generator exited with ${code}: ${out}`));
      try {
        resolve(JSON.parse(out) as LoadResult);
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
    child.stdin.end(JSON.stringify(options));
  });
}

const CRLF2 = Buffer.from("\r\n\r\n");

function encode(host: string, port: number, request: LoadRequest): Buffer {
  const lines = [`GET ${request.path} HTTP/1.1`, `Host: ${host}:${port}`, "Connection: keep-alive"];
  for (const [name, value] of Object.entries(request.headers ?? {})) lines.push(`${name}: ${value}`);
  return Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1");
}

async function generate(options: LoadOptions): Promise<LoadResult> {
  const host = options.host ?? "127.0.0.1";
  const wire = options.requests.map((r) => encode(host, options.port, r));
  const warmupMs = (options.warmupSeconds ?? 1) * 1000;
  const measureMs = options.seconds * 1000;
  const latencies: number[] = [];
  const problems: string[] = [];
  let wrong = 0;
  let responses = 0;
  let next = 0;
  let measuring = false;
  let stopping = false;
  let measuredFrom = 0;
  let measuredTo = 0;

  const connection = () =>
    new Promise<void>((resolve, reject) => {
      const socket = net.connect({ host, port: options.port, noDelay: true });
      let buffer: Buffer = Buffer.alloc(0);
      let index = 0;
      let sentAt = 0;
      let counted = false;
      const send = () => {
        if (stopping) {
          socket.end();
          return resolve();
        }
        index = next++ % wire.length;
        counted = measuring;
        sentAt = performance.now();
        socket.write(wire[index]!);
      };
      socket.on("connect", send);
      socket.on("error", reject);
      socket.on("data", (chunk: Buffer) => {
        buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
        for (;;) {
          const headEnd = buffer.indexOf(CRLF2);
          if (headEnd === -1) return;
          const head = buffer.toString("latin1", 0, headEnd);
          const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
          if (!length) return reject(new Error(`a response without Content-Length: ${head}`));
          const total = headEnd + 4 + Number(length[1]);
          if (buffer.length < total) return;
          const request = options.requests[index]!;
          const status = Number(head.slice(9, 12));
          const body = buffer.toString("utf8", headEnd + 4, total);
          buffer = buffer.subarray(total);
          responses += 1;
          if (counted) {
            latencies.push(performance.now() - sentAt);
            if (
              status !== (request.status ?? 200) ||
              (request.expect !== undefined && !body.includes(request.expect))
            ) {
              wrong += 1;
              if (problems.length < 5) problems.push(`${request.path}: ${status} ${body.slice(0, 300)}`);
            }
          }
          send();
        }
      });
    });

  const sockets = Array.from({ length: options.connections }, connection);
  await new Promise((r) => setTimeout(r, warmupMs));
  measuring = true;
  measuredFrom = performance.now();
  await new Promise((r) => setTimeout(r, measureMs));
  measuring = false;
  measuredTo = performance.now();
  stopping = true;
  await Promise.all(sockets);
  const sorted = Float64Array.from(latencies).sort();
  const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN;
  const seconds = (measuredTo - measuredFrom) / 1000;
  return {
    requests: sorted.length,
    responses,
    wrong,
    problems,
    seconds,
    perSecond: sorted.length / seconds,
    p50: q(0.5),
    p90: q(0.9),
    p99: q(0.99),
    max: sorted[sorted.length - 1] ?? Number.NaN,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  let input = "";
  process.stdin.on("data", (chunk: Buffer) => (input += chunk.toString("utf8")));
  process.stdin.on("end", () => {
    generate(JSON.parse(input) as LoadOptions).then(
      (result) => process.stdout.write(JSON.stringify(result)),
      (error: unknown) => {
        console.error(error);
        process.exitCode = 1;
      },
    );
  });
}
