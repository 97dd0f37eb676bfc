/**
 * Audit explorer: the chain's verification status, then the newest 1000 events of the chosen time range
 * (the API filters by time, newest first), narrowed here as you type by actor, action and role; a row
 * opens the whole event with its details.
 */
import {
  Alert,
  Anchor,
  Badge,
  Button,
  Code,
  Group,
  Modal,
  Pagination,
  Stack,
  Table,
  Text,
  TextInput,
  Title,
} from "@mantine/core";
import { useCallback, useEffect, useMemo, useState, type ChangeEvent } from "react";
import type { z } from "zod";
import type { auditEvent, auditPage, verifyResult } from "../../../src/contract/audit.js";
import { api } from "../api.js";
import { shortTime } from "../ui.js";
import { toneProps, type Tone } from "./requests/shared.js";

type AuditEvent = z.infer<typeof auditEvent>;
type AuditPage = z.infer<typeof auditPage>;
type Verify = z.infer<typeof verifyResult>;

/** How many of the newest events the explorer holds. */
const NEWEST = 1000;
const PER_PAGE = 100;
const OUTCOME_TONE: Record<AuditEvent["outcome"], Tone> = { success: "green", denied: "orange", failed: "red" };

/** The newest events of a time range, oldest first (the API pages newest first). */
async function fetchNewest(
  since: string | null,
  until: string | null,
): Promise<{ events: AuditEvent[]; more: boolean }> {
  const query = new URLSearchParams({ order: "desc", limit: String(NEWEST) });
  if (since) query.set("since", since);
  if (until) query.set("until", until);
  const page = await api<AuditPage>("GET", `/v1/audit/events?${query}`);
  return { events: [...page.items].reverse(), more: (page.nextBeforeSeq ?? null) !== null };
}

/** datetime-local value ("2025-01-31T09:30") as an ISO instant, or null. */
function isoOf(local: string): string | null {
  if (!local) return null;
  const time = new Date(local);
  return Number.isNaN(time.getTime()) ? null : time.toISOString();
}

function matches(value: string | null | undefined, wanted: string): boolean {
  return !wanted || (value ?? "").toLowerCase().includes(wanted.toLowerCase());
}

export default function Audit() {
  const [verify, setVerify] = useState<Verify | null>(null);
  const [events, setEvents] = useState<AuditEvent[] | null>(null);
  const [more, setMore] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [actor, setActor] = useState("");
  const [action, setAction] = useState("");
  const [role, setRole] = useState("");
  const [since, setSince] = useState("");
  const [until, setUntil] = useState("");
  const [page, setPage] = useState(1);
  const [open, setOpen] = useState<AuditEvent | null>(null);

  const filter = (set: (value: string) => void) => (e: ChangeEvent<HTMLInputElement>) => {
    set(e.currentTarget.value);
    setPage(1);
  };

  const sinceIso = isoOf(since);
  const untilIso = isoOf(until);
  const load = useCallback(async () => {
    setBusy(true);
    setError(null);
    // The verification re-hashes the whole chain: it runs alongside, the events do not wait for it.
    void api<Verify>("GET", "/v1/audit/verify").then(setVerify, (e: unknown) => setError((e as Error).message));
    try {
      const result = await fetchNewest(sinceIso, untilIso);
      setEvents(result.events);
      setMore(result.more);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  }, [sinceIso, untilIso]);
  useEffect(() => {
    void load();
  }, [load]);

  const shown = useMemo(() => {
    const wanted = (events ?? []).filter((e) => {
      if (!matches(e.actor, actor) || !matches(e.action, action)) return false;
      if (role) {
        const detailRole = typeof e.details.role === "string" ? e.details.role : "";
        if (!matches(e.subject, role) && !matches(detailRole, role)) return false;
      }
      return true;
    });
    return wanted.reverse();
  }, [events, actor, action, role]);
  const pages = Math.max(1, Math.ceil(shown.length / PER_PAGE));
  const current = Math.min(page, pages);
  const visible = shown.slice((current - 1) * PER_PAGE, current * PER_PAGE);

  return (
    <Stack>
      <Title order={1} size="h2">
        Audit
      </Title>
      <ChainStatus verify={verify} />
      {error && (
        <Alert color="red" role="alert">
          {error}
        </Alert>
      )}
      <Title order={2} size="h4">
        Events
      </Title>
      <Group align="flex-end" wrap="wrap">
        <TextInput label="Actor" value={actor} onChange={filter(setActor)} w={150} />
        <TextInput label="Action" placeholder="e.g. request." value={action} onChange={filter(setAction)} w={170} />
        <TextInput label="Role" value={role} onChange={filter(setRole)} w={150} />
        <TextInput label="Since" type="datetime-local" value={since} onChange={filter(setSince)} w={210} />
        <TextInput label="Until" type="datetime-local" value={until} onChange={filter(setUntil)} w={210} />
        <Button variant="default" onClick={() => void load()} loading={busy}>
          Refresh
        </Button>
      </Group>
      {events && (
        <Text size="sm" c="gray.7" aria-live="polite">
          {shown.length} of {events.length} {more ? `newest events (the API holds older ones)` : "events"} match.
        </Text>
      )}
      {visible.length > 0 && (
        <Table.ScrollContainer minWidth={860}>
          <Table striped highlightOnHover>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Seq</Table.Th>
                <Table.Th>Time</Table.Th>
                <Table.Th>Actor</Table.Th>
                <Table.Th>Action</Table.Th>
                <Table.Th>Subject</Table.Th>
                <Table.Th>Outcome</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {visible.map((e) => (
                <Table.Tr
                  key={e.seq}
                  data-testid={`audit-${e.seq}`}
                  onClick={() => setOpen(e)}
                  style={{ cursor: "pointer" }}
                >
                  <Table.Td>
                    <Anchor
                      component="button"
                      type="button"
                      aria-label={`Details of event ${e.seq}`}
                      onClick={(click) => {
                        click.stopPropagation();
                        setOpen(e);
                      }}
                    >
                      {e.seq}
                    </Anchor>
                  </Table.Td>
                  <Table.Td style={{ whiteSpace: "nowrap" }}>{shortTime(e.time)}</Table.Td>
                  <Table.Td>{e.actor}</Table.Td>
                  <Table.Td style={{ whiteSpace: "nowrap" }}>{e.action}</Table.Td>
                  <Table.Td style={{ overflowWrap: "anywhere" }}>{e.subject ?? "—"}</Table.Td>
                  <Table.Td>
                    <Badge {...toneProps(OUTCOME_TONE[e.outcome])} miw="max-content">
                      {e.outcome}
                    </Badge>
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      {pages > 1 && (
        <Pagination
          total={pages}
          value={current}
          onChange={setPage}
          getControlProps={(control) => ({ "aria-label": `${control} page` })}
          getItemProps={(n) => ({ "aria-label": `Page ${n}` })}
        />
      )}
      <Modal
        opened={!!open}
        onClose={() => setOpen(null)}
        title={open ? `Event ${open.seq}: ${open.action}` : ""}
        size="xl"
        closeButtonProps={{ "aria-label": "Close" }}
      >
        {open && <EventDetail event={open} />}
      </Modal>
    </Stack>
  );
}

function ChainStatus({ verify }: { verify: Verify | null }) {
  if (!verify) return <Text c="gray.7">Verifying the chain…</Text>;
  if (verify.ok)
    return (
      <Group gap="sm">
        <Badge {...toneProps("green")} size="lg" tt="none">
          Chain verified ({verify.count} events)
        </Badge>
        <Text size="sm" c="gray.7">
          head at seq {verify.headSeq}, {verify.checkpoints} checkpoint{verify.checkpoints === 1 ? "" : "s"}
        </Text>
      </Group>
    );
  return (
    <Alert
      color="red"
      role="alert"
      title={<Badge {...toneProps("red")} size="lg" tt="none">{`Chain broken at seq ${verify.brokenSeq}`}</Badge>}
    >
      {verify.problem} ({verify.count} events checked before the break.)
    </Alert>
  );
}

function EventDetail({ event }: { event: AuditEvent }) {
  const fields: [string, string][] = [
    ["Seq", String(event.seq)],
    ["Id", event.id],
    ["Time", `${shortTime(event.time)} (${event.time})`],
    ["Actor", event.actor],
    ["Actor id", event.actorId ?? "—"],
    ["Action", event.action],
    ["Subject", event.subject ?? "—"],
    ["Outcome", event.outcome],
    ["Reason", event.reason ?? "—"],
    ["Correlation id", event.correlationId ?? "—"],
    ["Source IP", event.sourceIp ?? "—"],
    ["User agent", event.userAgent ?? "—"],
    ["Previous hash", event.prevHash],
    ["Hash", event.hash],
  ];
  return (
    <Stack>
      <Table variant="vertical" layout="fixed" withTableBorder>
        <Table.Tbody>
          {fields.map(([label, value]) => (
            <Table.Tr key={label}>
              <Table.Th w={130}>{label}</Table.Th>
              <Table.Td style={{ overflowWrap: "anywhere" }}>{value}</Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
      <Text fw={600} component="h3" size="md">
        Details
      </Text>
      <Code block tabIndex={0} role="region" aria-label="Details as JSON">
        {JSON.stringify(event.details, null, 2)}
      </Code>
    </Stack>
  );
}
