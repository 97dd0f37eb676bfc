/**
 * The file-transfer policy on scp's legacy protocol (`scp -O`, the rcp protocol: an exec channel running
 * `scp -f PATH` on the target for a download, `scp -t PATH` for an upload). Socket-free: fed the sending
 * side's bytes (the target's for -f, the client's for -t), it follows the records the receiving scp
 * follows — `C<mode> <size> <name>` then exactly size bytes and one status byte, `D<mode> 0 <name>` …
 * `E` for directories, `T…` times, `\x01`/`\x02` error lines — and reports each file's path, size and
 * SHA-256 of its bytes. It reads the stream exactly as the receiving scp does, so a size in a record
 * that does not match the bytes sent cannot make the two disagree on what a file holds: the receiver
 * takes `size` bytes as the file and reads what follows as the next record, and so does the filter.
 *
 * maxBytes: a `C` record whose size passes it is not passed on; the transfer stops there (`onStop`).
 * File data passes as views of the chunks it came in, hashed as it streams; only record lines are kept.
 */
import { createHash, type Hash } from "node:crypto";
import { posix } from "node:path";
import type { FileTransferEvent } from "../../modules/sessions/sessions.types.js";
import { tooLargeMessage } from "./sftp-filter.js";

/** The longest record line the filter reads (OpenSSH's scp takes up to 2 KiB names plus the header). */
const MAX_LINE = 8192;

export interface ScpFilterOptions {
  direction: "upload" | "download";
  /** The path of the `scp -f`/`-t` command. */
  path: string;
  /** `-d` or a path ending in `/`: the target is a directory (uploads). */
  targetIsDirectory: boolean;
  role: string;
  maxBytes: number | undefined;
  onTransfer(event: FileTransferEvent): void;
  /**
   * The transfer must stop (maxBytes, or a stream that is not scp's under a size cap): the message for
   * the client; the filter passes nothing more.
   */
  onStop(message: string): void;
}

export interface ScpFilter {
  /** The sending side's bytes: what to pass on. */
  feed(chunk: Buffer): Buffer[];
  /** The channel closed: a file cut off mid-way is reported failed. */
  end(): void;
}

/** The options and path of an scp command line (already read strictly by parseScpCommand). */
export function scpTargetIsDirectory(command: string, path: string): boolean {
  return path.endsWith("/") || /(^|[ \t])-[A-Za-z0-9]*d/.test(command.slice(0, command.lastIndexOf(path)));
}

export function createScpFilter(options: ScpFilterOptions): ScpFilter {
  const { direction, role, maxBytes } = options;
  let line: number[] = [];
  /** Directories entered by D records, below the command's path. */
  const directories: string[] = [];
  let file: { path: string; size: number; hash: Hash; have: number } | undefined;
  let remaining = 0;
  let awaitingStatus = false;
  let stopped = false;

  const pathOf = (name: string): string => {
    if (directories.length > 0) {
      // The first D record names the command's path itself (`scp -r -f /srv/dir` sends `D… dir`), unless
      // an upload goes into an existing directory (`scp -r -d -t /tmp/`: /tmp/<dir>/…).
      const below = direction === "upload" && options.targetIsDirectory ? directories : directories.slice(1);
      return posix.join(options.path, ...below, name);
    }
    if (direction === "download") {
      // `scp -f /a/b.txt` sends `b.txt`; a glob or a directory's files come with their own names.
      if (posix.basename(options.path) === name) return options.path;
      return posix.join(posix.dirname(options.path), name);
    }
    return options.targetIsDirectory ? posix.join(options.path, name) : options.path;
  };

  const finish = (outcome: "success" | "failed", reason?: string) => {
    if (!file) return;
    options.onTransfer({
      protocol: "scp",
      direction,
      path: file.path,
      bytes: file.have,
      sha256: file.have === file.size ? file.hash.digest("hex") : null,
      outcome,
      ...(reason ? { reason } : {}),
    });
    file = undefined;
  };

  /** A whole record line (without its newline); false when the transfer must stop here. */
  const record = (text: string): boolean => {
    const kind = text[0];
    if (kind === "C") {
      const match = /^C[0-7]{4} (\d+) (.+)$/.exec(text);
      if (!match) return malformed();
      const size = Number(match[1]);
      const path = pathOf(match[2]!);
      if (maxBytes !== undefined && size > maxBytes) {
        const message = tooLargeMessage(role, maxBytes, path);
        options.onTransfer({
          protocol: "scp",
          direction,
          path,
          bytes: 0,
          sha256: null,
          outcome: "denied",
          rule: "maxBytes",
          reason: message,
        });
        return stop(message);
      }
      file = { path, size, hash: createHash("sha256"), have: 0 };
      remaining = size;
      awaitingStatus = size === 0;
      return true;
    }
    if (kind === "D") {
      const match = /^D[0-7]{4} \d+ (.+)$/.exec(text);
      if (!match) return malformed();
      directories.push(match[1]!);
      return true;
    }
    if (kind === "E") {
      directories.pop();
      return true;
    }
    if (kind === "T" || kind === "\x01" || kind === "\x02") return true;
    return malformed();
  };

  const malformed = (): boolean =>
    maxBytes === undefined ? true : stop("Stint: this scp stream cannot be followed, so it is stopped");

  const stop = (message: string): boolean => {
    stopped = true;
    options.onStop(message);
    return false;
  };

  /** The current record line's bytes from earlier chunks (copied), not yet passed on. */
  let held: Buffer[] = [];

  return {
    feed(chunk) {
      if (stopped) return [];
      // File data: the whole chunk lies inside one file's bytes.
      if (remaining > chunk.length) {
        remaining -= chunk.length;
        file!.have += chunk.length;
        file!.hash.update(chunk);
        return [chunk];
      }
      const out: Buffer[] = [];
      let offset = 0;
      /** Where the current line began in this chunk (-1: in an earlier chunk, or no line). */
      let lineStart = -1;
      while (offset < chunk.length) {
        if (remaining > 0) {
          const step = Math.min(remaining, chunk.length - offset);
          file!.have += step;
          file!.hash.update(chunk.subarray(offset, offset + step));
          remaining -= step;
          offset += step;
          if (remaining === 0) awaitingStatus = true;
          continue;
        }
        const byte = chunk[offset]!;
        if (awaitingStatus) {
          awaitingStatus = false;
          if (byte === 0) {
            offset++;
            finish("success");
            continue;
          }
          // An error line instead of the status byte: the sender could not read the whole file.
          finish("failed", "the sending side reported an error");
        }
        if (line.length === 0 && held.length === 0) lineStart = offset;
        offset++;
        if (byte !== 0x0a) {
          if (line.length < MAX_LINE) line.push(byte);
          else if (!malformed()) return lineStart > 0 ? [...out, chunk.subarray(0, lineStart)] : out;
          continue;
        }
        const text = Buffer.from(line).toString("utf8");
        line = [];
        if (!record(text)) {
          // Nothing of the refused line goes on (its first bytes, if any, are still held).
          held = [];
          return lineStart > 0 ? [...out, chunk.subarray(0, lineStart)] : out;
        }
        if (held.length > 0) {
          // The line began in an earlier chunk: its first bytes go out first (nothing else did yet).
          out.push(...held);
          held = [];
        }
        lineStart = -1;
      }
      if (line.length > 0) {
        // A record line not complete yet: held until it is, so a refused one never goes out in part.
        const from = lineStart >= 0 ? lineStart : 0;
        held.push(Buffer.from(chunk.subarray(from)));
        if (from > 0) out.push(chunk.subarray(0, from));
        return out;
      }
      out.push(chunk);
      return out;
    },
    end() {
      if (file && !stopped) finish("failed", "the transfer was cut off");
    },
  };
}
