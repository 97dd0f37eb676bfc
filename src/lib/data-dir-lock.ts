/**
 * An exclusive lock on an embedded data directory. PGlite is one process's database: two servers
 * opening the same directory each keep their own copy in memory and overwrite each other's files,
 * so one silently loses its writes. The lock is a file `<dir>.lock` created with O_EXCL naming its
 * holder (pid, host, process start time, what it is); a lock whose process is gone (a SIGKILL, a
 * crash, a reboot) is taken over, a live one is refused with a message naming it.
 */
import { linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import path from "node:path";

export interface LockHolder {
  pid: number;
  host: string;
  /** Linux: the process start time in clock ticks since boot, so a reused pid is not taken for the holder. */
  startTicks: number | null;
  /** What holds it, e.g. "stint server listening on 127.0.0.1:8420". */
  owner: string;
  since: string;
}

/** Another live process holds the data directory. */
export class DataDirLockedError extends Error {
  constructor(
    readonly dir: string,
    readonly holder: LockHolder,
  ) {
    super(
      `the data directory ${dir} is in use by another Stint server (${describe(holder)}). ` +
        `Two servers on one embedded data directory would lose each other's writes: stop the other server, ` +
        `or give this one its own directory (STINT_DATA_DIR), or share a PostgreSQL database (STINT_DATABASE_URL).`,
    );
    this.name = "DataDirLockedError";
  }
}

function describe(holder: LockHolder): string {
  const where = holder.host === hostname() ? "" : ` on host ${holder.host}`;
  return `${holder.owner || "a Stint process"}, pid ${holder.pid}${where}, since ${holder.since}`;
}

/** Field 22 of /proc/<pid>/stat (the start time); null where /proc does not exist. */
function startTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const value = Number(fields[19]);
    return Number.isFinite(value) ? value : null;
  } catch {
    return null;
  }
}

function alive(holder: LockHolder): boolean {
  // A lock written on another host (a shared file system) cannot be checked from here: assume it is held.
  if (holder.host !== hostname()) return true;
  try {
    process.kill(holder.pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  // The pid exists; after a reboot or a wrap-around it may be another program's.
  if (holder.startTicks === null) return true;
  const ticks = startTicks(holder.pid);
  return ticks === null || ticks === holder.startTicks;
}

function readHolder(file: string): LockHolder | null {
  try {
    const value = JSON.parse(readFileSync(file, "utf8")) as Partial<LockHolder>;
    if (typeof value.pid !== "number" || typeof value.host !== "string") return null;
    return {
      pid: value.pid,
      host: value.host,
      startTicks: typeof value.startTicks === "number" ? value.startTicks : null,
      owner: typeof value.owner === "string" ? value.owner : "",
      since: typeof value.since === "string" ? value.since : "an unknown time",
    };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") throw error;
    return null;
  }
}

export interface DataDirLock {
  readonly file: string;
  release(): void;
}

/**
 * Takes the lock on `dir` (the directory need not exist yet; the lock file sits beside it) or
 * throws DataDirLockedError. Synchronous so that two starts in one process cannot interleave.
 */
export function lockDataDir(dir: string, owner: string): DataDirLock {
  const resolved = path.resolve(dir);
  const file = `${resolved}.lock`;
  const mine: LockHolder = {
    pid: process.pid,
    host: hostname(),
    startTicks: startTicks(process.pid),
    owner,
    since: new Date().toISOString(),
  };
  const content = `${JSON.stringify(mine)}\n`;
  for (let attempt = 0; ; attempt++) {
    // Written whole under a private name, then linked into place: link fails if the lock exists,
    // and a reader never sees a half-written lock.
    const temp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}`;
    writeFileSync(temp, content, { mode: 0o600, flag: "wx" });
    try {
      linkSync(temp, file);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    } finally {
      unlinkSync(temp);
    }
    let holder: LockHolder | null;
    try {
      holder = readHolder(file);
    } catch {
      continue; // released between our link and our read: try again
    }
    if (holder && holder.pid === process.pid && holder.host === mine.host)
      throw new DataDirLockedError(resolved, holder); // this process already has it open
    if (holder && alive(holder)) throw new DataDirLockedError(resolved, holder);
    if (attempt >= 3) throw new Error(`could not take the lock ${file}: it keeps changing`);
    // Stale (its process is gone) or unreadable (never written whole: locks are linked complete, so
    // this is not ours to respect): move it aside atomically, so of two starters taking it over
    // only one moves this file, then try the exclusive create again.
    const aside = `${file}.stale.${process.pid}.${randomBytes(4).toString("hex")}`;
    try {
      renameSync(file, aside);
      unlinkSync(aside);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    process.removeListener("exit", release);
    try {
      // Only our own lock: never remove one another server took over after a mistake.
      const holder = readHolder(file);
      if (holder && holder.pid === mine.pid && holder.since === mine.since) unlinkSync(file);
    } catch {
      // already gone
    }
  };
  // A process.exit() that skips the store's close still frees the directory.
  process.once("exit", release);
  return { file, release };
}
