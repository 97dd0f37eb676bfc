import { z } from "zod";
import { isoTime } from "./common.js";

/** One SIEM destination's delivery state (GET /v1/siem/destinations). Never a token. */
export const siemDestinationStatus = z.object({
  name: z.string(),
  kind: z.enum(["syslog", "hec"]),
  format: z.enum(["json", "cef", "ocsf"]),
  /** `tls://host:port`, `tcp://host:port` or the HEC URL without query. */
  endpoint: z.string(),
  /** The seq of the last audit event delivered (at least once); 0 when none yet. */
  deliveredSeq: z.number().int(),
  /** The seq of the last signed checkpoint delivered. */
  checkpointSeq: z.number().int(),
  headSeq: z.number().int(),
  lagEvents: z.number().int(),
  lagSeconds: z.number(),
  deliveredAt: isoTime.nullable(),
  /** Whether the node that answered delivers this destination (one node of the cluster does). */
  deliveringHere: z.boolean(),
  holder: z.string().nullable(),
  /** Bytes waiting in the answering node's connection buffer (bounded by backpressure). */
  bufferedBytes: z.number().int(),
  state: z.enum(["idle", "connecting", "sending", "retrying", "standby"]),
  lastError: z.string().nullable(),
  retries: z.number().int(),
});

export const siemDestinationList = z.object({ items: z.array(siemDestinationStatus) });
export type SiemDestinationStatus = z.infer<typeof siemDestinationStatus>;
