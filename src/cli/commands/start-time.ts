/**
 * `stint activate --start`: a later start, written as a time from now (`+30m`, `+2h`, `+1d`) or an ISO 8601
 * time (`2030-01-02T09:00:00Z`, `2030-01-02T09:00+01:00`; without an offset, the local time zone). The server
 * decides whether it is allowed (not in the past, within the role's maxStartDelay); this only reads it.
 */
import { parseDuration } from "../../lib/duration.js";
import { usageError } from "../exit-codes.js";

const RELATIVE = /^\+(\d{1,9}(?:s|m|h|d))$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,3})?)?(?:Z|[+-]\d{2}:\d{2})?$/;

/** The start time `text` means at `now` (epoch ms), as an ISO time in UTC; a usage error when it means none. */
export function parseStart(text: string, now: number): string {
  const value = text.trim();
  const relative = RELATIVE.exec(value);
  if (relative) return new Date(now + parseDuration(relative[1]!)).toISOString();
  if (ISO.test(value)) {
    const at = Date.parse(value);
    if (Number.isFinite(at)) return new Date(at).toISOString();
  }
  throw usageError(
    `--start "${text}" is not a time: write it from now (+30m, +2h, +1d) or as an ISO time (2030-01-02T09:00:00Z)`,
  );
}
