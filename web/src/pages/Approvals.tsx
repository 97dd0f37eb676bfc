/**
 * Approvals inbox: the pending requests this user may decide now, with what a reviewer needs to
 * judge them (role risk, reason, ticket, the requester's earlier requests for the role, time
 * waiting, stage progress), approve and deny dialogs, and bulk approval of low-risk requests.
 * Risk and history come from endpoints a plain approver may not be allowed to read: the page says so
 * and works without them. After a decision the page says what was done; someone who may see all
 * requests is told how many pending ones wait for other approvers, and where to find them.
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
  Textarea,
  Title,
  Anchor,
} from "@mantine/core";
import { useCallback, useEffect, useRef, useState } from "react";
import type { RoleDto } from "../../../src/contract/catalog-api.js";
import { approveBody, denyBody, type ActivationRequestDto } from "../../../src/contract/requests.js";
import { api, ApiError, hasRole } from "../api.js";
import { formatAge, useNow, zodFieldErrors } from "../ui.js";
import { RiskBadge, StateBadge, stageInWords, type Risk } from "./requests/shared.js";

type Decision = "approve" | "deny";
/** A role's risk: known, not visible to this user (null), or not asked yet (absent). */
type RiskMap = Record<string, Risk | null>;
/** Requests for a role, newest first; null when this user may not list them. */
type HistoryMap = Record<string, ActivationRequestDto[] | null>;

const whose = (r: ActivationRequestDto) => `${r.requester}'s request for ${r.role}`;

export default function Approvals() {
  const [items, setItems] = useState<ActivationRequestDto[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [risks, setRisks] = useState<RiskMap>({});
  const [history, setHistory] = useState<HistoryMap>({});
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [deciding, setDeciding] = useState<{ request: ActivationRequestDto; decision: Decision } | null>(null);
  const [bulk, setBulk] = useState<ActivationRequestDto[] | null>(null);
  /** What the last decision did, in words. */
  const [notice, setNotice] = useState<string | null>(null);
  /** Pending requests this user may see but not decide (null: not allowed to list them all). */
  const [elsewhere, setElsewhere] = useState<number | null>(null);
  const asked = useRef(new Set<string>());
  const historyForbidden = useRef(false);
  const now = useNow(1000);

  const load = useCallback(async () => {
    try {
      const list = (await api<{ items: ActivationRequestDto[] }>("GET", "/v1/activation-requests?scope=inbox")).items;
      setItems(list);
      setSelected((old) => new Set([...old].filter((id) => list.some((r) => r.id === id))));
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
  useEffect(() => {
    void load();
    const timer = setInterval(() => void load(), 5000);
    return () => clearInterval(timer);
  }, [load]);

  // Risk and history, once per role: both may be forbidden, which is an answer too.
  useEffect(() => {
    for (const role of new Set((items ?? []).map((r) => r.role))) {
      if (asked.current.has(role)) continue;
      asked.current.add(role);
      const path = encodeURIComponent(role);
      void api<RoleDto>("GET", `/v1/roles/${path}`).then(
        (dto) => setRisks((old) => ({ ...old, [role]: dto.risk })),
        () => setRisks((old) => ({ ...old, [role]: null })),
      );
      if (historyForbidden.current) {
        setHistory((old) => ({ ...old, [role]: null }));
        continue;
      }
      void api<{ items: ActivationRequestDto[] }>(
        "GET",
        `/v1/activation-requests?scope=all&role=${path}&limit=200`,
      ).then(
        (page) => setHistory((old) => ({ ...old, [role]: page.items })),
        (e: unknown) => {
          if (e instanceof ApiError && e.status === 403) historyForbidden.current = true;
          setHistory((old) => ({ ...old, [role]: null }));
        },
      );
    }
  }, [items]);

  const lowRisk = (r: ActivationRequestDto) => risks[r.role] === "low";
  const chosen = (items ?? []).filter((r) => selected.has(r.id) && lowRisk(r));

  function toggle(id: string, on: boolean) {
    setSelected((old) => {
      const next = new Set(old);
      if (on) next.add(id);
      else next.delete(id);
      return next;
    });
  }

  return (
    <Stack>
      <Title order={1} size="h2">
        Approvals
      </Title>
      <Text c="gray.7">Pending requests waiting for your decision. The list refreshes every 5 seconds.</Text>
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
            {items.some((r) => risks[r.role])
              ? "Only low-risk requests can be approved together."
              : "Approving several at once needs the roles' risk, which is not visible to you."}
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
                    disabled={!lowRisk(r)}
                    title={lowRisk(r) ? undefined : "Only low-risk requests can be approved together"}
                    onChange={(e) => toggle(r.id, e.currentTarget.checked)}
                  />
                  <Text fw={700}>{r.requester}</Text>
                  <Text>requests</Text>
                  <Text fw={700}>{r.role}</Text>
                  {risks[r.role] && <RiskBadge risk={risks[r.role]!} />}
                  {r.breakGlass && <Badge color="red.9">break-glass</Badge>}
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
              <History request={r} history={history[r.role]} now={now} />
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
            setSelected(new Set());
            if (done) setNotice(done);
            void load();
          }}
        />
      )}
    </Stack>
  );
}

function History({
  request,
  history,
  now,
}: {
  request: ActivationRequestDto;
  history: ActivationRequestDto[] | null | undefined;
  now: number;
}) {
  if (history === undefined) return null;
  if (history === null)
    return (
      <Text size="sm" c="gray.7">
        History not visible to you.
      </Text>
    );
  const earlier = history.filter((h) => h.requester === request.requester && h.id !== request.id);
  if (earlier.length === 0)
    return (
      <Text size="sm" c="gray.7">
        No earlier requests by {request.requester} for this role.
      </Text>
    );
  return (
    <Stack gap={4}>
      <Text size="sm">
        {earlier.length} earlier request{earlier.length === 1 ? "" : "s"} by {request.requester} for this role
        {earlier.length > 3 ? ", the latest:" : ":"}
      </Text>
      {earlier.slice(0, 3).map((h) => (
        <Group key={h.id} gap="xs" wrap="nowrap">
          <StateBadge state={h.state} />
          <Text size="sm" c="gray.7" style={{ overflowWrap: "anywhere" }}>
            {formatAge(h.submittedAt, now)} ago: {h.reason}
          </Text>
        </Group>
      ))}
    </Stack>
  );
}

function DecisionDialog({
  request,
  decision,
  onClose,
}: {
  request: ActivationRequestDto;
  decision: Decision;
  /** With what was done, in words, after a decision; without, when cancelled. */
  onClose: (done?: string) => void;
}) {
  const [reason, setReason] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const approving = decision === "approve";

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
        <Textarea
          label={approving ? "Reason (optional)" : "Reason (required)"}
          description={
            approving ? "Kept with the decision in the audit log." : `Required: ${request.requester} reads this.`
          }
          value={reason}
          onChange={(e) => setReason(e.currentTarget.value)}
          error={errors.reason}
          autosize
          minRows={2}
          data-autofocus
        />
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
        {!done && (
          <Textarea
            label="Reason (optional)"
            value={reason}
            onChange={(e) => setReason(e.currentTarget.value)}
            error={errors.reason}
            autosize
            minRows={2}
          />
        )}
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
