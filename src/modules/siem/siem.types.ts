/**
 * SIEM streaming: where the audit chain is streamed (destinations, from the configuration file) and what a
 * deliverer reports about each. The zod schema is the edge: it runs when the configuration is loaded.
 */
import { z } from "zod";
import type { AuditAnchor, AuditEvent } from "../audit/audit.types.js";

export const SIEM_FORMATS = ["json", "cef", "ocsf"] as const;
export type SiemFormat = (typeof SIEM_FORMATS)[number];

const destinationName = z
  .string()
  .regex(/^[a-z][a-z0-9._-]{0,63}$/, "must start with a letter and use only a-z, 0-9, '.', '_' or '-' (at most 64)");

/** Printable US-ASCII without spaces: what RFC 5424 allows in HOSTNAME and APP-NAME. */
const printUsAscii = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .regex(/^[\x21-\x7e]+$/, "must be printable US-ASCII without spaces");

const host = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[A-Za-z0-9.:-]+$/, "must be a host name or IP address (no brackets, no port)");

const duration = z.number().int().min(1).max(3_600_000);

/** What every destination shares. */
const common = {
  name: destinationName,
  format: z.enum(SIEM_FORMATS),
  /** Where a new destination starts: the first event of the chain (default), or the head when it is first seen. */
  startAt: z.enum(["beginning", "head"]).default("beginning"),
  /** Events read and sent per round (the bound on what is in flight to this destination). */
  batchSize: z.number().int().min(1).max(5000).default(200),
  /** The longest a send may take (a write waiting on the socket's drain, an HTTP answer) before it is abandoned and retried. */
  timeoutMs: duration.default(30_000),
  /** Retries back off exponentially from 500 ms up to this. */
  retryCapMs: duration.default(60_000),
};

export const syslogDestinationSchema = z.strictObject({
  ...common,
  kind: z.literal("syslog"),
  /** `tls` (RFC 5425 style, octet-counted) or `tcp` (RFC 6587 octet counting, plaintext). */
  transport: z.enum(["tcp", "tls"]),
  host,
  port: z.number().int().min(1).max(65535),
  /** PEM file of the CA(s) to trust for `tls` (the system's CAs otherwise). */
  caFile: z.string().min(1).optional(),
  /** The name the server's certificate must carry (default: `host`). */
  serverName: host.optional(),
  /** RFC 5424 facility (default 13, log audit). */
  facility: z.number().int().min(0).max(23).default(13),
  /** HOSTNAME in the header (default: this machine's host name). */
  hostname: printUsAscii(255).optional(),
  appName: printUsAscii(48).default("stint"),
  /**
   * How long a written message must go without the connection failing before it counts as delivered: syslog
   * over TCP has no acknowledgement, so what was written in this window is sent again after a failure.
   */
  settleMs: z.number().int().min(0).max(600_000).default(2000),
});

const hecUrl = z
  .string()
  .max(2000)
  .refine((value) => {
    try {
      const url = new URL(value);
      if (url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== "") return false;
      if (url.protocol === "https:") return true;
      // Plain HTTP only to a forwarder on this machine: the token must never cross a network in clear.
      return url.protocol === "http:" && /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/.test(url.hostname);
    } catch {
      return false;
    }
  }, "must be an https URL (http only to localhost/127.x/[::1]) without credentials, query or fragment");

export const hecDestinationSchema = z
  .strictObject({
    ...common,
    kind: z.literal("hec"),
    /** The event endpoint, e.g. https://splunk.example.com:8088/services/collector/event */
    url: hecUrl,
    /** The HEC token: read from this file (trimmed) ... */
    tokenFile: z.string().min(1).optional(),
    /** ... or from this environment variable. Never written in the configuration itself. */
    tokenEnv: z
      .string()
      .regex(/^[A-Z_][A-Z0-9_]*$/, "must be an environment variable name")
      .optional(),
    caFile: z.string().min(1).optional(),
    index: z.string().min(1).max(200).optional(),
    source: z.string().min(1).max(200).default("stint"),
    sourcetype: z.string().min(1).max(200).optional(),
    /**
     * Indexer acknowledgement: send a channel, and count a batch delivered only once
     * `/services/collector/ack` says it was indexed (the token must have acknowledgement on).
     */
    ack: z.boolean().default(false),
  })
  .refine((d) => (d.tokenFile === undefined) !== (d.tokenEnv === undefined), {
    message: "set exactly one of tokenFile and tokenEnv",
    path: ["tokenFile"],
  });

export const siemDestinationSchema = z.discriminatedUnion("kind", [syslogDestinationSchema, hecDestinationSchema]);

export const siemConfigSchema = z.strictObject({
  destinations: z
    .array(siemDestinationSchema)
    .max(20)
    .refine((list) => new Set(list.map((d) => d.name)).size === list.length, "destination names must be unique"),
});

export type SyslogDestination = z.output<typeof syslogDestinationSchema>;
export type HecDestination = z.output<typeof hecDestinationSchema>;
export type SiemDestination = z.output<typeof siemDestinationSchema>;
export type SiemConfig = z.output<typeof siemConfigSchema>;

/** One item of the stream: a chained event, or a signed checkpoint (the anchor the SIEM keeps). */
export type StreamItem = { kind: "event"; event: AuditEvent } | { kind: "checkpoint"; anchor: AuditAnchor };

/** Where a destination stands (GET /v1/siem/destinations). */
export interface DestinationStatus {
  name: string;
  kind: SiemDestination["kind"];
  format: SiemFormat;
  /** host:port or the URL's origin; never a token. */
  endpoint: string;
  /** The seq of the last event delivered (0: none yet). */
  deliveredSeq: number;
  /** The seq of the last signed checkpoint delivered. */
  checkpointSeq: number;
  headSeq: number;
  lagEvents: number;
  lagSeconds: number;
  deliveredAt: string | null;
  /** Whether this node delivers it now (one node of the cluster does). */
  deliveringHere: boolean;
  /** The node holding the lease, when any. */
  holder: string | null;
  /** Bytes written to the connection and not yet accepted by the kernel, on this node. */
  bufferedBytes: number;
  state: "idle" | "connecting" | "sending" | "retrying" | "standby";
  lastError: string | null;
  retries: number;
}
