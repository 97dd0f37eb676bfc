/**
 * Test support: the TCP connections established to a local sshd, as `ss` sees them, each named by its client
 * port, and the sshd processes that serve them, so that a test can count, follow and kill connections.
 */
import { execFileSync } from "node:child_process";

/** The client ports of the connections established to `port` on this machine, sorted. */
export function sshClientPorts(port: number): number[] {
  return execFileSync("ss", ["-tnH", "state", "established", `( dport = :${port} )`])
    .toString()
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => Number(/:(\d+)\s+\S+:\d+\s*$/.exec(line.trim())?.[1] ?? NaN))
    .sort((a, b) => a - b);
}

/** The processes the listening sshd `pid` started for its connections (one or more per connection). */
export function sshdChildren(pid: number): number[] {
  try {
    return execFileSync("pgrep", ["-P", String(pid)])
      .toString()
      .split("\n")
      .filter(Boolean)
      .map(Number);
  } catch {
    return []; // pgrep exits 1 when there are none
  }
}

export { eventually } from "./until.js";
