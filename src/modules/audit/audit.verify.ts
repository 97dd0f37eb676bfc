/**
 * `audit verify` on worker threads. Each event's hash depends on its own fields and the previous hash it
 * stores, so pages can be re-hashed apart: the calling thread reads page after page (one text per event,
 * `verifyPageRows`), worker threads re-hash them and check the links inside each, and the chain verifier
 * here joins the pages in order (first event after the previous page's last, its stored previous hash
 * that page's hash) and checks the checkpoints and the anchor against the hashes the workers report.
 * Whatever a worker does not find intact (a row that does not decode without doubt included) is read
 * again as columns and pushed event by event through the same verifier as the serial path, so a broken
 * chain is reported exactly as before. Without workers (they cannot start), verify runs serially.
 *
 * On PostgreSQL (given the store's connection URL) up to `MAX_READERS` workers read their pages themselves,
 * each over a connection of its own: the calling thread hands out keyset ranges of seq (the page after
 * seq n of k rows holds seqs n+1..n+k when the chain is intact) and joins the workers' page summaries, so
 * no row is decoded here nor copied between threads. A page whose summary is not exactly that range is
 * read here again as columns, as above. The connections are opened for one run and closed at its end;
 * when one cannot be opened, this thread reads the pages.
 */
import { createRequire } from "node:module";
import os from "node:os";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import type { createChainVerifier } from "./audit.rules.js";
import * as auditStore from "./audit.store.js";
import * as verifyStore from "./audit.verify.store.js";

export interface PageJob {
  kind: "rows";
  id: number;
  /** `VERIFY_ROW` texts. */
  rows: string[];
  /** Seqs in the page whose hashes the verifier needs (checkpoints, the anchor), ascending. */
  wanted: number[];
}

/** Read the page after `afterSeq` (at most `limit` rows, none past `headSeq`) over the run's connection, and check it. */
export interface ReadJob {
  kind: "read";
  id: number;
  run: number;
  afterSeq: number;
  limit: number;
  headSeq: number;
  wanted: number[];
}

export type WorkerMessage =
  | PageJob
  | ReadJob
  /** Open the run's connection; `text`: the page statement (`verifyPageStatement`). */
  | { kind: "open"; id: number; run: number; url: string; text: string }
  | { kind: "close"; id: number; run: number };

type Job = WorkerMessage extends infer M ? (M extends WorkerMessage ? Omit<M, "id"> : never) : never;

export type PageReport =
  | {
      id: number;
      ok: true;
      firstSeq: number;
      firstPrevHash: string;
      lastSeq: number;
      lastHash: string;
      hashes: string[];
      /** Rows the worker read itself (`ReadJob`). */
      count?: number;
    }
  | { id: number; ok: false };

type Verifier = ReturnType<typeof createChainVerifier>;

/** A page as read: how many rows, the first and last seq. */
interface Page {
  count: number;
  firstSeq: number;
  lastSeq: number;
}

/** From this many events verify uses worker threads (starting them costs more than hashing fewer). */
export const PARALLEL_FROM = 20_000;

/** Rows per page of the parallel verify at most (5,000 cost the database and this thread alike per event). */
export const PARALLEL_PAGE = verifyStore.VERIFY_PAGE;

/**
 * Rows to read for the next page: smaller first pages, so the workers start sooner, then
 * `PARALLEL_PAGE`, and smaller again near the head, so the last pages are shared among the workers
 * instead of one worker hashing a whole page alone at the end. `left`: events up to the head not read yet.
 */
export function pageSizeFor(pagesRead: number, left: number): number {
  const ramp = (PARALLEL_PAGE / 4) * 2 ** Math.min(pagesRead, 2);
  const share = Math.ceil(left / (2 * workerCount()));
  return Math.max(1, Math.min(PARALLEL_PAGE, ramp, Math.max(PARALLEL_PAGE / 8, share), left));
}

/** Workers that read their own pages on PostgreSQL, each with one connection: the store's extra connections at most. */
export const MAX_READERS = 2;

/** Idle workers end after this long (a verify soon after reuses them). */
const IDLE_MS = 30_000;

interface Pool {
  /** Runs `job` on the least busy of the first `among` workers (all by default), or on worker `on`. */
  run(job: Job, options?: { among?: number; on?: number }): Promise<PageReport>;
  /** A worker died or failed to start: every run since rejects. */
  broken(): boolean;
}

let shared: { pool: Pool; workers: Worker[]; idle?: NodeJS.Timeout; users: number } | undefined;

function workerCount(): number {
  return Math.max(1, Math.min(4, os.availableParallelism()));
}

function startPool() {
  // Run from TypeScript (tsx, vitest), the worker is the .ts file: it registers tsx's loader first.
  const fromSource = import.meta.url.endsWith(".ts");
  const url = new URL(`./audit.verify-worker.${fromSource ? "ts" : "js"}`, import.meta.url);
  const spawn = () => {
    if (!fromSource) return new Worker(url);
    const tsx = pathToFileURL(
      createRequire(import.meta.url)
        .resolve("tsx/esm/api")
        .replace(/\.cjs$/, ".mjs"),
    );
    const boot = `import(${JSON.stringify(tsx.href)}).then((api) => { api.register(); return import(${JSON.stringify(url.href)}); });`;
    return new Worker(boot, { eval: true });
  };
  const pending = new Map<number, { resolve: (r: PageReport) => void; reject: (e: Error) => void }>();
  const load = new Map<Worker, number>();
  let failed = false;
  let nextId = 1;
  const workers = Array.from({ length: workerCount() }, () => {
    const worker = spawn();
    worker.unref();
    load.set(worker, 0);
    worker.on("message", (report: PageReport) => {
      load.set(worker, (load.get(worker) ?? 1) - 1);
      pending.get(report.id)?.resolve(report);
      pending.delete(report.id);
    });
    const fail = (error: Error) => {
      failed = true;
      for (const waiting of pending.values()) waiting.reject(error);
      pending.clear();
    };
    worker.on("error", fail);
    worker.on("exit", () => fail(new Error("an audit verify worker exited")));
    return worker;
  });
  const pool: Pool = {
    broken: () => failed,
    run(job, { among = workers.length, on } = {}) {
      if (failed) return Promise.reject(new Error("the audit verify workers are gone"));
      const id = nextId++;
      let least = workers[on ?? 0]!;
      if (on === undefined)
        for (const worker of workers.slice(0, among)) if (load.get(worker)! < load.get(least)!) least = worker;
      load.set(least, load.get(least)! + 1);
      return new Promise<PageReport>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        least.postMessage({ ...job, id } as WorkerMessage);
      });
    },
  };
  return { pool, workers };
}

function acquire(): Pool {
  if (shared && shared.pool.broken()) {
    for (const worker of shared.workers) void worker.terminate();
    shared = undefined;
  }
  shared ??= { ...startPool(), users: 0 };
  if (shared.idle) clearTimeout(shared.idle);
  shared.idle = undefined;
  shared.users++;
  return shared.pool;
}

function release(): void {
  if (!shared) return;
  const current = shared;
  current.users--;
  if (current.users > 0) return;
  current.idle = setTimeout(() => {
    if (shared !== current || current.users > 0) return;
    shared = undefined;
    for (const worker of current.workers) void worker.terminate();
  }, IDLE_MS);
  current.idle.unref();
}

let nextRun = 1;

/**
 * Opens a connection in each of the first `MAX_READERS` workers for one run; undefined (none left open)
 * when one of them cannot connect. `close` ends them all.
 */
async function openReaders(pool: Pool, db: Kysely<Database>, url: string) {
  const run = nextRun++;
  const count = Math.min(MAX_READERS, workerCount());
  const text = verifyStore.verifyPageStatement(db);
  const close = () =>
    Promise.all(
      Array.from({ length: count }, (_, on) => pool.run({ kind: "close", run }, { on }).catch(() => undefined)),
    );
  const opened = await Promise.all(
    Array.from({ length: count }, (_, on) =>
      pool.run({ kind: "open", run, url, text }, { on }).then(
        (report) => report.ok,
        () => false,
      ),
    ),
  );
  if (opened.every(Boolean)) return { run, count, close };
  await close();
  return undefined;
}

/**
 * Feeds `verifier` every event up to `headSeq` in seq order, as `visitForVerify` does, with the hashing on
 * worker threads; `onPage` after each page with the last seq visited. Returns how many pages the workers
 * found intact and how many were pushed one by one.
 */
export async function visitInParallel(
  db: Kysely<Database>,
  headSeq: number,
  verifier: Verifier,
  onPage?: (lastSeq: number) => void,
  /** Rows per page; by default `pageSizeFor` each page. */
  pageSize?: number,
  /** PostgreSQL: the store's URL, so that workers read their pages over connections of their own. */
  connectionUrl?: string,
): Promise<{ pagesFromWorkers: number; pagesOneByOne: number; pagesReadByWorkers: number }> {
  const pool = acquire();
  const counts = { pagesFromWorkers: 0, pagesOneByOne: 0, pagesRead: 0, pagesReadByWorkers: 0 };
  const readers = connectionUrl ? await openReaders(pool, db, connectionUrl) : undefined;
  try {
    const wantedAll = verifier.seqsOfInterest();
    const wantedIn = (first: number, last: number) => wantedAll.filter((seq) => seq >= first && seq <= last);
    /** The last seq visited. */
    let afterSeq = 0;
    const queue: { page: Page; report: Promise<PageReport | null> }[] = [];
    const depth = 2 * workerCount();

    /**
     * The page's events one by one, read as columns (the serial path's fallback); false once the visit ends.
     * One row more than the page is read, and every row up to its last seq pushed: a second row of that
     * seq (a duplicate at the page's end) reaches the verifier too.
     */
    const pushOneByOne = async (page: Page) => {
      for (const row of await auditStore.pageFrom(db, afterSeq, page.count + 1)) {
        const event = auditStore.toEvent(row);
        if (event.seq > page.lastSeq && page.lastSeq >= afterSeq) return true;
        if (event.seq > headSeq || !verifier.push(event)) return false;
        afterSeq = event.seq;
      }
      return true;
    };
    /** Joins the next page to the chain; false once the visit ends or the queue no longer follows on. */
    const settle = async (item: (typeof queue)[number]): Promise<boolean> => {
      const report = await item.report.catch(() => null);
      const { page } = item;
      if (
        report?.ok &&
        report.firstSeq === page.firstSeq &&
        report.lastSeq === page.lastSeq &&
        (report.count ?? page.count) === page.count &&
        verifier.pushVerified({
          firstSeq: report.firstSeq,
          firstPrevHash: report.firstPrevHash,
          lastSeq: report.lastSeq,
          lastHash: report.lastHash,
          count: page.count,
          wanted: wantedIn(page.firstSeq, page.lastSeq),
          hashes: report.hashes,
        })
      ) {
        afterSeq = page.lastSeq;
        counts.pagesFromWorkers++;
      } else {
        counts.pagesOneByOne++;
        if (!(await pushOneByOne(page))) return false;
      }
      onPage?.(afterSeq);
      return afterSeq === page.lastSeq;
    };

    let fetchAfter = 0;
    let stopped = false;
    /** Rows of the page read after `after`, as the loop below sizes it (`pagesRead` pages read before it). */
    const sizeAfter = (after: number) =>
      Math.min(pageSize ?? pageSizeFor(counts.pagesRead, headSeq - after), headSeq - after);
    /**
     * The page read ahead: while this thread receives a page and hands it out, the database already reads
     * the one after the seq that page ends at when the chain is intact (on a second connection). Used only
     * when the loop reads after exactly that seq, with that size: the very read it would make, made earlier.
     */
    let ahead: { after: number; size: number; rows: Promise<string[]> } | undefined;
    const readRows = (after: number, size: number) => {
      const early = ahead?.after === after && ahead.size === size ? ahead.rows : undefined;
      ahead = undefined;
      return early ?? verifyStore.verifyPageRows(db, after, headSeq, size);
    };
    const readAhead = (after: number) => {
      const size = sizeAfter(after);
      if (readers || size <= 0) return;
      const rows = verifyStore.verifyPageRows(db, after, headSeq, size);
      rows.catch(() => undefined);
      ahead = { after, size, rows };
    };
    while (!stopped && fetchAfter < headSeq) {
      const size = sizeAfter(fetchAfter);
      counts.pagesRead++;
      if (readers) {
        // The keyset range the next `size` events hold when the chain is intact; the worker reads it.
        const page: Page = { count: size, firstSeq: fetchAfter + 1, lastSeq: fetchAfter + size };
        const report = pool.run(
          {
            kind: "read",
            run: readers.run,
            afterSeq: fetchAfter,
            limit: size,
            headSeq,
            wanted: wantedIn(page.firstSeq, page.lastSeq),
          },
          { among: readers.count },
        );
        report.catch(() => undefined);
        queue.push({ page, report });
        counts.pagesReadByWorkers++;
        fetchAfter = page.lastSeq;
        while (!stopped && queue.length >= depth) stopped = !(await settle(queue.shift()!));
        continue;
      }
      const pending = readRows(fetchAfter, size);
      readAhead(fetchAfter + size);
      const rows = await pending;
      if (rows.length === 0) break;
      const page: Page = {
        count: rows.length,
        firstSeq: verifyStore.verifyRowSeq(rows[0]!),
        lastSeq: verifyStore.verifyRowSeq(rows[rows.length - 1]!),
      };
      // A seq that does not read as one: this page one by one (as columns), the rest serially.
      const readable =
        Number.isSafeInteger(page.firstSeq) && Number.isSafeInteger(page.lastSeq) && page.lastSeq > fetchAfter;
      const report = readable
        ? pool.run({ kind: "rows", rows, wanted: wantedIn(page.firstSeq, page.lastSeq) })
        : Promise.resolve(null);
      report.catch(() => undefined);
      queue.push({ page, report });
      if (!readable) break;
      fetchAfter = page.lastSeq;
      while (!stopped && queue.length >= depth) stopped = !(await settle(queue.shift()!));
    }
    while (!stopped && queue.length > 0) stopped = !(await settle(queue.shift()!));
    queue.length = 0;
    // A page read ahead that the loop did not take (the chain did not end where it was guessed, or it stopped).
    await (ahead as { rows: Promise<string[]> } | undefined)?.rows.catch(() => undefined);
    // A page read again as columns that ended elsewhere (rows changed meanwhile): the rest serially, from
    // what was visited, unless the chain is broken already.
    if (stopped && !verifier.isBroken() && afterSeq < headSeq)
      await verifyStore.visitForVerify(db, headSeq, verifier.push, onPage, pageSize, afterSeq);
    return {
      pagesFromWorkers: counts.pagesFromWorkers,
      pagesOneByOne: counts.pagesOneByOne,
      pagesReadByWorkers: counts.pagesReadByWorkers,
    };
  } finally {
    await readers?.close();
    release();
  }
}
