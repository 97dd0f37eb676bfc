/**
 * The audit anchor outside the database. Someone who can write to the database can rewrite events after
 * the newest signed checkpoint and re-chain them, or delete them; only a signed head kept elsewhere shows
 * it. Every interval (and at start and shutdown) this signs the head if it moved and rewrites the anchor
 * file atomically, for the operator to ship off the machine; `stint audit verify --anchor` checks a copy.
 */
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { access, open, rename, unlink } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import type { AuditLog } from "./audit.service.js";
import type { AuditAnchor } from "./audit.types.js";

export interface AnchorWriter {
  /**
   * Signs the head if it moved and writes the anchor file (when one is configured). `starting`: the
   * node's first write, which also states its checkpoint interval (see AuditLog.anchor).
   */
  write(options?: { starting?: boolean }): Promise<AuditAnchor | null>;
  start(): void;
  stop(): Promise<void>;
}

/** Writes `text` to `file` through a temporary file in the same directory, synced, then renamed over it. */
export async function writeFileAtomically(file: string, text: string): Promise<void> {
  const target = path.resolve(file);
  const temporary = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(6).toString("hex")}.tmp`);
  const handle = await open(temporary, "wx", 0o644);
  try {
    await handle.writeFile(text, "utf8");
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(temporary, target);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
}

export function createAnchorWriter(deps: {
  audit: Pick<AuditLog, "anchor">;
  /** Where the anchor goes; without one the head is still signed every interval (endpoint and export carry it). */
  file: string | undefined;
  intervalMs: number;
  logger: Pick<Logger, "warn" | "error">;
}): AnchorWriter {
  const { audit, file, intervalMs, logger } = deps;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  let lastWritten: string | undefined;

  async function writeOnce(options: { starting?: boolean }): Promise<AuditAnchor | null> {
    const anchor = await audit.anchor(options);
    if (file === undefined) return anchor;
    // An empty log has nothing to anchor yet, but a path that cannot be written should stop a starting node.
    if (anchor === null) {
      if (options.starting) await access(path.dirname(path.resolve(file)), constants.W_OK);
      return anchor;
    }
    const text = `${JSON.stringify(anchor, null, 2)}\n`;
    if (text !== lastWritten) {
      await writeFileAtomically(file, text);
      lastWritten = text;
    }
    return anchor;
  }

  // One write at a time: a tick and a shutdown never interleave their renames.
  const write = (options: { starting?: boolean } = {}) => {
    const once = () => writeOnce(options);
    const next = running.then(once, once);
    running = next.catch(() => undefined);
    return next;
  };

  return {
    write,
    start() {
      if (timer) return;
      timer = setInterval(() => {
        write().catch((error: unknown) => logger.error({ err: error }, "could not anchor the audit log"));
      }, intervalMs);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      await running;
    },
  };
}
