/**
 * The vault API: secrets with versions, reads, check-out/check-in, and the
 * operator's seal, unseal, init and key rotation. Shared by server, CLI and web.
 * A secret's path is URL-encoded as one path segment (`prod%2Fdb%2Fadmin`).
 */
import { z } from "zod";
import { durationText, isoTime, name, reason } from "./common.js";

export const secretKind = z.enum(["password", "ssh-key", "api-key", "certificate", "generic"]);
export type SecretKind = z.infer<typeof secretKind>;

/** `prod/db/admin`: lower-case segments of letters, digits, '.', '_', '-', separated by '/'. */
export const secretPathText = z
  .string()
  .max(200)
  .regex(
    /^[a-z0-9][a-z0-9._-]*(\/[a-z0-9][a-z0-9._-]*)*$/,
    "must be lower-case path segments (letters, digits, '.', '_', '-') separated by '/'",
  );
export const secretParams = z.strictObject({ path: secretPathText });

const platformRole = z.enum(["admin", "security", "auditor", "user"]);

export const checkoutPolicy = z.strictObject({
  /** Only one holder at a time; reading the value then needs the check-out. */
  exclusive: z.boolean().default(false),
  /** The longest check-out; it is checked in automatically at its end. */
  maxDuration: durationText.default("1h"),
  /** Make a new version when it is checked in (the borrower saw the old one). */
  rotateOnCheckin: z.boolean().default(false),
});
export type CheckoutPolicy = z.output<typeof checkoutPolicy>;

export const putSecretBody = z
  .strictObject({
    /** Default: the stored kind, or generic for a new secret. */
    kind: secretKind.optional(),
    /** The value; or `generate` to have Stint make a random one (passwords, API keys). */
    value: z.string().min(1).max(65_536).optional(),
    generate: z.strictObject({ length: z.number().int().min(12).max(256).default(32) }).optional(),
    description: z.string().trim().min(1).max(500).optional(),
    owner: name.optional(),
    metadata: z.record(z.string().max(100), z.string().max(500)).optional(),
    /** Roles whose active activation may read or check out the secret. */
    roles: z.array(name).max(50).optional(),
    /** Platform roles that may read it without an activation (deny by default). */
    platformRoles: z.array(platformRole).max(4).optional(),
    checkout: checkoutPolicy.optional(),
    /** An emergency account: revealed only with a reason and fresh MFA, loudly, and rotated afterwards. */
    breakGlass: z.boolean().optional(),
    /** The secret is this login's password at this target (PostgreSQL, MariaDB): `stint secret rotate` changes it there. */
    rotation: z
      .strictObject({ target: name, login: z.string().min(1).max(300), every: durationText.optional() })
      .optional(),
  })
  .refine((b) => (b.value === undefined) !== (b.generate === undefined), {
    message: "give either value or generate",
    path: ["value"],
  });
export type PutSecretBody = z.output<typeof putSecretBody>;

export const secretMeta = z.object({
  path: z.string(),
  kind: secretKind,
  description: z.string().nullable(),
  owner: z.string().nullable(),
  metadata: z.record(z.string(), z.string()),
  roles: z.array(z.string()),
  platformRoles: z.array(z.string()),
  checkout: checkoutPolicy,
  currentVersion: z.number().int(),
  breakGlass: z.boolean(),
  rotation: z.object({ target: z.string(), login: z.string(), every: z.string().optional() }).nullable(),
  rotationDueAt: isoTime.nullable(),
  /** The open check-out, if any (exclusive secrets). */
  checkedOut: z.object({ holder: z.string(), until: isoTime }).nullable(),
  createdAt: isoTime,
  updatedAt: isoTime,
});
export type SecretMetaDto = z.infer<typeof secretMeta>;
export const secretList = z.object({ items: z.array(secretMeta) });

export const secretValueQuery = z.strictObject({ version: z.coerce.number().int().min(1).optional() });
export const secretValue = z.object({
  path: z.string(),
  version: z.number().int(),
  kind: secretKind,
  value: z.string(),
});

export const secretVersions = z.object({
  path: z.string(),
  items: z.array(
    z.object({
      version: z.number().int(),
      source: z.string(),
      createdBy: z.string(),
      createdAt: isoTime,
      current: z.boolean(),
    }),
  ),
});

export const checkoutBody = z.strictObject({ duration: durationText.optional(), reason });
export const checkout = z.object({
  path: z.string(),
  version: z.number().int(),
  value: z.string(),
  holder: z.string(),
  until: isoTime,
});
export const checkinResult = z.object({ path: z.string(), rotated: z.boolean(), currentVersion: z.number().int() });

export const vaultStatus = z.object({
  mode: z.enum(["key-file", "shamir"]),
  sealed: z.boolean(),
  /** Shares given so far towards an unseal on this node (shamir mode). */
  progress: z.number().int(),
  threshold: z.number().int().nullable(),
  shares: z.number().int().nullable(),
  keyVersion: z.number().int().nullable(),
});
export const initBody = z
  .strictObject({ shares: z.number().int().min(1).max(10), threshold: z.number().int().min(1).max(10) })
  .refine((b) => b.threshold <= b.shares, { message: "threshold must be at most shares", path: ["threshold"] });
export const initResult = z.object({ shares: z.array(z.string()), threshold: z.number().int() });
export const unsealBody = z.strictObject({ share: z.string().min(10).max(1000) });
export const rotateKeyResult = z.object({ keyVersion: z.number().int(), rewrapped: z.number().int() });

export const revealBody = z.strictObject({ reason });
export const revealResult = z.object({
  path: z.string(),
  version: z.number().int(),
  value: z.string(),
  reviewId: z.uuid(),
  rotationDueAt: isoTime,
});

/** A vault secret a target's sessions may inject (`stint secret allow PATH --target T`). */
export const allowanceParams = z.strictObject({ path: secretPathText, target: z.string().min(1).max(64) });
export const allowanceResult = z.object({
  path: z.string(),
  target: z.string(),
  grantedBy: z.string(),
  createdAt: isoTime,
});

export const rotateResult = z.object({
  path: z.string(),
  version: z.number().int(),
  previousVersion: z.number().int(),
});
