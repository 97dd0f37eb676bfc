/** How a proxied SSH session ends, and the one guard every channel and socket call goes through. */
import type { Logger } from "../../lib/logger.js";
import type { BrokeredSession, EndReason, SessionEnd } from "../../modules/sessions/sessions.types.js";

export function endOf(signal: AbortSignal): SessionEnd {
  const reason = signal.reason as Partial<SessionEnd> | undefined;
  return {
    reason: reason?.reason ?? "killed",
    message: typeof reason?.message === "string" ? reason.message : "the session was ended.",
  };
}

export async function endSession(
  session: BrokeredSession,
  reason: EndReason,
  detail: string | undefined,
  log: Logger,
): Promise<void> {
  try {
    await session.end(reason, detail);
    log.info({ reason }, "ssh session ended");
  } catch (error) {
    log.error({ err: error }, "ending the ssh session failed");
  }
}

export function safely(work: () => unknown): void {
  try {
    work();
  } catch {
    // A channel or connection already gone: nothing left to do.
  }
}
