/**
 * Approvals inbox: the pending requests this user may decide now, with what a reviewer needs to
 * judge them (role risk, reason, ticket, the requester's earlier requests for the role, time
 * waiting, stage progress), approve and deny dialogs, and bulk approval of low-risk requests.
 * Risk, policy, history and the approvals so far come from each request's approver context
 * (GET /v1/activation-requests/{id}/context), which being its approver is enough to read, whatever the
 * platform role. Each request says ahead what approving it asks of the approver's own MFA (its `approverMfa`
 * hint: a badge, and the approval dialog offers the step-up before the server has to refuse). After a decision
 * the page says what was done; someone who may see all requests is told how many pending ones wait for other
 * approvers, and where to find them.
 */
import {
  Alert,
  Badge,
  Button,
  Card,
  Checkbox,
  Group,
  Modal,
  SimpleGrid,
  Stack,
  Text,
  Title,
  Anchor,
} from "@mantine/core";
import { useCallback, useEffect, useRef, useState } from "react";
import { usePolling } from "../polling.js";
import {
  approveBody,
  denyBody,
  type ActivationRequestDto,
  type ApproverContextDto,
  type RequestListItemDto,
} from "../../../src/contract/requests.js";
import { api, ApiError, hasRole } from "../api.js";
import { needAhead, useStepUpRetry } from "./passkeys/StepUpPrompt.js";
import { PageMessages } from "../page-messages.js";
import { useSelection } from "../selection.js";
import { formatAge, useNow, zodFieldErrors } from "../ui.js";
import { ReasonField } from "../reason-field.js";
import { ApproverMfaBadge, RiskBadge, StateBadge, stageInWords, type Risk } from "./requests/shared.js";

type Decision = "approve" | "deny";
/** Each request's approver context by request id: known, not readable (null: decided meanwhile), or not asked yet. */
type ContextMap = Record<string, ApproverContextDto | null>;

/** Changes when the request's approvals change, so that its context is asked again. */
const contextKey = (r: ActivationRequestDto) => `${r.id}:${r.stageIndex}:${r.decisions.length}`;

const whose = (r: ActivationRequestDto) => `${r.requester}'s request for ${r.role}`;

export default function Approvals() {
  const [items, setItems] = useState<RequestListItemDto[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [contexts, setContexts] = useState<ContextMap>({});
  const selected = useSelection();
  const [deciding, setDeciding] = useState<{ request: RequestListItemDto; decision: Decision } | null>(null);
  const [bulk, setBulk] = useState<ActivationRequestDto[] | null>(null);
  /** What the last decision did, in words. */
  const [notice, setNotice] = useState<string | null>(null);
  /** Pending requests this user may see but not decide (null: not allowed to list them all). */
  const [elsewhere, setElsewhere] = useState<number | null>(null);
  const asked = useRef(new Set<string>());
  const now = useNow(1000);

  const load = useCallback(async () => {
    try {
      const list = (await api<{ items: RequestListItemDto[] }>("GET", "/v1/activation-requests?scope=inbox")).items;
      setItems(list);
      selected.keepListed(list);
      setError(null);
      if (hasRole("admin", "security", "auditor")) {
        const all = (
          await api<{ items: ActivationRequestDto[] }>(
            "GET",
            "/v1/activation-requests?scope=all&state=pending&limit=500",
          )
        ).items;
        setElsewhere(all.filter((r) => !list.some((mine) => mine.id === r.id)).length);
      }
    } catch (e) {
      setError((e as Error).message);
    }
  }, []);
  usePolling(load, 5000);

  // Each request's context, once per request and stage of approvals: only its approvers may read it, as here.
  useEffect(() => {
    for (const r of items ?? []) {
      const key = contextKey(r);
      if (asked.current.has(key)) continue;
      asked.current.add(key);
      void api<ApproverContextDto>("GET", `/v1/activation-requests/${r.id}/context`).then(
        (context) => setContexts((old) => ({ ...old, [r.id]: context })),
        (e: unknown) => {
          // Decided by someone else meanwhile: the next refresh drops it from the list.
          if (e instanceof ApiError && e.status === 404) setContexts((old) => ({ ...old, [r.id]: null }));
          else setError((e as Error).message);
        },
      );
    }
  }, [items]);

  const riskOf = (r: ActivationRequestDto): Risk | undefined => contexts[r.id]?.role.risk;
  /** Why a request cannot be approved together with others (null: it can). */
  const notTogether = (r: RequestListItemDto) =>
    riskOf(r) !== "low"
      ? "Only low-risk requests can be approved together"
      : needAhead(r.approverMfa)
        ? "Approving this one needs a fresh MFA check of yours: approve it on its own"
        : null;
  const chosen = (items ?? []).filter((r) => selected.has(r.id) && !notTogether(r));

  return (
    <Stack>
      <Title order={1} size="h2">
        Approvals
      </Title>
      <Text c="gray.7">Pending requests waiting for your decision. The list refreshes every 5 seconds.</Text>
      <PageMessages error={error} notice={notice} onDismissNotice={() => setNotice(null)} />
      {elsewhere !== null && elsewhere > 0 && (
        <Text data-testid="pending-elsewhere">
          {elsewhere} pending request{elsewhere === 1 ? "" : "s"} {elsewhere === 1 ? "waits" : "wait"} for other
          approvers: see{" "}
          <Anchor
            href="/requests"
            onClick={(event) => {
              event.preventDefault();
              window.history.pushState(null, "", "/requests");
              window.dispatchEvent(new PopStateEvent("popstate"));
            }}
          >
            Requests
          </Anchor>
          .
        </Text>
      )}
      {items && items.length > 0 && (
        <Group>
          <Button onClick={() => setBulk(chosen)} disabled={chosen.length === 0}>
            Approve selected ({chosen.length})
          </Button>
          <Text size="sm" c="gray.7">
            Only low-risk requests can be approved together.
          </Text>
        </Group>
      )}
      {items && items.length === 0 && <Text>Nothing is waiting for you.</Text>}
      <SimpleGrid cols={{ base: 1, lg: 2 }}>
        {items?.map((r) => (
          <Card key={r.id} withBorder data-testid={`request-${r.id}`} component="article" aria-label={whose(r)}>
            <Stack gap="xs">
              <Group justify="space-between" wrap="wrap" gap="xs">
                <Group gap="xs" wrap="wrap">
                  <Checkbox
                    aria-label={`Select ${whose(r)}`}
                    checked={selected.has(r.id)}
                    disabled={notTogether(r) !== null}
                    title={notTogether(r) ?? undefined}
                    onChange={(e) => selected.toggle(r.id, e.currentTarget.checked)}
                  />
                  <Text fw={700}>{r.requester}</Text>
                  <Text>requests</Text>
                  <Text fw={700}>{r.role}</Text>
                  {riskOf(r) && <RiskBadge risk={riskOf(r)!} />}
                  {r.breakGlass && <Badge color="red.9">break-glass</Badge>}
                  <ApproverMfaBadge hint={r.approverMfa} />
                </Group>
                <Text size="sm" c="gray.7">
                  waiting {formatAge(r.submittedAt, now)}
                </Text>
              </Group>
              <Text size="sm">
                For {r.duration}
                {r.ticket ? `, ticket ${r.ticket}` : ", no ticket"}
              </Text>
              <Text size="sm" style={{ overflowWrap: "anywhere" }}>
                <strong>Reason:</strong> {r.reason}
              </Text>
              <Text size="sm">{stageInWords(r)}</Text>
              <SoFar context={contexts[r.id]} />
              <PolicyLine context={contexts[r.id]} />
              <History request={r} context={contexts[r.id]} now={now} />
              <Group justify="flex-end" gap="sm">
                <Button
                  variant="default"
                  onClick={() => setDeciding({ request: r, decision: "deny" })}
                  aria-label={`Deny ${whose(r)}`}
                >
                  Deny
                </Button>
                <Button
                  onClick={() => setDeciding({ request: r, decision: "approve" })}
                  aria-label={`Approve ${whose(r)}`}
                >
                  Approve
                </Button>
              </Group>
            </Stack>
          </Card>
        ))}
      </SimpleGrid>
      {deciding && (
        <DecisionDialog
          request={deciding.request}
          decision={deciding.decision}
          onClose={(done) => {
            setDeciding(null);
            if (done) setNotice(done);
            void load();
          }}
        />
      )}
      {bulk && (
        <BulkDialog
          requests={bulk}
          onClose={(done) => {
            setBulk(null);
            // Cancelled: the selection stays (and focus goes back to its still enabled button).
            if (done) {
              selected.set([]);
              setNotice(done);
            }
            void load();
          }}
        />
      )}
    </Stack>
  );
}

/** The approvals (and any denial) so far, across stages, with their reasons. */
function SoFar({ context }: { context: ApproverContextDto | null | undefined }) {
  if (!context || context.decisions.length === 0) return null;
  return (
    <Stack gap={2} data-testid="decisions-so-far">
      {context.decisions.map((d) => (
        <Text size="sm" key={`${d.stage}:${d.approver}`} style={{ overflowWrap: "anywhere" }}>
          {d.decision === "approve" ? "Approved" : "Denied"} by {d.approver} at stage {d.stage + 1}
          {d.reason ? `: ${d.reason}` : ""}
        </Text>
      ))}
    </Stack>
  );
}

/** The policy the request was submitted under, in one line. */
function PolicyLine({ context }: { context: ApproverContextDto | null | undefined }) {
  if (!context) return null;
  const p = context.policy;
  const parts = [
    `policy ${p.name}`,
    `up to ${p.maxDuration}`,
    p.mfaRequired ? "MFA" : "no MFA",
    p.ticketRequired ? "ticket required" : null,
    `${p.approvalStages} approval stage${p.approvalStages === 1 ? "" : "s"}`,
    p.maxExtensions > 0 ? `${p.maxExtensions} extension${p.maxExtensions === 1 ? "" : "s"}` : "no extensions",
    p.windows ? "activation windows" : null,
  ].filter(Boolean);
  return (
    <Text size="sm" c="gray.7" data-testid="policy-line">
      {context.role.target} ({context.role.targetKind}): {parts.join(", ")}
    </Text>
  );
}

function History({
  request,
  context,
  now,
}: {
  request: ActivationRequestDto;
  context: ApproverContextDto | null | undefined;
  now: number;
}) {
  if (!context) return null;
  const earlier = context.history;
  if (earlier.length === 0)
    return (
      <Text size="sm" c="gray.7">
        No earlier requests by {request.requester} for this role.
      </Text>
    );
  return (
    <Stack gap={4} data-testid="requester-history">
      <Text size="sm">
        {context.moreHistory ? `The latest ${earlier.length}` : earlier.length} earlier request
        {earlier.length === 1 ? "" : "s"} by {request.requester} for this role:
      </Text>
      {earlier.map((h) => {
        const by = h.decidedBy.map((d) => `${d.decision === "approve" ? "approved" : "denied"} by ${d.approver}`);
        return (
          <Group key={h.id} gap="xs" wrap="nowrap" align="flex-start">
            <StateBadge state={h.state} />
            <Text size="sm" c="gray.7" style={{ overflowWrap: "anywhere" }}>
              {formatAge(h.submittedAt, now)} ago, {h.duration}
              {by.length > 0 ? ` (${by.join(", ")})` : ""}: {h.reason}
            </Text>
          </Group>
        );
      })}
    </Stack>
  );
}

function DecisionDialog({
  request,
  decision,
  onClose,
}: {
  request: RequestListItemDto;
  decision: Decision;
  /** With what was done, in words, after a decision; without, when cancelled. */
  onClose: (done?: string) => void;
}) {
  const [reason, setReason] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const approving = decision === "approve";
  // Where the inbox said approving needs a fresh MFA check of this approver's, the step-up is offered at once,
  // before the server has to refuse (which it still does, wording its own need, when the hint is stale).
  const stepUp = useStepUpRetry("approve", () => void submit(), approving ? needAhead(request.approverMfa) : null);

  async function submit() {
    setError(null);
    if (!approving && !reason.trim())
      return setErrors({ reason: `Say why you deny it: ${request.requester} reads your reason.` });
    const parsed = approving ? approveBody.safeParse(reason.trim() ? { reason } : {}) : denyBody.safeParse({ reason });
    if (!parsed.success) return setErrors(zodFieldErrors(parsed.error));
    setErrors({});
    setBusy(true);
    try {
      const after = await api<ActivationRequestDto>(
        "POST",
        `/v1/activation-requests/${request.id}/${approving ? "approvals" : "denials"}`,
        parsed.data,
      );
      onClose(
        approving
          ? `You approved ${whose(request)}${after.state === "pending" ? "; it now waits for the next stage's approvers." : "."}`
          : `You denied ${whose(request)}; ${request.requester} sees your reason.`,
      );
    } catch (e) {
      // The policy asks the approver for a recent MFA check: step up here, then the approval goes again.
      if (approving && stepUp.caught(e)) {
        setBusy(false);
        return;
      }
      const fields = e instanceof ApiError ? e.fieldErrors() : {};
      if (e instanceof ApiError && e.code === "JUSTIFICATION_INVALID") fields.reason = e.message;
      setErrors(fields);
      if (Object.keys(fields).length === 0) setError((e as Error).message);
      setBusy(false);
    }
  }

  return (
    <Modal
      opened
      onClose={() => onClose()}
      title={`${approving ? "Approve" : "Deny"} ${whose(request)}`}
      closeButtonProps={{ "aria-label": "Close" }}
    >
      <Stack>
        <Text size="sm">
          {request.requester} asks for {request.role} for {request.duration}: {request.reason}
        </Text>
        {error && (
          <Alert color="red" role="alert">
            {error}
          </Alert>
        )}
        <ReasonField
          label={approving ? "Reason (optional)" : "Reason (required)"}
          description={
            approving ? "Kept with the decision in the audit log." : `Required: ${request.requester} reads this.`
          }
          value={reason}
          onChange={setReason}
          error={errors.reason}
          autoFocus
        />
        {stepUp.prompt}
        <Group justify="flex-end">
          <Button variant="default" onClick={() => onClose()}>
            Cancel
          </Button>
          <Button color={approving ? undefined : "red.9"} onClick={() => void submit()} loading={busy}>
            {approving ? "Approve" : "Deny"}
          </Button>
        </Group>
      </Stack>
    </Modal>
  );
}

function BulkDialog({ requests, onClose }: { requests: ActivationRequestDto[]; onClose: (done?: string) => void }) {
  const [reason, setReason] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [failures, setFailures] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState(false);

  async function submit() {
    const parsed = approveBody.safeParse(reason.trim() ? { reason } : {});
    if (!parsed.success) return setErrors(zodFieldErrors(parsed.error));
    setErrors({});
    setBusy(true);
    const failed: string[] = [];
    for (const r of requests) {
      try {
        await api("POST", `/v1/activation-requests/${r.id}/approvals`, parsed.data);
      } catch (e) {
        failed.push(`${whose(r)}: ${(e as Error).message}`);
      }
    }
    setBusy(false);
    const n = requests.length;
    if (failed.length === 0) return onClose(`You approved ${n} request${n === 1 ? "" : "s"}.`);
    setFailures(failed);
    setDone(true);
  }

  return (
    <Modal
      opened
      onClose={() => onClose()}
      title={`Approve ${requests.length} low-risk request${requests.length === 1 ? "" : "s"}`}
      closeButtonProps={{ "aria-label": "Close" }}
    >
      <Stack>
        <Stack gap={2}>
          {requests.map((r) => (
            <Text size="sm" key={r.id}>
              {r.requester}: {r.role} for {r.duration}
            </Text>
          ))}
        </Stack>
        {failures.length > 0 && (
          <Alert color="red" role="alert" title="Some approvals were refused">
            {failures.map((f) => (
              <Text size="sm" key={f}>
                {f}
              </Text>
            ))}
          </Alert>
        )}
        {!done && <ReasonField label="Reason (optional)" value={reason} onChange={setReason} error={errors.reason} />}
        <Group justify="flex-end">
          <Button
            variant="default"
            onClick={() =>
              onClose(
                done ? `You approved ${requests.length - failures.length} of ${requests.length} requests.` : undefined,
              )
            }
          >
            {done ? "Close" : "Cancel"}
          </Button>
          {!done && (
            <Button onClick={() => void submit()} loading={busy}>
              Approve all
            </Button>
          )}
        </Group>
      </Stack>
    </Modal>
  );
}
