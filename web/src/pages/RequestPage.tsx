/**
 * One activation request at `/requests/<id>`: where the Approve and Deny links of notifications lead.
 * It shows the request and, while it waits for a decision, lets a named approver decide it. A link's
 * one-time token (read from the fragment by ../decision-link.ts) goes along in the decision's body for
 * the action it was made for; it is not a credential: the approver is signed in and the server checks
 * that the policy names them. Where approving asks for a fresh MFA check of the approver's own, the page says so
 * ahead (the approvals inbox's `approverMfa` for this request) and offers the step-up before any refusal.
 */
import { Alert, Button, Group, Loader, Stack, Text, Title } from "@mantine/core";
import { useCallback, useEffect, useState } from "react";
import {
  approveBody,
  denyBody,
  type ActivationRequestDto,
  type ApproverMfaHintDto,
  type RequestListItemDto,
} from "../../../src/contract/requests.js";
import { api, ApiError, currentSession } from "../api.js";
import { decisionLinkFor, forgetDecisionToken } from "../decision-link.js";
import { zodFieldErrors } from "../ui.js";
import { ReasonField } from "../reason-field.js";
import { needAhead, useStepUpRetry } from "./passkeys/StepUpPrompt.js";
import { ApproverMfaBadge, RequestDetail } from "./requests/shared.js";

type Decision = "approve" | "deny";

export default function RequestPage({ id }: { id: string }) {
  const [request, setRequest] = useState<ActivationRequestDto | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [reason, setReason] = useState("");
  const [fieldError, setFieldError] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<Decision | null>(null);
  const stepUp = useStepUpRetry("approve", () => void decide("approve"));
  const [mfaHint, setMfaHint] = useState<ApproverMfaHintDto | undefined>(undefined);
  const link = decisionLinkFor(id);

  const load = useCallback(async () => {
    try {
      setRequest(await api<ActivationRequestDto>("GET", `/v1/activation-requests/${encodeURIComponent(id)}`));
      setLoadError(null);
    } catch (e) {
      setLoadError(
        e instanceof ApiError && (e.status === 404 || e.status === 403)
          ? "There is no such request, or you may not see it."
          : (e as Error).message,
      );
    }
  }, [id]);
  useEffect(() => void load(), [load]);

  // Someone else's pending request: if it waits for this user, the inbox says what approving asks of their MFA.
  const role = request?.state === "pending" && request.requester !== currentSession()?.user.name ? request.role : null;
  useEffect(() => {
    if (!role) return;
    const query = `scope=inbox&role=${encodeURIComponent(role)}`;
    void api<{ items: RequestListItemDto[] }>("GET", `/v1/activation-requests?${query}`).then(
      ({ items }) => {
        const hint = items.find((item) => item.id === id)?.approverMfa;
        setMfaHint(hint);
        const ahead = needAhead(hint);
        if (ahead) stepUp.ask(ahead);
      },
      () => undefined, // only a hint: the decision asks anyway
    );
  }, [role, id]);

  async function decide(decision: Decision) {
    const text = reason.trim();
    if (decision === "deny" && !text) {
      setFieldError(`Say why you deny it: ${request?.requester ?? "the requester"} reads your reason.`);
      return;
    }
    const token = link?.token && link.decide === decision ? link.token : undefined;
    const body = { ...(text || decision === "deny" ? { reason: text } : {}), ...(token ? { linkToken: token } : {}) };
    const parsed = decision === "approve" ? approveBody.safeParse(body) : denyBody.safeParse(body);
    if (!parsed.success) {
      setFieldError(zodFieldErrors(parsed.error).reason ?? "Give a reason.");
      return;
    }
    setFieldError(null);
    setBusy(true);
    try {
      const path = decision === "approve" ? "approvals" : "denials";
      setRequest(await api<ActivationRequestDto>("POST", `/v1/activation-requests/${id}/${path}`, parsed.data));
      setDone(decision);
      setError(null);
      forgetDecisionToken();
    } catch (e) {
      // The approval needs a fresh second factor of the approver's own: nothing was decided and the link's token
      // was not spent, so after the step-up the same decision goes again, with it.
      if (decision === "approve" && stepUp.caught(e)) return;
      // A spent or expired link token must not block a signed-in approver: the next try goes without it.
      if (token) forgetDecisionToken();
      const fields = e instanceof ApiError ? e.fieldErrors() : {};
      if (fields.reason) setFieldError(fields.reason);
      else setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  }

  if (loadError)
    return (
      <Stack>
        <Title order={1} size="h2">
          Request
        </Title>
        <Alert color="red" role="alert">
          {loadError}
        </Alert>
      </Stack>
    );
  if (!request) return <Loader aria-label="Loading" />;

  const mine = request.requester === currentSession()?.user.name;
  const pending = request.state === "pending";
  return (
    <Stack maw={760}>
      <Title order={1} size="h2">
        {request.requester}&apos;s request for {request.role}
      </Title>
      {done && (
        <Alert color="green" role="status">
          You {done === "approve" ? "approved" : "denied"} this request.
        </Alert>
      )}
      {error && (
        <Alert color="red" role="alert">
          {error}
        </Alert>
      )}
      {pending && !mine && !done && (
        <Stack gap="xs">
          {link?.decide && (
            <Text>
              You opened the <strong>{link.decide === "approve" ? "Approve" : "Deny"}</strong> link of a notification.
              Check the request below, then decide.
            </Text>
          )}
          {mfaHint?.required && (
            <Group>
              <ApproverMfaBadge hint={mfaHint} />
            </Group>
          )}
          <ReasonField
            label="Reason (optional when approving)"
            description={`Required to deny: ${request.requester} reads it.`}
            value={reason}
            onChange={setReason}
            error={fieldError}
          />
          {stepUp.prompt}
          <Group>
            <Button onClick={() => void decide("approve")} loading={busy}>
              Approve
            </Button>
            <Button color="red.9" onClick={() => void decide("deny")} loading={busy}>
              Deny
            </Button>
          </Group>
        </Stack>
      )}
      {!pending && !done && <Text>This request is {request.state}: it takes no decision.</Text>}
      {/* The detail's own headings are h3 (under a dialog's title elsewhere): one h2 keeps the order. */}
      <Title order={2} size="h4">
        The request
      </Title>
      <RequestDetail request={request} />
    </Stack>
  );
}
