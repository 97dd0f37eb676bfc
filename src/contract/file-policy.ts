/**
 * The `session.files` block of a role's policy: which file transfers the SSH proxy lets through for
 * sessions of that role (src/proxies/ssh/file-policy.ts). Absent: both directions allowed, no size cap;
 * every transfer is still recorded and audited with its path, size and SHA-256.
 */
import { z } from "zod";

/** Largest maxBytes accepted: 1 TiB. */
export const MAX_FILE_BYTES = 2 ** 40;

export const fileRules = z.strictObject({
  /** Files from the target to the client: SFTP opens for reading, `scp -f`, `rsync --server --sender`. */
  download: z.enum(["allow", "deny"]).default("allow"),
  /** Files from the client to the target: SFTP opens for writing, `scp -t`, `rsync --server`. */
  upload: z.enum(["allow", "deny"]).default("allow"),
  /** Largest file one transfer may carry, in bytes; a transfer that would pass it is stopped. */
  maxBytes: z.number().int().min(1).max(MAX_FILE_BYTES).optional(),
});
export type FileRules = z.output<typeof fileRules>;
