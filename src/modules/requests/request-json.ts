/**
 * An activation request's answer (`c.activationRequest`: submit, deactivate, approve, …) written from its listed
 * fields, their types checked, instead of parsed by zod on its way out: zod's object walk, its UUID and
 * date-time patterns and a copy of the object cost ~4% of the server's CPU per elevation (two answers each).
 * As for the check API's answer (`checkAnswerJson`): only the listed fields are written, in the contract's
 * order, so nothing unlisted can leak; an answer of another shape goes to zod, which refuses it as on any route.
 * The texts' formats (ids, ISO times) are not checked again: the service writes them (`dtoOf`). The zod schema
 * stays the route's schema: the OpenAPI document is unchanged. A test holds it to zod's output.
 */
import type { serializerCompiler } from "fastify-type-provider-zod";
import type { z } from "zod";
import * as c from "../../contract/requests.js";

type Dto = z.infer<typeof c.activationRequest>;

const STATES = new Set<unknown>(c.activationRequest.shape.state.options);

/** Text that needs no escaping in JSON (names, ISO times, UUIDs): quoted as it is, else by JSON.stringify. */
const PLAIN_TEXT = /^[\w .:+-]*$/;
const text = (value: string) => (PLAIN_TEXT.test(value) ? `"${value}"` : JSON.stringify(value));
const isText = (value: unknown): value is string => typeof value === "string";
const isTextOrNull = (value: unknown): value is string | null => value === null || typeof value === "string";
const textOrNull = (value: string | null) => (value === null ? "null" : text(value));
const isInt = (value: unknown): value is number => Number.isSafeInteger(value);

function stagesJson(stages: unknown): string | undefined {
  if (!Array.isArray(stages)) return undefined;
  let out = "[";
  for (let i = 0; i < stages.length; i++) {
    const stage = stages[i] as Dto["stages"][number] | null;
    if (
      typeof stage !== "object" ||
      stage === null ||
      !isText(stage.name) ||
      !isInt(stage.count) ||
      !Array.isArray(stage.approvals) ||
      typeof stage.escalated !== "boolean"
    )
      return undefined;
    let approvals = "[";
    for (let k = 0; k < stage.approvals.length; k++) {
      const approver: unknown = stage.approvals[k];
      if (!isText(approver)) return undefined;
      approvals += (k > 0 ? "," : "") + text(approver);
    }
    out +=
      (i > 0 ? "," : "") +
      `{"name":${text(stage.name)},"count":${stage.count},"approvals":${approvals}],"escalated":${stage.escalated}}`;
  }
  return `${out}]`;
}

function decisionsJson(decisions: unknown): string | undefined {
  if (!Array.isArray(decisions)) return undefined;
  let out = "[";
  for (let i = 0; i < decisions.length; i++) {
    const d = decisions[i] as Dto["decisions"][number] | null;
    if (
      typeof d !== "object" ||
      d === null ||
      !isInt(d.stage) ||
      !isText(d.approver) ||
      (d.decision !== "approve" && d.decision !== "deny") ||
      !isTextOrNull(d.reason) ||
      !isText(d.decidedAt)
    )
      return undefined;
    out +=
      (i > 0 ? "," : "") +
      `{"stage":${d.stage},"approver":${text(d.approver)},"decision":"${d.decision}","reason":${textOrNull(d.reason)},` +
      `"decidedAt":${text(d.decidedAt)}}`;
  }
  return `${out}]`;
}

/** An optional nullable time: absent (undefined) is not written, as zod leaves it out. */
const optionalTime = (key: string, value: string | null | undefined) =>
  value === undefined ? "" : `,"${key}":${textOrNull(value)}`;

/** The answer's JSON text from its listed fields, or undefined when `data` is not of that shape. */
export function activationRequestJson(data: unknown): string | undefined {
  const r = data as Dto;
  if (typeof r !== "object" || r === null) return undefined;
  if (
    !isText(r.id) ||
    !isText(r.role) ||
    !isText(r.requester) ||
    !STATES.has(r.state) ||
    !isText(r.duration) ||
    !isText(r.reason) ||
    !isTextOrNull(r.ticket) ||
    typeof r.breakGlass !== "boolean" ||
    !isTextOrNull(r.extendsRequestId) ||
    !isInt(r.stageIndex) ||
    !isTextOrNull(r.stageDeadline) ||
    !isText(r.submittedAt) ||
    !isTextOrNull(r.decidedAt) ||
    !isTextOrNull(r.activatedAt) ||
    !isTextOrNull(r.expiresAt) ||
    !isTextOrNull(r.endedAt) ||
    !isTextOrNull(r.endReason) ||
    !isTextOrNull(r.endedBy) ||
    !isInt(r.extensions) ||
    (r.startAt !== undefined && !isTextOrNull(r.startAt)) ||
    (r.pendingExpiresAt !== undefined && !isTextOrNull(r.pendingExpiresAt))
  )
    return undefined;
  const stages = stagesJson(r.stages);
  const decisions = stages === undefined ? undefined : decisionsJson(r.decisions);
  if (decisions === undefined) return undefined;
  return (
    `{"id":${text(r.id)},"role":${text(r.role)},"requester":${text(r.requester)},"state":"${r.state}",` +
    `"duration":${text(r.duration)},"reason":${text(r.reason)},"ticket":${textOrNull(r.ticket)},` +
    `"breakGlass":${r.breakGlass},"extendsRequestId":${textOrNull(r.extendsRequestId)},"stages":${stages},` +
    `"stageIndex":${r.stageIndex},"stageDeadline":${textOrNull(r.stageDeadline)},"submittedAt":${text(r.submittedAt)},` +
    `"decidedAt":${textOrNull(r.decidedAt)},"activatedAt":${textOrNull(r.activatedAt)},` +
    `"expiresAt":${textOrNull(r.expiresAt)},"endedAt":${textOrNull(r.endedAt)},"endReason":${textOrNull(r.endReason)},` +
    `"endedBy":${textOrNull(r.endedBy)},"extensions":${r.extensions}` +
    `${optionalTime("startAt", r.startAt)}${optionalTime("pendingExpiresAt", r.pendingExpiresAt)},"decisions":${decisions}}`
  );
}

/**
 * The serializer compiler of the routes that answer an activation request: `activationRequestJson` for the
 * statuses whose schema is `c.activationRequest`, zod's for the others and for an answer of another shape.
 */
export function activationRequestSerializer(zod: typeof serializerCompiler): typeof serializerCompiler {
  return (route) => {
    const checked = zod(route);
    if (route.schema !== c.activationRequest) return checked;
    return (data: unknown) => activationRequestJson(data) ?? checked(data);
  };
}
