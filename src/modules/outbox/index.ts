/** The outbox module: side effects as rows, committed with the change that causes them. */
import { createOutboxService } from "./outbox.service.js";

export type { OutboxService } from "./outbox.service.js";
export * from "./outbox.types.js";
export {
  DEFAULT_BACKOFF,
  assertBackoffPolicy,
  backoffCeilingMs,
  backoffMs,
  decideAfterFailure,
  safeErrorMessage,
} from "./outbox.rules.js";
export * as outboxStore from "./outbox.store.js";
export { createOutboxService };

export function createOutboxModule(deps: Parameters<typeof createOutboxService>[0]) {
  return { service: createOutboxService(deps) };
}
