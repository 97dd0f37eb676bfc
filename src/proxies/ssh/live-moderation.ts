/**
 * Moderated SSH sessions at the proxy: a channel (shell, exec, subsystem) of a session whose policy names
 * moderators is held, paused, until a moderator joins in the web UI; the user's terminal says so. Nothing
 * is opened on the target before that, so not one byte of a shell runs unmoderated. Port forwards are
 * refused until then.
 */
import type { BrokeredSession } from "../../modules/sessions/sessions.types.js";

export const WAITING_MESSAGE = "Stint: waiting for a moderator to join this session…";

/** Whether the session may open things upstream now (no moderation, or a moderator joined). */
export function moderationAdmits(session: Pick<BrokeredSession, "moderation">): boolean {
  return !session.moderation || session.moderation.admitted();
}

/**
 * Runs `open` at once when the session needs no moderator or has one; otherwise tells the user (on the
 * channel's stderr) and runs it once a moderator joined, unless the session is ending by then.
 */
export function whenModerated(
  session: Pick<BrokeredSession, "moderation" | "signal">,
  tell: (text: string) => void,
  ending: () => boolean,
  open: () => void,
): void {
  const moderation = session.moderation;
  if (!moderation || moderation.admitted()) return open();
  tell(`${WAITING_MESSAGE}\r\n`);
  void moderation.whenAdmitted().then((moderator) => {
    if (ending() || session.signal.aborted) return;
    tell(`Stint: ${moderator} joined as moderator; the session starts.\r\n`);
    open();
  });
}
