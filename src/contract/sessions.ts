/**
 * Brokered sessions: the list, one session, kill, database tokens for the PostgreSQL proxy and SSH
 * certificates for the SSH proxy. Shared by server, CLI and web.
 */
import { z } from "zod";
import { isoTime, name, reason } from "./common.js";

export const sessionKind = z.enum(["ssh", "postgres", "mysql"]);

export const session = z.object({
  id: z.uuid(),
  kind: sessionKind,
  user: z.string(),
  role: z.string(),
  target: z.string(),
  login: z.string(),
  requestId: z.uuid(),
  clientAddress: z.string().nullable(),
  node: z.string(),
  startedAt: isoTime,
  endedAt: isoTime.nullable(),
  endReason: z.string().nullable(),
  endDetail: z.string().nullable(),
  endedBy: z.string().nullable(),
  live: z.boolean(),
  bytesUp: z.number().int(),
  bytesDown: z.number().int(),
  recording: z
    .object({ sha256: z.string().nullable(), bytes: z.number().int().nullable(), available: z.boolean() })
    .nullable(),
});
export type SessionView = z.infer<typeof session>;

export const sessionListQuery = z.strictObject({
  live: z.enum(["true", "false"]).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});
export const sessionList = z.object({ items: z.array(session) });
export const sessionParams = z.strictObject({ id: z.uuid() });
export const killBody = z.strictObject({ reason });

export const dbTokenBody = z.strictObject({
  role: name,
  /** A token that opens exactly one session. */
  once: z.boolean().default(false),
});
export const dbToken = z.object({
  /** Which proxy the token is for (absent from servers before MySQL: PostgreSQL). */
  kind: z.enum(["postgres", "mysql"]).optional(),
  host: z.string(),
  port: z.number().int(),
  /** PostgreSQL: the database the proxy opens; MySQL: empty (the client names one, or none). */
  database: z.string(),
  user: z.string(),
  password: z.string(),
  expiresAt: isoTime,
  /**
   * The SHA-256 of the proxy's TLS certificate ("AB:CD:…"): `stint db proxy` refuses a proxy showing another
   * one. null: the proxy runs without TLS; absent: a server from before this field.
   */
  proxyCertificateSha256: z.string().nullable().optional(),
});

const openSshPublicKey = z
  .string()
  .trim()
  .max(16_384)
  .regex(
    /^(ssh-ed25519|ssh-rsa) [A-Za-z0-9+/]+={0,2}( .*)?$/,
    "must be an OpenSSH public key line (ssh-ed25519 or ssh-rsa)",
  );
export const sshCertificateBody = z.strictObject({ publicKey: openSshPublicKey, role: name.optional() });
export const sshCertificate = z.object({
  certificate: z.string(),
  keyId: z.string(),
  serial: z.string(),
  principals: z.array(z.string()),
  validBefore: isoTime,
  role: z.string(),
  target: z.string(),
});
export const sshInfo = z.object({
  caPublicKey: z.string(),
  proxy: z.object({ host: z.string(), port: z.number().int(), hostKey: z.string() }).nullable(),
});
