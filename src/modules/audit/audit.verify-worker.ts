/**
 * A worker thread of `audit verify` (`audit.verify.ts`): re-hashes the events of the pages it is given
 * and checks the links inside each page. It only reports; the chain verifier in the calling thread
 * decides, and reads again one by one any page this does not find intact.
 */
import { hash as digestOnce } from "node:crypto";
import { parentPort } from "node:worker_threads";
import { hashEvent } from "./audit.rules.js";
import { canonicalOfRow, decodeVerifyRow } from "./audit.rows.js";
import type { PageJob, PageReport } from "./audit.verify.js";

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
export function checkPage(job: PageJob): PageReport {
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

parentPort?.on("message", (job: PageJob) => {
  let report: PageReport;
  try {
    report = checkPage(job);
  } catch {
    report = { id: job.id, ok: false };
  }
  parentPort!.postMessage(report);
});
