/**
 * A worker thread of `audit verify` (`audit.verify.ts`): re-hashes the events of the pages it is given
 * and checks the links inside each page. It only reports; the chain verifier in the calling thread
 * decides, and reads again one by one any page this does not find intact. On PostgreSQL it reads its
 * pages itself, over a connection of its own opened for one verify run and closed at its end, so the
 * rows are never decoded by the calling thread nor copied between threads.
 */
import { hash as digestOnce } from "node:crypto";
import { parentPort } from "node:worker_threads";
import { hashEvent } from "./audit.rules.js";
import { canonicalOfRow, decodeVerifyRow, verifyRowSeq } from "./audit.rows.js";
import type { PageJob, PageReport, ReadJob, WorkerMessage } from "./audit.verify.js";

/** The workers' connections' application_name (in `pg_stat_activity`). */
const VERIFY_APPLICATION = "stint audit verify";

/**
 * A row's seq, stored previous hash and hash, and its hash computed again: from the fields straight
 * (`canonicalOfRow`), or through the decoded event when that shortcut does not apply.
 */
function hashedRow(text: string): { seq: number; prevHash: string; hash: string; rehashed: string } | undefined {
  const row = canonicalOfRow(text);
  if (row)
    return {
      seq: row.seq,
      prevHash: row.prevHash,
      hash: row.hash,
      rehashed: digestOnce("sha256", row.canonical, "hex"),
    };
  const event = decodeVerifyRow(text);
  return event && { seq: event.seq, prevHash: event.prevHash, hash: event.hash, rehashed: hashEvent(event) };
}

/** The page's events intact and linked among themselves: its ends, and the hashes at the seqs asked for. */
export function checkPage(job: Omit<PageJob, "kind">): PageReport {
  const { rows } = job;
  const hashes: string[] = [];
  let w = 0;
  let firstSeq = 0;
  let firstPrevHash = "";
  let lastSeq = 0;
  let lastHash = "";
  for (let i = 0; i < rows.length; i++) {
    const event = hashedRow(rows[i]!);
    if (!event) return { id: job.id, ok: false };
    if (i === 0) {
      firstSeq = event.seq;
      firstPrevHash = event.prevHash;
    } else if (event.seq !== lastSeq + 1 || event.prevHash !== lastHash) return { id: job.id, ok: false };
    if (event.rehashed !== event.hash) return { id: job.id, ok: false };
    if (event.seq === job.wanted[w]) {
      hashes.push(event.hash);
      w++;
    }
    lastSeq = event.seq;
    lastHash = event.hash;
  }
  if (w !== job.wanted.length) return { id: job.id, ok: false };
  return { id: job.id, ok: true, firstSeq, firstPrevHash, lastSeq, lastHash, hashes };
}

interface Reader {
  query(config: { text: string; values: number[]; rowMode: "array" }): Promise<{ rows: string[][] }>;
  end(): Promise<void>;
}

/** This thread's connections, by verify run, and the page statement each runs. */
const readers = new Map<number, { client: Promise<Reader>; text: string }>();

async function connect(url: string): Promise<Reader> {
  const { default: pg } = await import("pg");
  // The store's own settings: its URL (TLS included), the same connect timeout and keep-alive.
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
    // Named, unless the URL names its connections itself.
    application_name: VERIFY_APPLICATION,
  });
  client.on("error", () => undefined);
  await client.connect();
  return client as unknown as Reader;
}

/**
 * Reads the page (`verifyPageRows`'s rows, cut at the head) and checks it; not ok when it cannot read. One
 * row more is read: unless past the head, it must be the event after the page's last (a second row of the
 * last seq would otherwise fall between this page and the next, which reads after that seq).
 */
async function readPage(job: ReadJob): Promise<PageReport> {
  const reader = readers.get(job.run);
  if (!reader) return { id: job.id, ok: false };
  const { rows } = await (
    await reader.client
  ).query({ text: reader.text, values: [job.afterSeq, job.limit + 1], rowMode: "array" });
  const texts = rows.map((row) => row[0]!);
  // Past the head (appended since verify read it): left for the next run, as `verifyPageRows` leaves them.
  const seqOf = verifyRowSeq;
  while (texts.length > 0 && seqOf(texts[texts.length - 1]!) > job.headSeq) texts.pop();
  const next = texts.length > job.limit ? texts.pop() : undefined;
  const report = checkPage({ id: job.id, rows: texts, wanted: job.wanted });
  if (!report.ok || (next !== undefined && seqOf(next) !== report.lastSeq + 1)) return { id: job.id, ok: false };
  return { ...report, count: texts.length };
}

async function answer(message: WorkerMessage): Promise<PageReport> {
  switch (message.kind) {
    case "rows":
      return checkPage(message);
    case "read":
      return readPage(message);
    case "open": {
      const client = connect(message.url);
      readers.set(message.run, { client, text: message.text });
      await client;
      return { id: message.id, ok: true, firstSeq: 0, firstPrevHash: "", lastSeq: 0, lastHash: "", hashes: [] };
    }
    case "close": {
      const reader = readers.get(message.run);
      readers.delete(message.run);
      await reader?.client.then((client) => client.end()).catch(() => undefined);
      return { id: message.id, ok: false };
    }
  }
}

parentPort?.on("message", (message: WorkerMessage) => {
  void answer(message)
    .catch((): PageReport => ({ id: message.id, ok: false }))
    .then((report) => parentPort!.postMessage(report));
});
