/** Opening a brokered session: its row, recording, audit event, expiry timer, live feed and end. */
import type { BlobWriter } from "../../lib/blob-store.js";
import { failpoint, FailpointCrash } from "../../lib/failpoints.js";
import { newId } from "../../lib/ids.js";
import { policySpec } from "../../contract/catalog.js";
import { createRecorder, type ActiveRecorder, type RecordedBlob } from "./recorder.js";
import { approversOf } from "./live.rules.js";
import { RECORDING_EXTENSION } from "../../contract/recording.js";
import * as sessionStore from "./sessions.store.js";
import {
  type BrokeredSession,
  type EndReason,
  type SessionEnd,
  type SessionKind,
  type UpstreamMysql,
  type UpstreamPostgres,
  type UpstreamSsh,
} from "./sessions.types.js";
import type { LiveEntry, SessionsCore } from "./sessions.core.js";
import { mentionsPassword, redactSqlSecrets } from "../../lib/sql-redact.js";

const MAX_TIMER_MS = 2 ** 31 - 1;

export type OpenSession = ReturnType<typeof createOpenSession>;

export function createOpenSession(core: SessionsCore) {
  const { store, audit, clock, blobs, logger, live, metrics, context, refuse, abort } = core;

  /** Opens the session row, the recording and the audit event; everything a proxy gets back. */
  async function openSession<U extends UpstreamPostgres | UpstreamMysql | UpstreamSsh>(input: {
    kind: SessionKind;
    principal: { id: string; name: string };
    activation: sessionStore.ActivationRow;
    clientAddress: string | null;
    upstream: U;
    credential: string;
    certificate?: { serial: string; keyId: string };
  }): Promise<BrokeredSession<U>> {
    const { kind, principal, activation, upstream } = input;
    const policy = core.policyOf(activation);
    const actor = core.userActor(principal.id, principal.name);
    const id = newId();
    const now = clock.now();
    const who = {
      actor,
      clientAddress: input.clientAddress,
      details: { role: activation.role_name, target: activation.target_name },
    };
    if (policy.moderator && kind !== "ssh")
      return refuse(
        kind,
        "MODERATION_UNSUPPORTED",
        `Sessions of ${activation.role_name} need a moderator, and only SSH sessions can be moderated.`,
        who,
      );
    const spec = policySpec.safeParse(activation.policy_spec);
    const approvers = spec.success ? approversOf(spec.data) : { users: [], groups: [], manager: false };
    // The user's manager only matters when the policy names managers as approvers (who may then watch).
    const userManagerId =
      core.deps.live && approvers.manager
        ? ((
            await store.db
              .selectFrom("principals")
              .select("manager_id")
              .where("id", "=", principal.id)
              .executeTakeFirst()
          )?.manager_id ?? null)
        : null;
    const month = now.toISOString().slice(0, 7).replace("-", "/");
    const recordingKey = `recordings/${month}/${id}.${RECORDING_EXTENSION[kind]}`;
    let writer: BlobWriter | null = null;
    try {
      const maxBytes = core.deps.recordingMaxBytes;
      writer = await blobs.create(recordingKey, maxBytes === undefined ? {} : { maxBytes });
    } catch (error) {
      metrics.recordingFailures.inc({ kind });
      logger.error({ err: error, session: id, blobs: blobs.dir }, "the recording store cannot be written to");
      if (policy.recording === "required")
        return refuse(
          kind,
          "RECORDING_UNAVAILABLE",
          `Recording is required for ${activation.role_name} and the recording store cannot be written to, so the session is refused; tell your Stint administrator.`,
          who,
        );
    }
    const login = upstream.kind === "ssh" ? upstream.username : upstream.user;
    try {
      await store.transaction(async (tx) => {
        await sessionStore.insertSession(tx, {
          id,
          kind,
          principalId: principal.id,
          requestId: activation.request_id,
          roleId: activation.role_id,
          targetId: activation.target_id,
          login,
          clientAddress: input.clientAddress,
          node: core.node,
          now,
          recordingKey: writer ? recordingKey : null,
        });
        await audit.append(tx, actor, context(input.clientAddress), {
          action: "session.started",
          outcome: "success",
          subject: `session:${id}`,
          details: {
            kind,
            role: activation.role_name,
            target: activation.target_name,
            request: activation.request_id,
            login,
            credential: input.credential,
            recording: writer ? policy.recording : "unavailable",
            ...(input.certificate ? { certificate: input.certificate } : {}),
          },
        });
      });
    } catch (error) {
      await writer?.finish().catch(() => undefined);
      throw error;
    }
    metrics.sessionsOpened.inc({ kind, outcome: "opened" });
    metrics.liveGauge.inc({ kind });

    const controller = new AbortController();
    const entry: LiveEntry = { id, requestId: activation.request_id, controller, causeAt: null, timer: undefined };
    live.set(id, entry);
    // A timer at the activation's expiry ends the session; when it fires it asks the database first,
    // because an extension moves the expiry (the session then lives on, to the new one).
    const expired = (at: number) =>
      abort(
        entry,
        {
          reason: "activation_ended",
          message: `Your activation of ${activation.role_name} expired, so this session is over.`,
        },
        at,
      );
    const armExpiry = (at: number) => {
      clearTimeout(entry.timer);
      const wait = Math.max(0, at - clock.now().getTime());
      if (wait >= MAX_TIMER_MS || controller.signal.aborted) return;
      entry.timer = setTimeout(() => void atExpiry(at), wait);
      entry.timer.unref();
    };
    const atExpiry = async (at: number) => {
      let current: { state: string; expires_at: Date | null } | undefined;
      try {
        current = await sessionStore.activationExpiry(store.db, activation.request_id);
      } catch (error) {
        // Unknown whether it was extended: fail closed, at the expiry known.
        logger.warn({ err: error, session: id }, "could not read the activation's expiry; ending the session");
        return expired(at);
      }
      const expiresAt = current?.expires_at ? new Date(current.expires_at).getTime() : at;
      if (current?.state === "active" && expiresAt > clock.now().getTime()) return armExpiry(expiresAt);
      expired(Math.min(at, expiresAt));
    };
    armExpiry(new Date(activation.expires_at!).getTime());

    // Watchers see the recording's lines as they are written; a moderated session waits for its moderator.
    const feed = core.deps.live?.open({
      id,
      kind,
      user: principal.name,
      role: activation.role_name,
      target: activation.target_name,
      startedAt: now,
      facts: {
        userId: principal.id,
        userManagerId,
        approvers,
        moderator: policy.moderator ?? null,
      },
      abort: (end) => abort(entry, end, Date.now()),
    });

    const recorder: ActiveRecorder = createRecorder({
      kind,
      writer,
      meta: {
        session: id,
        user: principal.name,
        role: activation.role_name,
        target: activation.target_name,
        login,
        startedAt: now,
      },
      clock,
      ...(feed ? { tap: (line: string) => feed.push(line) } : {}),
      onFailure: (error) => {
        metrics.recordingFailures.inc({ kind });
        logger.error({ err: error, session: id }, "a session recording failed");
        if (policy.recording !== "required") return;
        const limit = (error as NodeJS.ErrnoException).code === "EFBIG" ? core.deps.recordingMaxBytes : undefined;
        const message =
          limit === undefined
            ? `Recording is required for ${activation.role_name} and it failed, so the session is ended.`
            : `This session's recording reached its size limit (${limit} bytes, STINT_RECORDING_MAX_BYTES) and recording is required for ${activation.role_name}, so the session is ended.`;
        abort(entry, { reason: "recording_failed", message }, clock.now().getTime());
      },
    });

    const bytes = { up: 0, down: 0 };
    let refusals = 0;
    let transfers = 0;
    let ended: Promise<void> | null = null;
    const end = (reason: EndReason, detail?: string): Promise<void> => {
      ended ??= (async () => {
        clearTimeout(entry.timer);
        live.delete(id);
        feed?.close(
          controller.signal.aborted ? (controller.signal.reason as SessionEnd).message : (detail ?? `ended: ${reason}`),
        );
        metrics.liveGauge.dec({ kind });
        const endedAt = clock.now();
        if (entry.causeAt !== null)
          metrics.killLatency.observe(
            { cause: reason === "killed" ? "killed" : "activation_ended" },
            Math.max(0, (Date.now() - entry.causeAt) / 1000),
          );
        let recording: RecordedBlob | null = null;
        try {
          recording = await recorder.finish();
          if (recording?.unwritten) {
            const { lines, bytes: lost, statements, omitted } = recording.unwritten;
            const counts = { lines, bytes: lost, statements: (statements?.length ?? 0) + (omitted?.count ?? 0) };
            logger.error(
              { session: id, ...counts },
              "a session recording lost lines it took; session.ended keeps them",
            );
          }
        } catch (error) {
          if (error instanceof FailpointCrash) throw error; // the node died while recording: nothing more
          metrics.recordingFailures.inc({ kind });
          logger.error({ err: error, session: id }, "a session recording could not be completed");
        }
        await failpoint("session.end.after-recording");
        const signalReason = controller.signal.aborted ? (controller.signal.reason as SessionEnd) : null;
        const sentence = detail ?? signalReason?.message ?? null;
        try {
          await store.transaction(async (tx) => {
            const fields = {
              recording: recording ? { sha256: recording.sha256, bytes: recording.bytes } : null,
              bytesUp: bytes.up,
              bytesDown: bytes.down,
            };
            const row = await sessionStore.endSession(tx, id, {
              ...fields,
              now: endedAt,
              reason,
              detail: sentence,
              endedBy: null,
            });
            if (!row) await sessionStore.completeEndedSession(tx, id, fields);
            await audit.append(tx, reason === "client_closed" ? actor : core.BROKER, context(input.clientAddress), {
              action: "session.ended",
              outcome: "success",
              subject: `session:${id}`,
              ...(sentence ? { reason: sentence } : {}),
              details: {
                kind,
                user: principal.name,
                role: activation.role_name,
                target: activation.target_name,
                endReason: reason,
                bytesUp: bytes.up,
                bytesDown: bytes.down,
                // partial: the recording failed (a full disk); it holds what reached the disk before.
                recording: recording
                  ? {
                      key: recording.key,
                      sha256: recording.sha256,
                      bytes: recording.bytes,
                      ...(recording.partial ? { partial: true } : {}),
                      // limit: it stopped at STINT_RECORDING_MAX_BYTES (it holds everything before).
                      ...(recording.limit !== undefined ? { limit: recording.limit } : {}),
                      // unwritten: lines it took that the failing disk lost; a database session's
                      // statements among them ran (sent once taken), as the query log holds them.
                      ...(recording.unwritten ? { unwritten: recording.unwritten } : {}),
                    }
                  : null,
              },
            });
            await failpoint("session.end.before-commit");
          });
        } catch (error) {
          if (error instanceof FailpointCrash) throw error;
          logger.error({ err: error, session: id }, "could not record the end of a session");
        }
      })();
      return ended;
    };

    return {
      id,
      user: principal.name,
      role: activation.role_name,
      target: activation.target_name,
      policy,
      upstream,
      recorder,
      ...(feed?.moderation ? { moderation: feed.moderation } : {}),
      signal: controller.signal,
      countBytes(direction, n) {
        bytes[direction] += n;
        metrics.bytesRelayed.inc({ kind, direction }, n);
      },
      queryRefused(event) {
        // One audit event per refusal up to a cap per session (a client looping on a refused statement
        // must not flood the log); the query log keeps every one.
        refusals += 1;
        if (refusals > core.MAX_AUDITED_REFUSALS) return;
        audit
          .record(actor, context(input.clientAddress), {
            action: "session.query_refused",
            outcome: "denied",
            subject: `session:${id}`,
            reason: event.message,
            details: {
              role: activation.role_name,
              target: activation.target_name,
              rule: event.rule,
              protocol: event.protocol,
              // The audit log (and the SIEM), like the query log, never gets a password literal.
              statement: redactSqlSecrets(event.statement.slice(0, 2_000), mentionsPassword(event.statement)),
              ...(refusals === core.MAX_AUDITED_REFUSALS ? { lastAudited: true } : {}),
            },
          })
          .catch((error: unknown) => logger.error({ err: error, session: id }, "could not audit a refused query"));
      },
      fileTransfer(event) {
        // Every file in the audit log up to a cap per session (a recursive copy of a whole tree must not
        // flood it); the recording keeps every one.
        transfers += 1;
        if (transfers > core.MAX_AUDITED_TRANSFERS) return;
        audit
          .record(actor, context(input.clientAddress), {
            action: "session.file_transfer",
            outcome: event.outcome,
            subject: `session:${id}`,
            ...(event.reason ? { reason: event.reason } : {}),
            details: {
              role: activation.role_name,
              target: activation.target_name,
              protocol: event.protocol,
              direction: event.direction,
              path: event.path.slice(0, 4_096),
              bytes: event.bytes,
              sha256: event.sha256,
              ...(event.rule ? { rule: event.rule } : {}),
              ...(transfers === core.MAX_AUDITED_TRANSFERS ? { lastAudited: true } : {}),
            },
          })
          .catch((error: unknown) => logger.error({ err: error, session: id }, "could not audit a file transfer"));
      },
      channelRefused(event) {
        // Counted with the refused queries: one client looping on a refused channel must not flood the log.
        refusals += 1;
        if (refusals > core.MAX_AUDITED_REFUSALS) return;
        audit
          .record(actor, context(input.clientAddress), {
            action: "session.channel_refused",
            outcome: "denied",
            subject: `session:${id}`,
            reason: event.reason,
            details: { role: activation.role_name, target: activation.target_name, subsystem: event.subsystem },
          })
          .catch((error: unknown) => logger.error({ err: error, session: id }, "could not audit a refused channel"));
      },
      end,
    };
  }

  return openSession;
}
