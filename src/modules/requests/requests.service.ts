/**
 * Activation requests: submit, decide, cancel, extend, deactivate, revoke, and the scheduler's expiries and
 * stage timeouts. Every call loads its facts inside one transaction (the request row locked), applies the pure
 * rules, and writes the change, its audit events and its outbox rows together. Refusals are audited too, in
 * their own transaction. Each use case is a file of its own; this factory only wires them.
 */
import { createRequestCore } from "./activation.js";
import { createDecide } from "./decide.js";
import { createLifecycle } from "./lifecycle.js";
import { createQueries } from "./queries.js";
import { createRequestContext, type RequestServiceDeps } from "./request-context.js";
import { createScheduler } from "./scheduler.js";
import { createSubmit } from "./submit.js";

export type { RequestDto, RequestEvent, RequestServiceDeps } from "./request-context.js";
export type { CheckAnswer } from "./queries.js";
export { expiredDetails } from "./scheduler.js";

export function createRequestService(deps: RequestServiceDeps) {
  const core = createRequestCore(createRequestContext(deps));
  return {
    ...createSubmit(core),
    ...createDecide(core),
    ...createLifecycle(core),
    ...createQueries(core),
    ...createScheduler(core),
  };
}

export type RequestService = ReturnType<typeof createRequestService>;
