/** Disk-full detection: the same condition reported by the OS, PostgreSQL and PGlite. */
import { statfs } from "node:fs/promises";

/** SQLSTATE disk_full (PostgreSQL, and PGlite whose files sit on our disk). */
const DISK_FULL_STATE = "53100";

/** Whether `error` (or an error it wraps, via `cause`) says a disk is full. */
export function isDiskFull(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (code === DISK_FULL_STATE || code === "ENOSPC" || code === "EDQUOT") return true;
    if (/No space left on device|disk quota exceeded/i.test(e.message)) return true;
  }
  return false;
}

/** Bytes an unprivileged writer may still use on the file system holding `dir` (Infinity if unknown). */
export async function freeBytes(dir: string): Promise<number> {
  try {
    const stats = await statfs(dir);
    return stats.bavail * stats.bsize;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}
