/**
 * The blob store: recordings and other large, write-once files in a directory (the default), keyed by
 * a relative path. A writer appends, hashes as it goes (SHA-256) and reports the first write failure
 * instead of throwing, so a relay is never blocked or crashed by its recording.
 */
import { createHash } from "node:crypto";
import { createReadStream, type ReadStream } from "node:fs";
import { link, mkdir, open, rename, stat, statfs, unlink, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { failpoint, FailpointCrash } from "./failpoints.js";

export interface BlobWriter {
  readonly key: string;
  /**
   * Appends; never throws. Returns false when the data was not taken: after a failure, or once
   * finish() was called (the blob is sealed: its bytes and hash can no longer change).
   */
  write(data: Buffer | string): boolean;
  /** Whether the writer still takes data (no failure, finish() not called). */
  readonly open: boolean;
  /** The first write failure, if any. */
  readonly failure: Error | null;
  /** Called once, at the first write failure (or the write that would pass `maxBytes`: code EFBIG). */
  onFailure(listener: (error: Error) => void): void;
  /**
   * More than BLOB_BACKLOG_BYTES taken wait for the disk (a stalled or slow disk): a writer that can hold
   * its source back should, until `onDrain`. The writer itself never drops what it took.
   */
  readonly backlogged: boolean;
  /** Calls `listener` once, as soon as the writer is not backlogged (at once if it is not). */
  onDrain(listener: () => void): void;
  /**
   * After a write failure: the writes taken (write answered true) that never reached the file, whole and
   * in order (the failed batch's pieces past the last whole one on disk, then those waiting behind it).
   * Their callers acted on them (a statement was sent): the blob cannot hold them, its owner may keep them
   * elsewhere. Empty without a failure; at most what was waiting (BLOB_BACKLOG_BYTES and a batch, about).
   */
  unwritten(): readonly Buffer[];
  /**
   * Flushes and closes; the blob is then readable under its key. After a write failure the blob holds
   * what reached the file before it (`partial: true`, its own size and SHA-256).
   */
  finish(): Promise<FinishedBlob>;
}

export interface FinishedBlob {
  key: string;
  sha256: string;
  bytes: number;
  /** Writing failed: the blob holds the writes taken before the failure, as far as they reached the file. */
  partial?: true;
  /** The blob stopped at its size limit (`maxBytes`): it holds every write taken before the one that would pass it. */
  limit?: number;
}

export interface BlobStore {
  readonly dir: string;
  /**
   * Creates a new blob (refuses an existing key). Throws when the store cannot be written to. `maxBytes`:
   * the write that would pass it is refused (EFBIG, as a failure) and the blob ends `partial` there.
   */
  create(key: string, options?: { maxBytes?: number }): Promise<BlobWriter>;
  /** A blob's bytes as a stream; throws ENOENT for a missing key. */
  read(key: string): Promise<ReadStream>;
  size(key: string): Promise<number>;
  /**
   * A blob whose writer died with its process (its session's node was lost): the whole blob when its
   * writer got to finish, otherwise the `.partial` file made readable under its key. Its SHA-256 and
   * size as they are now, and whether it is partial; null when this store holds neither file.
   */
  salvage(key: string): Promise<{ key: string; sha256: string; bytes: number; partial: boolean } | null>;
}

const KEY = /^[a-z0-9][a-z0-9._-]*(\/[a-z0-9][a-z0-9._-]*)*$/;

/** Below this much free space a new blob is refused at once rather than failing at its first write. */
export const MIN_FREE_BYTES = 1024 * 1024;

export function createBlobStore(dir: string, options: { minFreeBytes?: number } = {}): BlobStore {
  const root = path.resolve(dir);
  const minFree = options.minFreeBytes ?? MIN_FREE_BYTES;
  const fileOf = (key: string) => {
    if (!KEY.test(key) || key.includes("..")) throw new TypeError(`not a blob key: ${key}`);
    return path.join(root, key);
  };
  return {
    dir: root,
    async create(key, createOptions = {}) {
      const file = fileOf(key);
      await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
      // Written under a temporary name and renamed at the end: a reader never sees half a blob as whole.
      const partial = `${file}.partial`;
      // A full disk still lets an empty file be created; its first write would fail after the caller
      // (a session under `recording: required`) was already let in. So refuse here, leaving nothing.
      const free = await statfs(path.dirname(file));
      if (free.bavail * free.bsize < minFree)
        throw Object.assign(
          new Error(`no space left for a new blob in ${path.dirname(file)} (${free.bavail * free.bsize} bytes free)`),
          { code: "ENOSPC" },
        );
      const handle = await open(partial, "wx", 0o600);
      return blobWriter(key, handle, partial, file, createOptions.maxBytes);
    },
    read: async (key) => {
      const file = fileOf(key);
      await stat(file);
      return createReadStream(file);
    },
    size: async (key) => (await stat(fileOf(key))).size,
    async salvage(key) {
      const file = fileOf(key);
      let partial = false;
      try {
        // Linked, not renamed: a blob finished meanwhile is never overwritten.
        await link(`${file}.partial`, file);
        partial = true;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== "ENOENT" && code !== "EEXIST") throw error;
      }
      const hash = createHash("sha256");
      let bytes = 0;
      try {
        for await (const chunk of createReadStream(file)) {
          hash.update(chunk as Buffer);
          bytes += (chunk as Buffer).length;
        }
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
        throw error;
      }
      if (partial) await unlink(`${file}.partial`).catch(() => undefined);
      return { key, sha256: hash.digest("hex"), bytes, partial };
    },
  };
}

/**
 * A blob's bytes go to its file in batches: once BLOB_BATCH_BYTES wait, or BLOB_BATCH_MS after the
 * first byte of a batch, whichever comes first (a busy PostgreSQL session appends a short line per
 * statement; a write call each cost as much as relaying the statement). finish() writes the rest, so
 * a finished blob and its SHA-256 hold every byte taken. A crash of the process loses at most the
 * batch not yet written (the blob is then left `.partial` in any case).
 */
export const BLOB_BATCH_BYTES = 64 * 1024;
export const BLOB_BATCH_MS = 100;

/** Bytes taken and not yet on the disk past which a writer is `backlogged` (its callers hold their source). */
export const BLOB_BACKLOG_BYTES = 4 * 1024 * 1024;

function blobWriter(key: string, handle: FileHandle, partial: string, file: string, maxBytes?: number): BlobWriter {
  const hash = createHash("sha256");
  let bytes = 0;
  /** Bytes in the file: all `bytes` once finished, unless writing failed. */
  let onDisk = 0;
  let failure: Error | null = null;
  /** The write that would have passed maxBytes: nothing more is taken, what was taken is still written. */
  let limited: Error | null = null;
  const listeners: ((error: Error) => void)[] = [];
  let queued: Buffer[] = [];
  let queuedBytes = 0;
  /** Taken, then lost to a write failure (see BlobWriter.unwritten). */
  const lost: Buffer[] = [];
  /** The batch being written. */
  let inFlight = 0;
  let drainListeners: (() => void)[] = [];
  const backlogged = () => !failure && !crashed && queuedBytes + inFlight > BLOB_BACKLOG_BYTES;
  const drained = () => {
    if (drainListeners.length === 0 || backlogged()) return;
    const waiting = drainListeners;
    drainListeners = [];
    for (const listener of waiting) listener();
  };
  let timer: NodeJS.Timeout | null = null;
  let flushing: Promise<void> | null = null;
  /** Set by finish(): a write that comes later (a relay still running) must not reach a closing file. */
  let sealed = false;
  /** A test's simulated crash (failpoint): the process is dead here; the file stays `.partial` as it is. */
  let crashed: FailpointCrash | null = null;
  let finished: Promise<FinishedBlob> | null = null;
  const notify = (error: Error) => {
    for (const listener of listeners.splice(0)) listener(error);
  };
  const fail = (error: Error) => {
    if (failure) return;
    failure = error;
    notify(error);
  };
  /** Writes what waits; goes on while a full batch (or, once sealed, anything) waits. */
  const flush = (): Promise<void> => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    flushing ??= (async () => {
      // Let the current turn add its lines first.
      await new Promise<void>((resolve) => setImmediate(resolve));
      while (queued.length > 0 && !failure) {
        const pieces = queued;
        const batch = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, queuedBytes);
        queued = [];
        queuedBytes = 0;
        inFlight = batch.length;
        await writeBatch(batch, pieces);
        inFlight = 0;
        drained();
        try {
          await failpoint("session.recording.after-write");
        } catch (error) {
          if (!(error instanceof FailpointCrash)) throw error;
          crashed = error;
          queued = [];
          queuedBytes = 0;
          await handle.close().catch(() => undefined);
          break;
        }
        if (queuedBytes < BLOB_BATCH_BYTES && !sealed) break;
      }
      if (failure && !crashed) lost.push(...queued);
      if (failure || crashed) {
        queued = [];
        queuedBytes = 0;
      }
      flushing = null;
      drained();
      if (queued.length > 0) schedule();
    })();
    return flushing;
  };
  /**
   * Writes one batch whole (a short write, as at a full disk, goes on with the rest). Hashed as written,
   * in order: one update per batch gives the same SHA-256 as one per write. When writing fails the file
   * is cut back to the last whole piece on disk (a recording's last whole line): what is kept of a
   * failed blob is the pieces taken before the failure, and `onDisk` and the hash are exactly that.
   */
  const writeBatch = async (batch: Buffer, pieces: Buffer[]): Promise<void> => {
    let done = 0;
    try {
      while (done < batch.length) {
        const { bytesWritten } = await handle.write(batch, done, batch.length - done);
        if (bytesWritten <= 0) throw Object.assign(new Error("the blob store took no bytes"), { code: "EIO" });
        done += bytesWritten;
      }
      hash.update(batch);
      onDisk += batch.length;
    } catch (error) {
      let whole = 0;
      let kept = 0;
      for (const piece of pieces) {
        if (whole + piece.length > done) break;
        whole += piece.length;
        kept += 1;
      }
      for (let i = kept; i < pieces.length; i++) lost.push(pieces[i]!);
      hash.update(batch.subarray(0, whole));
      onDisk += whole;
      await handle.truncate(onDisk).catch(() => undefined);
      fail(error as Error);
    }
  };
  /** A batch under BLOB_BATCH_BYTES is written BLOB_BATCH_MS after its first byte. */
  const schedule = (): void => {
    if (timer !== null || flushing !== null || failure || crashed) return;
    timer = setTimeout(() => void flush(), BLOB_BATCH_MS);
    timer.unref();
  };
  return {
    key,
    get failure() {
      return failure ?? limited;
    },
    get open() {
      return !sealed && !failure && !limited && !crashed;
    },
    get backlogged() {
      return backlogged();
    },
    onDrain(listener) {
      if (backlogged()) drainListeners.push(listener);
      else listener();
    },
    unwritten: () => lost,
    onFailure(listener) {
      const first = failure ?? limited;
      if (first) listener(first);
      else listeners.push(listener);
    },
    write(data) {
      if (failure || limited || sealed || crashed) return false;
      const chunk = typeof data === "string" ? Buffer.from(data) : Buffer.from(data);
      if (maxBytes !== undefined && bytes + chunk.length > maxBytes) {
        limited = Object.assign(new Error(`the blob would pass its size limit of ${maxBytes} bytes`), {
          code: "EFBIG",
        });
        notify(limited);
        return false;
      }
      bytes += chunk.length;
      queued.push(chunk);
      queuedBytes += chunk.length;
      if (queuedBytes >= BLOB_BATCH_BYTES) void flush();
      else schedule();
      return true;
    },
    finish() {
      sealed = true;
      finished ??= complete();
      return finished;
    },
  };

  /**
   * Writes what was taken before the seal, then syncs, closes and renames: once, whoever asks. A blob
   * whose writing failed is kept as far as it reached the file (`partial: true`), never dropped: a
   * recording must not lose what came before a full disk.
   */
  async function complete(): Promise<FinishedBlob> {
    while (!crashed && (flushing || queued.length > 0)) await flush();
    if (crashed) throw crashed; // a dead process closes nothing: the file stays `.partial`
    const failed = failure;
    try {
      await handle.sync();
    } catch (error) {
      fail(error as Error);
    }
    await handle.close().catch(() => undefined);
    if (failure && !failed) throw failure; // the bytes may not be on the disk: nothing to vouch for
    await rename(partial, file);
    if (failure) return { key, sha256: hash.digest("hex"), bytes: onDisk, partial: true };
    if (limited) return { key, sha256: hash.digest("hex"), bytes, partial: true, limit: maxBytes! };
    return { key, sha256: hash.digest("hex"), bytes };
  }
}
