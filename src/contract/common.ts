import { z } from "zod";
import { ERROR_CODES, type ErrorCode } from "../lib/errors.js";

export const errorEnvelope = z.object({
  error: z.object({
    code: z.enum(Object.keys(ERROR_CODES) as [ErrorCode, ...ErrorCode[]]),
    message: z.string(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
});

/** What a name is made of (`name`); hot routes that check names without zod use this same pattern. */
export const NAME_PATTERN = /^[a-z][a-z0-9._-]{0,63}$/;

/** Names of principals, groups, tokens: lower-case, no spaces, usable in URLs and shells. */
export const name = z
  .string()
  .regex(NAME_PATTERN, "must start with a letter and use only a-z, 0-9, '.', '_' or '-' (at most 64)");

/** A free-text reason: printable, bounded. */
export const reason = z
  .string()
  .trim()
  .min(1)
  .max(1000)
  .refine((s) => ![...s].some(isControl), "must not contain control characters");

function isControl(ch: string): boolean {
  const code = ch.codePointAt(0)!;
  return (code < 0x20 && ch !== "\n" && ch !== "\r" && ch !== "\t") || code === 0x7f;
}

export const password = z.string().min(12, "must be at least 12 characters").max(1024);

export const durationText = z.string().regex(/^\d{1,9}(s|m|h|d)$/, "must be a duration like 30s, 15m, 2h or 1d");

export const isoTime = z.iso.datetime({ offset: true });

export const ok = z.object({ ok: z.literal(true) });
