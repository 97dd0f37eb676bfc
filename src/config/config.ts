/**
 * Configuration: environment variables over an optional YAML file, validated
 * once with zod and frozen. A bad value is reported one line per problem.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { isIP } from "node:net";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { parseDuration } from "../lib/duration.js";
import { notificationsConfigSchema } from "../modules/notify/notify.types.js";
import { siemConfigSchema } from "../modules/siem/siem.types.js";
import { alertsConfigSchema } from "../modules/alerts/alerts.types.js";
import { literalAddressProblems } from "../lib/address-policy.js";
import { ssoProviderSchema } from "../modules/sso/sso.types.js";

const duration = z.string().transform((text, ctx) => {
  try {
    return parseDuration(text);
  } catch (error) {
    ctx.addIssue({ code: "custom", message: (error as Error).message });
    return z.NEVER;
  }
});

/** host:port; the message gives the setting's own default as the example (and `off` where that is allowed). */
const listenAt = (example: string) =>
  z
    .string()
    .refine(
      (v) => /^(\[[0-9a-fA-F:]+\]|[\w.-]+):\d{1,5}$/.test(v) && Number(v.slice(v.lastIndexOf(":") + 1)) <= 65535,
      `must be host:port with a port up to 65535, e.g. ${example}`,
    );
const listen = listenAt("127.0.0.1:8420");

const cidrOrIp = z.string().refine((v) => {
  const [ip, bits, ...rest] = v.split("/");
  if (rest.length > 0 || !ip || !isIP(ip)) return false;
  return bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= (isIP(ip) === 4 ? 32 : 128));
}, "must be an IP address or CIDR range");

export const configSchema = z
  .object({
    listen: listen.default("127.0.0.1:8420"),
    dataDir: z.string().min(1).default(".stint"),
    databaseUrl: z
      .string()
      .regex(/^postgres(ql)?:\/\/\S+$/, "must be a postgres:// or postgresql:// URL")
      .optional(),
    masterKeyFile: z.string().min(1).optional(),
    /** The vault's root key file (32 bytes, base64; created 0600 on first start). */
    vaultKeyFile: z.string().min(1).optional(),
    /** The vault's root key itself, base64 (instead of the file). */
    vaultKey: z
      .string()
      .refine((v) => Buffer.from(v, "base64").length === 32, "must be 32 bytes in base64")
      .optional(),
    bootstrapAdminPassword: z.string().min(12, "must be at least 12 characters").max(1024).optional(),
    bootstrapAdminName: z
      .string()
      .regex(/^[a-z][a-z0-9._-]{0,63}$/, "must be a lower-case name")
      .default("admin"),
    trustedProxies: z.array(cidrOrIp).default([]),
    logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    logFormat: z.enum(["auto", "json", "pretty"]).default("auto"),
    accessTokenTtl: duration.default(600_000),
    refreshSessionTtl: duration.default(43_200_000),
    auditCheckpointEvery: z.coerce.number().int().min(1).max(1_000_000).default(1000),
    /** Where the latest signed audit head is written (atomically) for the operator to ship elsewhere. */
    auditAnchorFile: z.string().min(1).optional(),
    /** How often the audit head is signed (if it moved) and the anchor file rewritten. */
    auditAnchorInterval: duration.refine((ms) => ms >= 1000, "must be at least 1s").default(60_000),
    /** Who chains audit events: `auto` is inline on PGlite and the background sequencer on PostgreSQL. */
    auditSequencing: z.enum(["auto", "inline", "background"]).default("auto"),
    /** The audit sequencer's idle poll: committed events wake it; only a lost wake waits this long. */
    auditPoll: duration.refine((ms) => ms >= 10 && ms <= 60_000, "must be between 10ms and 60s").default(250),
    /** Committed audit events unchained for longer than this raise the alert. */
    auditLagAlert: duration.refine((ms) => ms >= 1000, "must be at least 1s").default(30_000),
    loginMaxFailures: z.coerce.number().int().min(1).max(1000).default(5),
    loginWindow: duration.default(900_000),
    loginLockout: duration.default(900_000),
    outboxPoll: duration.default(1000),
    schedulerPoll: duration.default(250),
    /** The longest pause between two attempts of an outbox job (a revocation at a target that is down, say). */
    outboxBackoffCap: duration.default(600_000),
    /** How often every target is compared with what Stint granted; 0 turns the schedule off. */
    reconcileInterval: z.union([z.literal("0").transform(() => 0), duration]).default(300_000),
    /** The URL people reach Stint at; links in notifications point here. Defaults to http://<listen>. */
    publicUrl: z
      .string()
      .regex(/^https?:\/\/[^\s/$.?#].[^\s]*$/, "must be an http(s) URL")
      .optional(),
    /** Where the SSH session proxy listens ("off" turns it off). Default 127.0.0.1:2222. */
    sshProxyListen: z.union([z.literal("off"), listenAt("127.0.0.1:2222, or off")]).optional(),
    /** How long an SSH proxy client has from accept until it is signed in (version line, key exchange, certificate). */
    sshProxyHandshakeTimeout: duration.default(30_000),
    /** Connections the SSH proxy holds at once, overall and from one source address; more are closed at accept. */
    sshProxyMaxConnections: z.coerce.number().int().min(1).max(1_000_000).default(1000),
    sshProxyMaxConnectionsPerAddress: z.coerce.number().int().min(1).max(1_000_000).default(50),
    /** Session channels one SSH proxy connection holds open at once (OpenSSH's MaxSessions); more are refused. */
    sshProxyMaxSessions: z.coerce.number().int().min(1).max(10_000).default(10),
    /** Forwarded connections one SSH proxy connection holds open at once, and remote-forward listeners apart. */
    sshProxyMaxForwards: z.coerce.number().int().min(1).max(10_000).default(32),
    /** Userauth refusals one SSH proxy connection gets; the last closes it (OpenSSH's MaxAuthTries). */
    sshProxyMaxAuthTries: z.coerce.number().int().min(1).max(1_000).default(6),
    /**
     * The largest a session's recording may grow, in bytes: the write that would pass it ends the recording
     * (and, under `recording: required`, the session). Default 4 GiB.
     */
    recordingMaxBytes: z.coerce
      .number()
      .int()
      .min(1024 * 1024)
      .max(Number.MAX_SAFE_INTEGER)
      .default(4 * 1024 ** 3),
    /** Where the PostgreSQL session proxy listens ("off" turns it off). Default 127.0.0.1:6543. */
    pgProxyListen: z.union([z.literal("off"), listenAt("127.0.0.1:6543, or off")]).optional(),
    /** PEM certificate (chain) and key files for the PostgreSQL proxy: with them it speaks TLS only. */
    pgProxyTlsCert: z.string().min(1).optional(),
    pgProxyTlsKey: z.string().min(1).optional(),
    /** How long a PostgreSQL proxy client has from accept until it has sent its password (SSLRequests and TLS included). */
    pgProxyHandshakeTimeout: duration.default(15_000),
    /** Connections the PostgreSQL proxy holds at once, overall and from one source address; more are refused at accept. */
    pgProxyMaxConnections: z.coerce.number().int().min(1).max(1_000_000).default(1000),
    pgProxyMaxConnectionsPerAddress: z.coerce.number().int().min(1).max(1_000_000).default(50),
    /** Where the MySQL/MariaDB session proxy listens ("off" turns it off). Default 127.0.0.1:3307. */
    mysqlProxyListen: z.union([z.literal("off"), listenAt("127.0.0.1:3307, or off")]).optional(),
    /** PEM certificate (chain) and key files for the MySQL proxy: with them clients on other machines may sign in over TLS. */
    mysqlProxyTlsCert: z.string().min(1).optional(),
    mysqlProxyTlsKey: z.string().min(1).optional(),
    /** How long a MySQL proxy client has from accept until it has sent its token (TLS included). */
    mysqlProxyHandshakeTimeout: duration.default(15_000),
    /** Connections the MySQL proxy holds at once, overall and from one source address; more are refused at accept. */
    mysqlProxyMaxConnections: z.coerce.number().int().min(1).max(1_000_000).default(1000),
    mysqlProxyMaxConnectionsPerAddress: z.coerce.number().int().min(1).max(1_000_000).default(50),
    /** The host name clients use to reach the proxies (printed by `stint db login`, `stint ssh config`). */
    proxyPublicHost: z
      .string()
      .regex(/^[A-Za-z0-9.:[\]-]{1,253}$/, "must be a host name or IP address")
      .optional(),
    /**
     * The bearer token Prometheus presents to scrape /metrics (at least 32 characters). Without it only
     * signed-in admin, security and auditor users may read the metrics.
     */
    metricsToken: z
      .string()
      .min(32, "must be at least 32 characters")
      .max(512)
      .regex(/^[\x21-\x7e]+$/, "must be printable ASCII without spaces")
      .optional(),
    /** How often the metrics read from the database are refreshed, however often /metrics is scraped. */
    metricsRefresh: duration.refine((ms) => ms >= 1000, "must be at least 1s").default(15_000),
    /**
     * Workload identity: the least time between two fetches of one issuer's key set. A token signed by a key
     * Stint has not seen refetches the set, at most this often (a rotated-in key is picked up at once).
     */
    workloadJwksCooldown: duration.default(30_000),
    /**
     * SCIM 2.0 (/scim/v2): the service identities whose API tokens may provision users and groups (the identity
     * provider's connection). Empty: SCIM refuses everyone.
     */
    scimServices: z
      .array(z.string().regex(/^[a-z][a-z0-9._-]{0,63}$/, "must be a service identity's name"))
      .default([]),
    /** Passkeys: the WebAuthn relying party id (a host name, never an IP address). Default: publicUrl's host. */
    webauthnRpId: z
      .string()
      .regex(
        /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/,
        "must be a host name",
      )
      .optional(),
    /** Passkeys: the name authenticators show. */
    webauthnRpName: z.string().trim().min(1).max(100).default("Stint"),
    /** Passkeys: the origins an answer may come from. Default: publicUrl's origin. */
    webauthnOrigins: z
      .array(z.string().regex(/^https?:\/\/[^\s/?#]+$/, "must be an origin like https://stint.example.com"))
      .default([]),
    /** Passkeys: how long a challenge may be answered. */
    webauthnChallengeTtl: duration
      .refine((ms) => ms >= 30_000 && ms <= 600_000, "must be between 30s and 10m")
      .default(300_000),
    /**
     * OIDC single sign-on providers (YAML file only): issuer, client id, the client secret from a file or an
     * environment variable, scopes, the claims naming the user and listing the groups, allowed e-mail domains.
     */
    ssoProviders: z
      .array(ssoProviderSchema)
      .max(20)
      .default([])
      .refine((list) => new Set(list.map((p) => p.id)).size === list.length, "provider ids must be unique")
      .refine(
        (list) => list.every((p) => !["device", "redeem", "providers"].includes(p.id)),
        "device, redeem and providers are not provider ids (they name routes)",
      ),
    /** Who may sign in with a password: everyone, or only `breakGlassUsers` (single sign-on for the rest). */
    passwordSignIn: z.enum(["everyone", "break-glass"]).default("everyone"),
    /** The accounts that keep their password when `passwordSignIn` is `break-glass`. */
    breakGlassUsers: z.array(z.string().regex(/^[a-z][a-z0-9._-]{0,63}$/, "must be a user name")).default([]),
    /**
     * Networks Stint may connect to (targets, webhooks) although its address policy blocks them by default:
     * cloud metadata services, link-local, unspecified, multicast and reserved ranges.
     */
    allowNetworks: z.array(cidrOrIp).default([]),
    /** Networks Stint never connects to, whatever else allows them (e.g. 127.0.0.0/8 in production). */
    denyNetworks: z.array(cidrOrIp).default([]),
    /** The blob store directory (session recordings). Default <dataDir>/blobs. */
    blobDir: z.string().min(1).optional(),
    /** Notification channels (YAML file only: they hold webhook secrets and SMTP passwords). */
    notifications: notificationsConfigSchema.default({ channels: [] }),
    /** SIEM streaming destinations (YAML file only; a HEC token is read from a file or an environment variable). */
    siem: siemConfigSchema.default({ destinations: [] }),
    /** Anomaly alerts (YAML file only): per rule on/off, thresholds, severity and action (docs/configuration.md). */
    alerts: alertsConfigSchema.prefault({}),
    /**
     * Four-eyes on changes to access itself: a configuration file whose plan widens access at one of `tiers` waits
     * as a change request for a second admin; `expireAfter` later it expires. `tiers: []` turns it off.
     * STINT_FOUR_EYES_ALONE sets `alone`.
     * STINT_FOUR_EYES_TIERS overrides the tiers (a comma list, or `none`).
     */
    fourEyes: z
      .strictObject({
        tiers: z
          .array(z.enum(["low", "medium", "high", "critical"]))
          .refine((t) => new Set(t).size === t.length, "must not repeat a tier")
          .default(["high", "critical"]),
        expireAfter: duration.refine((ms) => ms >= 60_000, "must be at least 1m").default(7 * 86_400_000),
        /**
         * When nobody but the author could approve (no other active admin or security user: a first admin building
         * the catalog), `apply` applies at once, audited as config.four_eyes_waived; `hold` holds it anyway.
         */
        alone: z.enum(["apply", "hold"]).default("apply"),
        /**
         * The approving admin's own fresh second factor (as `stint step-up` renews it), for change requests at these
         * tiers, no older than `maxAge`. Off by default: other admin writes ask for no MFA either, so it stops a
         * phished approver only where admin sessions are otherwise MFA-fresh (docs/configuration.md#four-eyes).
         */
        approverMfa: z
          .strictObject({
            tiers: z
              .array(z.enum(["low", "medium", "high", "critical"]))
              .refine((t) => new Set(t).size === t.length, "must not repeat a tier")
              .default([]),
            maxAge: duration
              .refine((ms) => ms >= 30_000 && ms <= 86_400_000, "must be between 30s and 1d")
              .default(15 * 60_000),
          })
          .default({ tiers: [], maxAge: 15 * 60_000 }),
      })
      .default({
        tiers: ["high", "critical"],
        expireAfter: 7 * 86_400_000,
        alone: "apply",
        approverMfa: { tiers: [], maxAge: 15 * 60_000 },
      }),
    /**
     * Passwords and invites (finding 89): `adminSetPasswords: refused` makes an administrator's choosing of another
     * person's password (creating a user with one, a reset) fail with ADMIN_PASSWORDS_REFUSED (use an invite);
     * `inviteTtl` is how long an invite's one-time code is good for.
     */
    identity: z
      .strictObject({
        adminSetPasswords: z.enum(["allowed", "refused"]).default("allowed"),
        inviteTtl: duration
          .refine((ms) => ms >= 5 * 60_000 && ms <= 30 * 86_400_000, "must be between 5m and 30d")
          .default(86_400_000),
      })
      .default({ adminSetPasswords: "allowed", inviteTtl: 86_400_000 }),
  })
  .strict()
  .refine(
    (c) =>
      c.webauthnRpId === undefined ||
      c.webauthnOrigins.every((origin) => {
        const host = new URL(origin).hostname;
        return host === c.webauthnRpId || host.endsWith(`.${c.webauthnRpId}`);
      }),
    {
      message: "each of STINT_WEBAUTHN_ORIGINS must be STINT_WEBAUTHN_RP_ID or a subdomain of it",
      path: ["webauthnOrigins"],
    },
  )
  .refine((c) => (c.pgProxyTlsCert === undefined) === (c.pgProxyTlsKey === undefined), {
    message: "STINT_PG_PROXY_TLS_CERT and STINT_PG_PROXY_TLS_KEY go together: set both or neither",
    path: ["pgProxyTlsCert"],
  })
  .refine((c) => (c.mysqlProxyTlsCert === undefined) === (c.mysqlProxyTlsKey === undefined), {
    message: "STINT_MYSQL_PROXY_TLS_CERT and STINT_MYSQL_PROXY_TLS_KEY go together: set both or neither",
    path: ["mysqlProxyTlsCert"],
  })
  .refine((c) => c.passwordSignIn === "everyone" || c.ssoProviders.length > 0, {
    message: "passwordSignIn: break-glass needs at least one of ssoProviders (or nobody else could sign in)",
    path: ["passwordSignIn"],
  })
  // A notification channel at a literal address the address policy refuses fails here, at start.
  .superRefine((c, ctx) => {
    const policy = { allow: c.allowNetworks, deny: c.denyNetworks };
    const channelNames = new Set(c.notifications.channels.map((channel) => channel.name));
    c.alerts.channels?.forEach((name, i) => {
      if (!channelNames.has(name))
        ctx.addIssue({
          code: "custom",
          message: `names no channel of notifications.channels`,
          path: ["alerts", "channels", i],
        });
    });
    c.notifications.channels.forEach((channel, i) => {
      const field = channel.kind === "email" ? "host" : "url";
      const address = channel.kind === "email" ? channel.host : channel.url;
      for (const message of literalAddressProblems(address, policy))
        ctx.addIssue({ code: "custom", message, path: ["notifications", "channels", i, field] });
    });
    c.siem.destinations.forEach((destination, i) => {
      const address = destination.kind === "hec" ? destination.url : destination.host;
      for (const message of literalAddressProblems(address, policy))
        ctx.addIssue({
          code: "custom",
          message,
          path: ["siem", "destinations", i, destination.kind === "hec" ? "url" : "host"],
        });
    });
  });

export type Config = Readonly<
  z.output<typeof configSchema> & { masterKeyFile: string; vaultKeyFile: string; blobDir: string }
>;

export const DEFAULT_SSH_PROXY_LISTEN = "127.0.0.1:2222";
export const DEFAULT_PG_PROXY_LISTEN = "127.0.0.1:6543";
export const DEFAULT_MYSQL_PROXY_LISTEN = "127.0.0.1:3307";

/** Environment variable → config key. */
export const ENV_KEYS = {
  STINT_LISTEN: "listen",
  STINT_DATA_DIR: "dataDir",
  STINT_DATABASE_URL: "databaseUrl",
  STINT_MASTER_KEY_FILE: "masterKeyFile",
  STINT_VAULT_KEY_FILE: "vaultKeyFile",
  STINT_VAULT_KEY: "vaultKey",
  STINT_BOOTSTRAP_ADMIN_PASSWORD: "bootstrapAdminPassword",
  STINT_BOOTSTRAP_ADMIN_NAME: "bootstrapAdminName",
  STINT_TRUSTED_PROXIES: "trustedProxies",
  STINT_LOG_LEVEL: "logLevel",
  STINT_LOG_FORMAT: "logFormat",
  STINT_ACCESS_TOKEN_TTL: "accessTokenTtl",
  STINT_REFRESH_SESSION_TTL: "refreshSessionTtl",
  STINT_AUDIT_CHECKPOINT_EVERY: "auditCheckpointEvery",
  STINT_AUDIT_ANCHOR_FILE: "auditAnchorFile",
  STINT_AUDIT_ANCHOR_INTERVAL: "auditAnchorInterval",
  STINT_AUDIT_SEQUENCING: "auditSequencing",
  STINT_AUDIT_POLL: "auditPoll",
  STINT_AUDIT_LAG_ALERT: "auditLagAlert",
  STINT_LOGIN_MAX_FAILURES: "loginMaxFailures",
  STINT_LOGIN_WINDOW: "loginWindow",
  STINT_LOGIN_LOCKOUT: "loginLockout",
  STINT_OUTBOX_POLL: "outboxPoll",
  STINT_SCHEDULER_POLL: "schedulerPoll",
  STINT_OUTBOX_BACKOFF_CAP: "outboxBackoffCap",
  STINT_RECONCILE_INTERVAL: "reconcileInterval",
  STINT_PUBLIC_URL: "publicUrl",
  STINT_SSH_PROXY_LISTEN: "sshProxyListen",
  STINT_SSH_PROXY_HANDSHAKE_TIMEOUT: "sshProxyHandshakeTimeout",
  STINT_SSH_PROXY_MAX_CONNECTIONS: "sshProxyMaxConnections",
  STINT_SSH_PROXY_MAX_CONNECTIONS_PER_ADDRESS: "sshProxyMaxConnectionsPerAddress",
  STINT_SSH_PROXY_MAX_SESSIONS: "sshProxyMaxSessions",
  STINT_SSH_PROXY_MAX_FORWARDS: "sshProxyMaxForwards",
  STINT_SSH_PROXY_MAX_AUTH_TRIES: "sshProxyMaxAuthTries",
  STINT_PG_PROXY_LISTEN: "pgProxyListen",
  STINT_PROXY_PUBLIC_HOST: "proxyPublicHost",
  STINT_PG_PROXY_TLS_CERT: "pgProxyTlsCert",
  STINT_PG_PROXY_TLS_KEY: "pgProxyTlsKey",
  STINT_PG_PROXY_HANDSHAKE_TIMEOUT: "pgProxyHandshakeTimeout",
  STINT_PG_PROXY_MAX_CONNECTIONS: "pgProxyMaxConnections",
  STINT_PG_PROXY_MAX_CONNECTIONS_PER_ADDRESS: "pgProxyMaxConnectionsPerAddress",
  STINT_MYSQL_PROXY_LISTEN: "mysqlProxyListen",
  STINT_MYSQL_PROXY_TLS_CERT: "mysqlProxyTlsCert",
  STINT_MYSQL_PROXY_TLS_KEY: "mysqlProxyTlsKey",
  STINT_MYSQL_PROXY_HANDSHAKE_TIMEOUT: "mysqlProxyHandshakeTimeout",
  STINT_MYSQL_PROXY_MAX_CONNECTIONS: "mysqlProxyMaxConnections",
  STINT_MYSQL_PROXY_MAX_CONNECTIONS_PER_ADDRESS: "mysqlProxyMaxConnectionsPerAddress",
  STINT_BLOB_DIR: "blobDir",
  STINT_RECORDING_MAX_BYTES: "recordingMaxBytes",
  STINT_METRICS_TOKEN: "metricsToken",
  STINT_METRICS_REFRESH: "metricsRefresh",
  STINT_WORKLOAD_JWKS_COOLDOWN: "workloadJwksCooldown",
  STINT_SCIM_SERVICES: "scimServices",
  STINT_PASSWORD_SIGN_IN: "passwordSignIn",
  STINT_BREAK_GLASS_USERS: "breakGlassUsers",
  STINT_WEBAUTHN_RP_ID: "webauthnRpId",
  STINT_WEBAUTHN_RP_NAME: "webauthnRpName",
  STINT_WEBAUTHN_ORIGINS: "webauthnOrigins",
  STINT_WEBAUTHN_CHALLENGE_TTL: "webauthnChallengeTtl",
  STINT_ALLOW_NETWORKS: "allowNetworks",
  STINT_DENY_NETWORKS: "denyNetworks",
} as const satisfies Record<string, keyof z.input<typeof configSchema>>;

const KEY_TO_ENV = Object.fromEntries(Object.entries(ENV_KEYS).map(([env, key]) => [key, env]));

export type ConfigResult = { ok: true; config: Config } | { ok: false; problems: string[] };

/** Reads the environment (and the YAML file named by STINT_CONFIG_FILE or `file`). */
export function loadConfig(env: NodeJS.ProcessEnv, file?: string): ConfigResult {
  const problems: string[] = [];
  let fromFile: Record<string, unknown> = {};
  const configFile = file ?? env.STINT_CONFIG_FILE;
  if (configFile) {
    try {
      const parsed: unknown = parseYaml(readFileSync(configFile, "utf8"));
      if (parsed !== null && parsed !== undefined && (typeof parsed !== "object" || Array.isArray(parsed))) {
        problems.push(`${configFile}: must be a YAML mapping of settings`);
      } else {
        fromFile = (parsed as Record<string, unknown> | null) ?? {};
      }
    } catch (error) {
      problems.push(`${configFile}: ${(error as Error).message.split("\n")[0]}`);
    }
  }
  const fromEnv: Record<string, unknown> = {};
  for (const [name, key] of Object.entries(ENV_KEYS)) {
    const value = env[name];
    if (value === undefined || value === "") continue;
    fromEnv[key] =
      key === "trustedProxies" ||
      key === "allowNetworks" ||
      key === "denyNetworks" ||
      key === "scimServices" ||
      key === "breakGlassUsers" ||
      key === "webauthnOrigins"
        ? value
            .split(",")
            .map((s) => s.trim())
            .filter(Boolean)
        : value;
  }
  // STINT_FOUR_EYES_TIERS replaces the file's fourEyes.tiers (a comma list; `none` for none).
  const fourEyesTiers = env.STINT_FOUR_EYES_TIERS?.trim();
  const fourEyesAlone = env.STINT_FOUR_EYES_ALONE?.trim();
  if (fourEyesTiers || fourEyesAlone) {
    const section = fromFile.fourEyes;
    fromEnv.fourEyes = {
      ...(section !== null && typeof section === "object" && !Array.isArray(section) ? section : {}),
      ...(fourEyesTiers
        ? {
            tiers:
              fourEyesTiers === "none"
                ? []
                : fourEyesTiers
                    .split(",")
                    .map((s) => s.trim())
                    .filter(Boolean),
          }
        : {}),
      ...(fourEyesAlone ? { alone: fourEyesAlone } : {}),
    };
  }
  if (problems.length > 0) return { ok: false, problems };
  const result = configSchema.safeParse({ ...fromFile, ...fromEnv });
  if (!result.success) {
    return {
      ok: false,
      problems: result.error.issues.map((issue) => {
        const key = String(issue.path[0] ?? "");
        const where =
          fromEnv[key] !== undefined
            ? key === "fourEyes"
              ? "STINT_FOUR_EYES_TIERS / STINT_FOUR_EYES_ALONE"
              : (KEY_TO_ENV[key] ?? key)
            : key
              ? `${configFile ?? "config"}: ${issue.path.join(".")}`
              : (configFile ?? "config");
        const message =
          issue.code === "unrecognized_keys" ? `unknown setting(s) ${issue.keys.join(", ")}` : issue.message;
        // Never echo a value back: it may be a secret.
        return `${where}: ${message}`;
      }),
    };
  }
  const value = result.data;
  return {
    ok: true,
    config: Object.freeze({
      ...value,
      trustedProxies: Object.freeze([...value.trustedProxies]) as unknown as string[],
      allowNetworks: Object.freeze([...value.allowNetworks]) as unknown as string[],
      denyNetworks: Object.freeze([...value.denyNetworks]) as unknown as string[],
      scimServices: Object.freeze([...value.scimServices]) as unknown as string[],
      breakGlassUsers: Object.freeze([...value.breakGlassUsers]) as unknown as string[],
      webauthnOrigins: Object.freeze([...value.webauthnOrigins]) as unknown as string[],
      masterKeyFile: value.masterKeyFile ?? path.join(value.dataDir, "master.key"),
      vaultKeyFile: value.vaultKeyFile ?? path.join(value.dataDir, "vault.key"),
      blobDir: value.blobDir ?? path.join(value.dataDir, "blobs"),
    }),
  };
}
