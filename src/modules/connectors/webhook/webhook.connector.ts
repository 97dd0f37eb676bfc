/**
 * The webhook connector: Stint POSTs a signed JSON call to an endpoint the customer
 * runs, which does the provisioning itself (cloud IAM, SaaS). The contract for the
 * endpoint is docs/connectors/webhook.md; the signature is the one notification
 * webhooks use (`Stint-Signature: t=…,v1=…`).
 */
import { randomUUID } from "node:crypto";
import { formatDuration } from "../../../lib/duration.js";
import { IDEMPOTENCY_HEADER, SIGNATURE_HEADER, webhookSignatureHeader } from "../../notify/index.js";
import {
  ConnectorError,
  refused,
  unavailable,
  type CallOptions,
  type Connector,
  type ConnectorTarget,
  type GrantSpec,
} from "../connector.types.js";
import {
  checkAddress,
  checkEntitlement,
  checkLogin,
  checkOptions,
  checkSecret,
  classifyStatus,
  extraHeaders,
  operationKey,
  parseAccounts,
  parseHolders,
  parseTestDetail,
  requestBody,
  timeoutMs,
  type Parsed,
  type WebhookAction,
} from "./webhook.rules.js";

export { checkAddress, DOES_NOT_REPORT_ACCOUNTS, DOES_NOT_REPORT_HOLDERS } from "./webhook.rules.js";

/** Answers to observe/discover can be long lists; of anything else Stint reads only the start. */
const MAX_LIST_BODY_BYTES = 16 * 1024 * 1024;
const MAX_OTHER_BODY_BYTES = 64 * 1024;

/** What a 2xx answer's body is for: nothing (provision, revoke), a detail (test), a list (observe, discover). */
type SuccessBody = "ignored" | "short" | "list";
const USER_AGENT = "Stint-Connector/1";

interface CallResult {
  status: number;
  text: string;
}

/** Removes the secret, and header values long enough to be keys, from text an endpoint sent back. */
function redact(text: string, target: ConnectorTarget): string {
  const secrets = [target.credential ?? "", ...Object.values(extraHeaders(target.options))].filter(
    (s) => s.length >= 8,
  );
  let out = text;
  for (const secret of secrets) out = out.split(secret).join("[redacted]");
  return out;
}

/** Reads at most `limit` bytes of the body; the rest is not read (the stream is cancelled). */
async function readLimited(response: Response, limit: number): Promise<{ text: string; complete: boolean }> {
  if (!response.body) return { text: "", complete: true };
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      return { text: Buffer.concat(chunks).subarray(0, limit).toString("utf8"), complete: false };
    }
  }
  return { text: Buffer.concat(chunks).toString("utf8"), complete: true };
}

/** Why there is no answer, without the URL (its query may carry a token) or the secret. */
function noAnswer(error: unknown, host: string, call: CallOptions, timer: AbortSignal, timeout: number): Error {
  if (call.signal?.aborted) return unavailable(`the call to ${host} was cancelled`);
  if (timer.aborted) return unavailable(`${host} did not answer within ${formatDuration(timeout)}`);
  const cause = (error as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  const code = typeof cause?.code === "string" && /^[A-Z0-9_]{1,40}$/.test(cause.code) ? ` (${cause.code})` : "";
  return unavailable(`cannot reach ${host}${code}`);
}

async function post(
  target: ConnectorTarget,
  action: WebhookAction,
  fields: { login: string | null; entitlement: Record<string, unknown> | null; id: string },
  call: CallOptions,
  successBody: SuccessBody,
): Promise<CallResult> {
  // Checked again here: the service checks at apply time, but a call must never go out unsigned or in clear text.
  const secretProblems = checkSecret(target.credential);
  if (secretProblems.length > 0) throw refused(`webhook target "${target.name}": ${secretProblems[0]}`);
  const addressProblems = checkAddress(target.address);
  if (addressProblems.length > 0) throw refused(`webhook target "${target.name}": ${addressProblems[0]}`);
  const optionProblems = checkOptions(target.options);
  if (optionProblems.length > 0) throw refused(`webhook target "${target.name}": ${optionProblems[0]}`);

  const secret = target.credential as string;
  const url = new URL(target.address);
  const timeout = timeoutMs(target.options);
  const now = new Date();
  const body = requestBody({ version: 1, action, target: target.name, ...fields, sentAt: now.toISOString() });
  const timer = AbortSignal.timeout(timeout);
  const signal = call.signal ? AbortSignal.any([call.signal, timer]) : timer;
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: {
        ...extraHeaders(target.options),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        // One connection per call, closed after it: nothing stays open between calls.
        connection: "close",
        [SIGNATURE_HEADER]: webhookSignatureHeader(secret, now, body),
        [IDEMPOTENCY_HEADER]: fields.id,
      },
      body,
      signal,
      // A redirect would re-send a signed call somewhere nobody configured.
      redirect: "manual",
    });
    const ok = response.status >= 200 && response.status < 300;
    if (ok && successBody === "ignored") {
      // The change is done; a body, however long, is not read.
      await response.body?.cancel().catch(() => undefined);
      return { status: response.status, text: "" };
    }
    const limit = ok && successBody === "list" ? MAX_LIST_BODY_BYTES : MAX_OTHER_BODY_BYTES;
    const { text, complete } = await readLimited(response, limit);
    if (ok && successBody === "list" && !complete)
      throw refused(`the endpoint answered with a body Stint cannot read: longer than ${limit} bytes`);
    // A long test detail is dropped; a long error is cut (only its start is quoted anyway).
    if (ok && !complete) return { status: response.status, text: "" };
    return { status: response.status, text: redact(text, target) };
  } catch (error) {
    if (error instanceof ConnectorError) throw error;
    throw noAnswer(error, url.host, call, timer, timeout);
  }
}

/** Throws for anything but 2xx, with the endpoint's own words. */
function expectOk(action: WebhookAction, result: CallResult, target: ConnectorTarget): void {
  const outcome = classifyStatus(action, result.status, result.text);
  if (outcome.kind === "refused") throw refused(redact(outcome.message, target));
  if (outcome.kind === "unavailable") throw unavailable(redact(outcome.message, target));
}

function parsed<T>(result: Parsed<T>, target: ConnectorTarget): T {
  if (!result.ok) throw refused(redact(result.message, target));
  return result.value;
}

async function change(
  action: "provision" | "revoke",
  target: ConnectorTarget,
  grant: GrantSpec,
  call: CallOptions = {},
): Promise<void> {
  const problems = [...checkLogin(grant.login), ...checkEntitlement(grant.entitlement)];
  if (problems.length > 0) throw refused(problems[0] as string);
  // The caller's operation id tells two activations of the same role apart; without one, a key from the content.
  const id = call.operationId ?? operationKey(action, target.name, grant.login, grant.entitlement);
  const result = await post(
    target,
    action,
    { login: grant.login, entitlement: grant.entitlement, id },
    call,
    "ignored",
  );
  expectOk(action, result, target);
}

/** Reads get a fresh key each time: an endpoint that cached answers by key would report stale holders. */
const readKey = (action: WebhookAction) => `${action}:${randomUUID()}`;

export const webhookConnector: Connector = {
  kind: "webhook",
  checkOptions,
  checkEntitlement,
  checkLogin,
  checkAddress,

  async test(target, call = {}) {
    const result = await post(target, "test", { login: null, entitlement: null, id: readKey("test") }, call, "short");
    expectOk("test", result, target);
    const detail = parseTestDetail(result.text);
    const host = new URL(target.address).host;
    return { detail: detail ?? `${host} accepted a signed test call (${result.status})` };
  },

  provision: (target, grant, call) => change("provision", target, grant, call),
  revoke: (target, grant, call) => change("revoke", target, grant, call),

  async observe(target, entitlement, call = {}) {
    const problems = checkEntitlement(entitlement);
    if (problems.length > 0) throw refused(problems[0] as string);
    const result = await post(target, "observe", { login: null, entitlement, id: readKey("observe") }, call, "list");
    expectOk("observe", result, target);
    return parsed(parseHolders(result.text), target);
  },

  async discover(target, call = {}) {
    const result = await post(
      target,
      "discover",
      { login: null, entitlement: null, id: readKey("discover") },
      call,
      "list",
    );
    expectOk("discover", result, target);
    return parsed(parseAccounts(result.text), target);
  },
};
