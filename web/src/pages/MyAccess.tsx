/**
 * My access: eligible roles with their policy in plain words, active ones with a live countdown,
 * one-click deactivate and extend, and the activate dialog (duration, reason, ticket, MFA step-up)
 * that states the policy's rules before anything is typed, says each error in words under its own
 * field, and follows the request through its approval stages. A pending request can be cancelled; a
 * denied one says who denied it and why. A request may ask to start later (approved ahead, active from
 * then): the card says when it starts, and it can be cancelled until then. An active PostgreSQL role offers
 * "Open SQL console" (sql/SqlConsole.tsx: queries through the PostgreSQL proxy, recorded, under its rules); an
 * active SSH host role offers "Open terminal" (terminal/WebTerminal.tsx: a shell through the SSH proxy, recorded).
 */
import {
  Alert,
  Autocomplete,
  Badge,
  Button,
  Card,
  Group,
  Modal,
  PasswordInput,
  Select,
  SimpleGrid,
  Stack,
  Text,
  TextInput,
  Textarea,
  Title,
} from "@mantine/core";
import { lazy, Suspense, useCallback, useEffect, useState } from "react";
import { usePolling } from "../polling.js";
import { submitActivation, extendBody, type ActivationRequestDto } from "../../../src/contract/requests.js";
import { denialInWords, StageSteps } from "./requests/shared.js";
import { api, ApiError } from "../api.js";
import { formatCountdown, policyInWords, riskColor, useNow, zodFieldErrors } from "../ui.js";
import { ReasonField } from "../reason-field.js";
import { shortId } from "../../../src/contract/short-id.js";
import { MyGroups } from "./MyGroups.js";
import { PasskeyStepUp } from "./passkeys/PasskeyStepUp.js";

/** The terminal's code (xterm.js) loads when one is opened, not with My access. */
const WebTerminal = lazy(() => import("./terminal/WebTerminal.js").then((m) => ({ default: m.WebTerminal })));
/** The SQL console's code loads when one is opened, not with My access. */
const SqlConsole = lazy(() => import("./sql/SqlConsole.js").then((m) => ({ default: m.SqlConsole })));

export interface MyRole {
  role: string;
  description: string | null;
  risk: "low" | "medium" | "high" | "critical";
  /** The role's target and its kind (postgres, ssh-host…). */
  target?: string | null;
  targetKind?: string | null;
  eligibleUntil: string | null;
  policy: {
    defaultDuration: string;
    maxDuration: string;
    approvalRequired: boolean;
    approvalStages: number;
    mfaRequired: boolean;
    mfaMethods?: string[];
    ticketRequired: boolean;
    /** The pattern a ticket must match whole; null or absent: any ticket. */
    ticketPattern?: string | null;
    reasonMinLength?: number;
    breakGlass: boolean;
    maxExtensions: number;
  };
  state: string | null;
  requestId: string | null;
  expiresAt: string | null;
  /** The start of a request approved ahead (state approved); null otherwise. */
  startAt?: string | null;
}

const DURATIONS = ["15m", "30m", "1h", "2h", "4h", "8h", "12h", "1d"];
const toMs = (d: string) => Number(d.slice(0, -1)) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[d.slice(-1) as "s"]!;

export default function MyAccess() {
  const [roles, setRoles] = useState<MyRole[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [activating, setActivating] = useState<MyRole | null>(null);
  const [extending, setExtending] = useState<MyRole | null>(null);
  /** The active PostgreSQL role whose SQL console is open. */
  const [consoleRole, setConsoleRole] = useState<string | null>(null);
  /** The active SSH host role whose terminal is open. */
  const [terminalRole, setTerminalRole] = useState<string | null>(null);
  /** Each role's latest request of mine (to say a denied one was denied, by whom and why). */
  const [latest, setLatest] = useState<Record<string, ActivationRequestDto>>({});
  /** What the last action did, in words ("prod-db-reader is deactivated."). */
  const [notice, setNotice] = useState<string | null>(null);
  const now = useNow(1000);

  const load = useCallback(async () => {
    try {
      const [mine, requests] = await Promise.all([
        api<{ items: MyRole[] }>("GET", "/v1/me/roles"),
        api<{ items: ActivationRequestDto[] }>("GET", "/v1/activation-requests?scope=mine&limit=100"),
      ]);
      const byRole: Record<string, ActivationRequestDto> = {};
      for (const r of requests.items)
        if (!r.extendsRequestId && (!byRole[r.role] || byRole[r.role]!.submittedAt < r.submittedAt)) byRole[r.role] = r;
      setRoles(mine.items);
      setLatest(byRole);
      setError(null);
    } catch (e) {
      setError((e as Error).message);
    }
  }, []);
  usePolling(load, 5000);

  async function deactivate(role: MyRole) {
    setNotice(null);
    try {
      await api("POST", `/v1/me/roles/${encodeURIComponent(role.role)}/deactivate`);
      setNotice(`${role.role} is deactivated: you no longer hold it.`);
      await load();
    } catch (e) {
      setError((e as Error).message);
    }
  }

  async function cancel(role: MyRole) {
    if (!role.requestId) return;
    setNotice(null);
    try {
      await api("POST", `/v1/activation-requests/${role.requestId}/cancel`);
      setNotice(`Your request for ${role.role} is cancelled.`);
      await load();
    } catch (e) {
      setError((e as Error).message);
    }
  }

  function status(r: MyRole): string {
    const startAt = r.startAt ?? latest[r.role]?.startAt ?? null;
    if (r.state === "approved" && startAt) return `Scheduled: starts ${new Date(startAt).toLocaleString()}`;
    if (r.state === "pending")
      return startAt ? `Waiting for approval; to start ${new Date(startAt).toLocaleString()}` : "Waiting for approval";
    if (r.state) return `State: ${r.state}`;
    const last = latest[r.role];
    return last?.state === "denied" ? denialInWords(last) : "Not active";
  }

  const active = roles?.filter((r) => r.state === "active") ?? [];
  return (
    <Stack>
      <Title order={1} size="h2">
        My access
      </Title>
      <MyGroups />
      {error && (
        <Alert color="red" role="alert">
          {error}
        </Alert>
      )}
      {notice && (
        <Alert color="teal.9" role="status" withCloseButton closeButtonLabel="Dismiss" onClose={() => setNotice(null)}>
          {notice}
        </Alert>
      )}
      <Title order={2} size="h4">
        Active now
      </Title>
      {active.length === 0 && <Text c="gray.7">Nothing is active: you hold no standing privilege.</Text>}
      <SimpleGrid cols={{ base: 1, md: 2 }}>
        {active.map((r) => (
          <Card key={r.role} withBorder aria-label={`${r.role} active`}>
            <Group justify="space-between">
              <Text fw={600}>{r.role}</Text>
              <Badge color="green.9">active</Badge>
            </Group>
            <Text size="sm" data-testid={`countdown-${r.role}`} aria-live="polite">
              {r.expiresAt ? `${formatCountdown(Date.parse(r.expiresAt) - now)} left` : ""}
            </Text>
            <Group mt="sm">
              <Button color="red" variant="light" onClick={() => void deactivate(r)}>
                Deactivate {r.role}
              </Button>
              {r.policy.maxExtensions > 0 && (
                <Button variant="default" onClick={() => setExtending(r)}>
                  Extend
                </Button>
              )}
              {r.targetKind === "postgres" && (
                <Button
                  variant="default"
                  onClick={() => setConsoleRole(r.role)}
                  aria-label={`Open SQL console for ${r.role}`}
                >
                  Open SQL console
                </Button>
              )}
              {r.targetKind === "ssh-host" && (
                <Button
                  variant="default"
                  onClick={() => setTerminalRole(r.role)}
                  aria-label={`Open terminal for ${r.role}`}
                >
                  Open terminal
                </Button>
              )}
            </Group>
          </Card>
        ))}
      </SimpleGrid>
      <Title order={2} size="h4">
        Eligible roles
      </Title>
      {roles && roles.length === 0 && <Text c="gray.7">You are not eligible for any role yet.</Text>}
      <SimpleGrid cols={{ base: 1, md: 2, lg: 3 }}>
        {roles?.map((r) => (
          <Card key={r.role} withBorder>
            <Group justify="space-between" wrap="nowrap">
              <Text fw={600}>{r.role}</Text>
              <Badge color={riskColor(r.risk)} variant="outline">
                {r.risk}
              </Badge>
            </Group>
            {r.description && <Text size="sm">{r.description}</Text>}
            <Text size="sm" c="gray.7" mt={4}>
              {policyInWords(r.policy)}
            </Text>
            <Group mt="sm" justify="space-between" wrap="nowrap" align="flex-start">
              <Text size="sm" data-testid={`status-${r.role}`} style={{ overflowWrap: "anywhere" }}>
                {status(r)}
              </Text>
              {r.state === "pending" || (r.state === "approved" && r.startAt) ? (
                <Button variant="default" onClick={() => void cancel(r)} aria-label={`Cancel request for ${r.role}`}>
                  Cancel request
                </Button>
              ) : (
                <Button
                  onClick={() => setActivating(r)}
                  disabled={r.state === "active" || r.state === "provisioning" || r.state === "approved"}
                  aria-label={`Activate ${r.role}`}
                >
                  Activate
                </Button>
              )}
            </Group>
          </Card>
        ))}
      </SimpleGrid>
      {activating && (
        <ActivateDialog
          role={activating}
          onClose={() => {
            setActivating(null);
            void load();
          }}
        />
      )}
      {terminalRole && (
        <Suspense fallback={null}>
          <WebTerminal role={terminalRole} onClose={() => setTerminalRole(null)} />
        </Suspense>
      )}
      {consoleRole && (
        <Suspense fallback={null}>
          <SqlConsole role={consoleRole} onClose={() => setConsoleRole(null)} />
        </Suspense>
      )}
      {extending && (
        <ExtendDialog
          role={extending}
          onClose={() => {
            setExtending(null);
            void load();
          }}
        />
      )}
    </Stack>
  );
}

function ActivateDialog({ role, onClose }: { role: MyRole; onClose: () => void }) {
  const durations = DURATIONS.filter((d) => toMs(d) <= toMs(role.policy.maxDuration));
  const [duration, setDuration] = useState(role.policy.defaultDuration);
  const [reason, setReason] = useState("");
  const [ticket, setTicket] = useState("");
  /** A later start, as the browser's local date and time ("2030-01-02T09:00"); empty: as soon as approved. */
  const [start, setStart] = useState("");
  const [otp, setOtp] = useState("");
  const [needOtp, setNeedOtp] = useState(false);
  const [needPasskey, setNeedPasskey] = useState(false);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [request, setRequest] = useState<ActivationRequestDto | null>(null);

  useEffect(() => {
    if (!request || !["pending", "approved", "provisioning"].includes(request.state)) return;
    const timer = setInterval(() => {
      void api<ActivationRequestDto>("GET", `/v1/activation-requests/${request.id}`).then(setRequest, () => undefined);
    }, 1500);
    return () => clearInterval(timer);
  }, [request]);

  const minLength = Math.max(1, role.policy.reasonMinLength ?? 1);
  const pattern = role.policy.ticketPattern ?? null;

  async function submit() {
    setError(null);
    const body = {
      role: role.role,
      duration,
      reason: reason.trim(),
      ...(ticket.trim() ? { ticket: ticket.trim() } : {}),
      ...(start && Number.isFinite(Date.parse(start)) ? { startAt: new Date(start).toISOString() } : {}),
    };
    // The policy's rules the page knows, then the API's own schema: what the server would refuse is
    // said here, in words, under its field, and nothing is sent.
    const problems: Record<string, string> = {};
    const length = body.reason.length;
    if (length === 0) problems.reason = `Say why you need this role (at least ${minLength} characters).`;
    else if (length < minLength)
      problems.reason = `Your reason has ${length} character${length === 1 ? "" : "s"}; this role needs at least ${minLength}. Say what you will do and why.`;
    if (role.policy.ticketRequired && !body.ticket)
      problems.ticket = `This role needs a ticket reference${pattern ? ` matching ${pattern}` : ""}.`;
    if (!/^\d{1,9}[smhd]$/.test(duration))
      problems.duration = "Give a duration as a number and a unit: 45m, 3h or 1d (s, m, h, d).";
    else if (toMs(duration) > toMs(role.policy.maxDuration))
      problems.duration = `This role can be held for at most ${role.policy.maxDuration}; ask for that or less.`;
    else if (toMs(duration) < 5_000) problems.duration = "An activation lasts at least 5s.";
    if (start && !Number.isFinite(Date.parse(start))) problems.startAt = "Give a date and a time, or leave it empty.";
    else if (start && Date.parse(start) < Date.now() - 60_000)
      problems.startAt = "That time has passed: give a later one, or leave it empty to start as soon as approved.";
    const parsed = submitActivation.safeParse(body);
    if (!parsed.success)
      for (const [field, message] of Object.entries(zodFieldErrors(parsed.error)))
        problems[field] ??= inWords(field, message);
    if (Object.keys(problems).length > 0 || !parsed.success) {
      setErrors(problems);
      return;
    }
    setErrors({});
    setBusy(true);
    try {
      if (needOtp && otp.trim()) await api("POST", "/v1/auth/step-up", { otp: otp.trim() });
      setRequest(await api<ActivationRequestDto>("POST", "/v1/activation-requests", parsed.data));
    } catch (e) {
      if (e instanceof ApiError && e.code === "MFA_STEP_UP_REQUIRED") {
        setNeedOtp(true);
        setError("This role needs a fresh one-time code from your authenticator app.");
      } else if (e instanceof ApiError && e.code === "WEBAUTHN_REQUIRED") {
        setNeedPasskey(true);
        setError(e.message);
      } else if (e instanceof ApiError) {
        const fields = e.fieldErrors();
        if (e.code === "JUSTIFICATION_INVALID") {
          // The server says which input each problem is about (details.fields); older servers do not.
          const byField = (e.details?.fields ?? {}) as { reason?: string; ticket?: string };
          if (byField.reason) fields.reason = byField.reason;
          if (byField.ticket) fields.ticket = byField.ticket;
          if (!byField.reason && !byField.ticket) fields.reason = e.message;
        }
        if (e.code === "DURATION_TOO_LONG" || e.code === "DURATION_INVALID") fields.duration = e.message;
        if (e.code === "MFA_INVALID") fields.otp = e.message;
        if (e.code === "START_IN_PAST" || e.code === "START_TOO_FAR" || e.code === "START_NOT_ALLOWED")
          fields.startAt = e.message;
        setErrors(fields);
        if (Object.keys(fields).length === 0) setError(e.message);
      } else setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  }

  const stages = request?.stages ?? [];
  return (
    <Modal opened onClose={onClose} title={`Activate ${role.role}`} size="lg">
      {request ? (
        <Stack>
          <Text>
            Request <code>{shortId(request.id)}</code>: <strong>{request.state}</strong>
          </Text>
          {stages.length > 0 && <StageSteps request={request} />}
          {request.state === "approved" && request.startAt && (
            <Alert color="blue">
              Approved ahead: it starts {new Date(request.startAt).toLocaleString()} and lasts {request.duration} from
              then. You can cancel it until then.
            </Alert>
          )}
          {request.state === "active" && request.expiresAt && (
            <Alert color="green">Active until {new Date(request.expiresAt).toLocaleString()}.</Alert>
          )}
          {request.state === "denied" && <Alert color="red">{denialInWords(request)}</Alert>}
          {["failed", "cancelled"].includes(request.state) && (
            <Alert color="red">{request.endReason ?? request.decisions.at(-1)?.reason ?? request.state}</Alert>
          )}
          <Button onClick={onClose}>Close</Button>
        </Stack>
      ) : (
        <Stack>
          <Text size="sm" c="gray.7">
            {policyInWords(role.policy)}
          </Text>
          {error && (
            <Alert color="red" role="alert">
              {error}
            </Alert>
          )}
          <Autocomplete
            label="Duration"
            description={`Any duration up to ${role.policy.maxDuration}, like 45m or 3h.`}
            data={durations}
            value={duration}
            onChange={(v) => setDuration(v.trim())}
            error={errors.duration}
          />
          <ReasonField
            description={`What you will do and why, at least ${minLength} character${minLength === 1 ? "" : "s"}; reviewers read this.`}
            value={reason}
            onChange={setReason}
            error={errors.reason}
          />
          <TextInput
            label={role.policy.ticketRequired ? "Ticket (required)" : "Ticket (optional)"}
            description={
              pattern
                ? `A ticket reference matching ${pattern}.`
                : role.policy.ticketRequired
                  ? "A ticket reference (any form)."
                  : undefined
            }
            value={ticket}
            onChange={(e) => setTicket(e.currentTarget.value)}
            error={errors.ticket}
          />
          {!role.policy.breakGlass && (
            <TextInput
              type="datetime-local"
              label="Start (optional)"
              description="Leave empty to start as soon as approved. A later start is approved ahead and begins then; the duration counts from the start."
              value={start}
              onChange={(e) => setStart(e.currentTarget.value)}
              error={errors.startAt}
            />
          )}
          {needOtp && (
            <PasswordInput
              label="One-time code"
              value={otp}
              onChange={(e) => setOtp(e.currentTarget.value)}
              error={errors.otp}
              autoComplete="one-time-code"
            />
          )}
          {needOtp && (
            <PasskeyStepUp
              label="Or confirm with passkey and request"
              onDone={() => {
                setNeedOtp(false);
                void submit();
              }}
            />
          )}
          {needPasskey && (
            <PasskeyStepUp
              label="Confirm with passkey and request"
              onDone={() => {
                setNeedPasskey(false);
                void submit();
              }}
            />
          )}
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>
              Cancel
            </Button>
            <Button onClick={() => void submit()} loading={busy}>
              Request access
            </Button>
          </Group>
        </Stack>
      )}
    </Modal>
  );
}

function ExtendDialog({ role, onClose }: { role: MyRole; onClose: () => void }) {
  const [by, setBy] = useState("30m");
  const [reason, setReason] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const minLength = Math.max(1, role.policy.reasonMinLength ?? 1);
  async function submit() {
    const length = reason.trim().length;
    if (length < minLength)
      return setErrors({
        reason:
          length === 0
            ? `Say why you need more time (at least ${minLength} characters).`
            : `Your reason has ${length} character${length === 1 ? "" : "s"}; this role needs at least ${minLength}.`,
      });
    const parsed = extendBody.safeParse({ by, reason: reason.trim() });
    if (!parsed.success)
      return setErrors(
        Object.fromEntries(Object.entries(zodFieldErrors(parsed.error)).map(([f, m]) => [f, inWords(f, m)])),
      );
    try {
      await api("POST", `/v1/me/roles/${encodeURIComponent(role.role)}/extensions`, parsed.data);
      onClose();
    } catch (e) {
      if (e instanceof ApiError && e.code === "JUSTIFICATION_INVALID")
        setErrors({ reason: ((e.details?.fields ?? {}) as { reason?: string }).reason ?? e.message });
      else setError((e as Error).message);
    }
  }
  return (
    <Modal opened onClose={onClose} title={`Extend ${role.role}`}>
      <Stack>
        {error && (
          <Alert color="red" role="alert">
            {error}
          </Alert>
        )}
        <Select label="By" data={DURATIONS.slice(0, 5)} value={by} onChange={(v) => v && setBy(v)} error={errors.by} />
        <Textarea
          label="Reason"
          description={`Why you need more time, at least ${minLength} character${minLength === 1 ? "" : "s"}.`}
          value={reason}
          onChange={(e) => setReason(e.currentTarget.value)}
          error={errors.reason}
        />
        <Button onClick={() => void submit()}>Extend</Button>
      </Stack>
    </Modal>
  );
}

/** A schema's message in words a person acts on ("Too small: expected string…" says nothing to them). */
function inWords(field: string, message: string): string {
  if (field === "reason" && /too small/i.test(message)) return "Say why: the reason must not be empty.";
  if (/too big/i.test(message)) return `The ${field} is too long.`;
  if (/too small/i.test(message)) return `The ${field} must not be empty.`;
  return message;
}
