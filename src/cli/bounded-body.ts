/**
 * Reading the server's answers with a bound: the CLI talks to whatever answers at `--server` (or a proxy in
 * between), and an answer read whole with no limit lets that party make `stint` allocate memory until the
 * machine swaps or the process dies. JSON answers are capped at MAX_RESPONSE_BYTES; downloads read into
 * memory (a recording, the KRL) at the size they declare; downloads written as they come (audit export,
 * evidence CSV) hold one chunk at a time and need no cap.
 */
import type { CliOutput } from "./context.js";
import { CliError } from "./exit-codes.js";

/** The most a JSON answer (or an error's body) may hold: far above any Stint answer (1,000 audit events, a page). */
export const MAX_RESPONSE_BYTES = 32 * 1024 * 1024;

export function responseTooLarge(limit: number, what: string): CliError {
  return new CliError(
    "RESPONSE_TOO_LARGE",
    `the server's ${what} is larger than this CLI reads (${limit} bytes); it was not read further — check --server (or a proxy in between)`,
  );
}

/** The declared Content-Length when it is one; null when absent or not a number. */
export function declaredLength(headers: Headers): number | null {
  const text = headers.get("content-length");
  if (text === null || !/^\d+$/.test(text.trim())) return null;
  return Number(text);
}

/** All of `body`, at most `limit` bytes: more is RESPONSE_TOO_LARGE, and the rest is never read. */
export async function readBounded(
  body: ReadableStream<Uint8Array> | null,
  limit: number,
  what: string,
): Promise<Buffer> {
  if (!body) return Buffer.alloc(0);
  const chunks: Uint8Array[] = [];
  let seen = 0;
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    seen += value.byteLength;
    if (seen > limit) {
      await reader.cancel().catch(() => undefined);
      throw responseTooLarge(limit, what);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

/** Writes a chunk of a download as it comes, waiting for the output to drain: one chunk in memory at a time. */
export async function writeWithBackpressure(output: CliOutput, chunk: Uint8Array): Promise<void> {
  if (output.write(chunk) === false && output.once) {
    await new Promise<void>((resolve) => output.once?.("drain", resolve));
  }
}
