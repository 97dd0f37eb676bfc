/**
 * Requests and history: one's own requests, or everybody's for admin, security and auditors, filtered
 * by state and role; a row opens the request's detail (stages, decisions, how it ended), from which
 * admin and security may revoke an active grant.
 */
import {
  Alert,
  Anchor,
  Button,
  Drawer,
  Group,
  Modal,
  SegmentedControl,
  Select,
  Stack,
  Table,
  Text,
  TextInput,
  Title,
} from "@mantine/core";
import { useEffect, useState } from "react";
import { usePolledList } from "../polling.js";
import { requestListQuery, revokeBody, type ActivationRequestDto } from "../../../src/contract/requests.js";
import { api, ApiError, hasRole } from "../api.js";
import { shortTime, zodFieldErrors } from "../ui.js";
import { ReasonField } from "../reason-field.js";
import { endsInWords, RequestDetail, StateBadge } from "./requests/shared.js";

const STATES: ActivationRequestDto["state"][] = [
  "pending",
  "approved",
  "provisioning",
  "active",
  "denied",
  "cancelled",
  "expired",
  "revoked",
  "deactivated",
  "failed",
];
const LIMITS = ["50", "100", "200", "500"];

export default function Requests() {
  const mayReadAll = hasRole("admin", "security", "auditor");
  const mayRevoke = hasRole("admin", "security");
  const [scope, setScope] = useState<"mine" | "all">(mayReadAll ? "all" : "mine");
  const [state, setState] = useState<string | null>(null);
  const [roleInput, setRoleInput] = useState("");
  const [role, setRole] = useState("");
  const [roleError, setRoleError] = useState<string | null>(null);
  const [limit, setLimit] = useState("100");
  const [openId, setOpenId] = useState<string | null>(null);

  // The role filter is applied after a short pause in typing, and only once the API would accept it.
  useEffect(() => {
    const timer = setTimeout(() => {
      const value = roleInput.trim();
      if (!value) {
        setRoleError(null);
        setRole("");
        return;
      }
      const parsed = requestListQuery.shape.role.safeParse(value);
      if (parsed.success) {
        setRoleError(null);
        setRole(value);
      } else setRoleError(parsed.error.issues[0]?.message ?? "not a role name");
    }, 300);
    return () => clearTimeout(timer);
  }, [roleInput]);

  const query = new URLSearchParams({ scope, limit });
  if (state) query.set("state", state);
  if (role) query.set("role", role);
  const { items, error, load } = usePolledList<ActivationRequestDto>(`/v1/activation-requests?${query}`, 10_000);

  const open = items?.find((r) => r.id === openId) ?? null;
  return (
    <Stack>
      <Title order={1} size="h2">
        Requests
      </Title>
      <Group align="flex-end" wrap="wrap">
        {mayReadAll && (
          <Stack gap={4}>
            <Text size="sm" fw={500} id="requests-scope-label">
              Whose requests
            </Text>
            <SegmentedControl
              aria-labelledby="requests-scope-label"
              value={scope}
              onChange={(v) => setScope(v as "mine" | "all")}
              data={[
                { value: "mine", label: "Mine" },
                { value: "all", label: "Everybody's" },
              ]}
            />
          </Stack>
        )}
        <Select
          label="State"
          placeholder="Any state"
          data={STATES}
          value={state}
          onChange={setState}
          clearable
          w={170}
        />
        <TextInput
          label="Role"
          placeholder="Any role"
          value={roleInput}
          onChange={(e) => setRoleInput(e.currentTarget.value)}
          error={roleError}
          w={200}
        />
        <Select
          label="Show"
          data={LIMITS.map((l) => ({ value: l, label: `${l} newest` }))}
          value={limit}
          onChange={(v) => v && setLimit(v)}
          allowDeselect={false}
          w={130}
        />
      </Group>
      {error && (
        <Alert color="red" role="alert">
          {error}
        </Alert>
      )}
      {items && items.length === 0 && <Text>No request matches.</Text>}
      {items && items.length > 0 && (
        <Table.ScrollContainer minWidth={960}>
          <Table striped highlightOnHover>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Role</Table.Th>
                <Table.Th>Requester</Table.Th>
                <Table.Th>State</Table.Th>
                <Table.Th>Duration</Table.Th>
                <Table.Th>Submitted</Table.Th>
                <Table.Th>Activated</Table.Th>
                <Table.Th>Ends / ended</Table.Th>
                <Table.Th>Reason</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {items.map((r) => (
                <Table.Tr
                  key={r.id}
                  data-testid={`history-${r.id}`}
                  onClick={() => setOpenId(r.id)}
                  style={{ cursor: "pointer" }}
                >
                  <Table.Td>
                    <Anchor
                      component="button"
                      type="button"
                      ta="left"
                      style={{ whiteSpace: "nowrap" }}
                      onClick={(e) => {
                        e.stopPropagation();
                        setOpenId(r.id);
                      }}
                      aria-label={`Details of ${r.requester}'s request for ${r.role} submitted ${shortTime(r.submittedAt)}`}
                    >
                      {r.role}
                    </Anchor>
                  </Table.Td>
                  <Table.Td>{r.requester}</Table.Td>
                  <Table.Td>
                    <StateBadge state={r.state} />
                  </Table.Td>
                  <Table.Td>{r.duration}</Table.Td>
                  <Table.Td>{shortTime(r.submittedAt)}</Table.Td>
                  <Table.Td>{shortTime(r.activatedAt)}</Table.Td>
                  <Table.Td>{endsInWords(r)}</Table.Td>
                  <Table.Td maw={280}>
                    <Text size="sm" lineClamp={2}>
                      {r.reason}
                    </Text>
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      <Drawer
        opened={!!open}
        onClose={() => setOpenId(null)}
        position="right"
        size="min(40rem, 100vw)"
        title={open ? `${open.requester}'s request for ${open.role}` : ""}
        closeButtonProps={{ "aria-label": "Close" }}
      >
        {open && (
          <Stack>
            <RequestDetail request={open} />
            {mayRevoke && open.state === "active" && <Revoke request={open} onDone={() => void load()} />}
          </Stack>
        )}
      </Drawer>
    </Stack>
  );
}

function Revoke({ request, onDone }: { request: ActivationRequestDto; onDone: () => void }) {
  const [opened, setOpened] = useState(false);
  const [reason, setReason] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit() {
    setError(null);
    const parsed = revokeBody.safeParse({ reason });
    if (!parsed.success) return setErrors(zodFieldErrors(parsed.error));
    setErrors({});
    setBusy(true);
    try {
      await api("POST", `/v1/activation-requests/${request.id}/revoke`, parsed.data);
      setOpened(false);
      onDone();
    } catch (e) {
      const fields = e instanceof ApiError ? e.fieldErrors() : {};
      setErrors(fields);
      if (Object.keys(fields).length === 0) setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <>
      <Group>
        <Button color="red.9" onClick={() => setOpened(true)}>
          Revoke {request.requester}&apos;s {request.role}
        </Button>
      </Group>
      <Modal
        opened={opened}
        onClose={() => setOpened(false)}
        title={`Revoke ${request.requester}'s ${request.role}`}
        closeButtonProps={{ "aria-label": "Close" }}
        zIndex={400}
      >
        <Stack>
          <Text size="sm">The grant ends now; {request.requester} is told why.</Text>
          {error && (
            <Alert color="red" role="alert">
              {error}
            </Alert>
          )}
          <ReasonField value={reason} onChange={setReason} error={errors.reason} autoFocus />
          <Group justify="flex-end">
            <Button variant="default" onClick={() => setOpened(false)}>
              Cancel
            </Button>
            <Button color="red.9" onClick={() => void submit()} loading={busy}>
              Revoke
            </Button>
          </Group>
        </Stack>
      </Modal>
    </>
  );
}
