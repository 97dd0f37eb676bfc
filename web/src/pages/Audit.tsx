/**
 * Audit explorer: the chain's verification status, then the events that match the filters (actor, action,
 * target, role, outcome, time range), newest first, a page at a time: the server filters, pages and counts,
 * so the oldest event is as findable as the newest. The filtered events export as JSON lines or CSV (the
 * server streams them and audits the export). A row opens the whole event with its details.
 */
import {
  Alert,
  Anchor,
  Badge,
  Button,
  Code,
  Group,
  Modal,
  NativeSelect,
  Stack,
  Table,
  Text,
  TextInput,
  Title,
} from "@mantine/core";
import { useCallback, useEffect, useState, type FormEvent } from "react";
import type { z } from "zod";
import type { auditEvent, auditPage, verifyResult } from "../../../src/contract/audit.js";
import { api } from "../api.js";
import { shortTime } from "../ui.js";
import { toneProps, type Tone } from "./requests/shared.js";

type AuditEvent = z.infer<typeof auditEvent>;
type AuditPage = z.infer<typeof auditPage>;
type Verify = z.infer<typeof verifyResult>;

const PER_PAGE = 50;
const OUTCOME_TONE: Record<AuditEvent["outcome"], Tone> = { success: "green", denied: "orange", failed: "red" };

interface Filters {
  actor: string;
  action: string;
  target: string;
  role: string;
  outcome: string;
  since: string;
  until: string;
}
const NO_FILTERS: Filters = { actor: "", action: "", target: "", role: "", outcome: "", since: "", until: "" };

/** datetime-local value ("2025-01-31T09:30") as an ISO instant, or null. */
function isoOf(local: string): string | null {
  if (!local) return null;
  const time = new Date(local);
  return Number.isNaN(time.getTime()) ? null : time.toISOString();
}

/** The filters as query parameters (only those given; times as ISO instants). */
function queryOf(filters: Filters): URLSearchParams {
  const query = new URLSearchParams();
  for (const key of ["actor", "action", "target", "role", "outcome"] as const) {
    const value = filters[key].trim();
    if (value) query.set(key, value);
  }
  const since = isoOf(filters.since);
  const until = isoOf(filters.until);
  if (since) query.set("since", since);
  if (until) query.set("until", until);
  return query;
}

/** Saves `text` as a file the browser downloads. */
function saveFile(text: string, name: string, type: string) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export default function Audit() {
  const [verify, setVerify] = useState<Verify | null>(null);
  const [draft, setDraft] = useState<Filters>(NO_FILTERS);
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  /** The cursors of the pages shown so far: [undefined] is the newest page, then each older page's beforeSeq. */
  const [cursors, setCursors] = useState<(number | undefined)[]>([undefined]);
  const [page, setPage] = useState<AuditPage | null>(null);
  const [total, setTotal] = useState<{ count: number; capped: boolean } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [exporting, setExporting] = useState<string | null>(null);
  const [open, setOpen] = useState<AuditEvent | null>(null);
  /** Bumped by Refresh (the chain is verified again too). */
  const [refreshed, setRefreshed] = useState(0);
  /** Bumped by each search, so that searching again for the same filters reads again. */
  const [searches, setSearches] = useState(0);

  useEffect(() => {
    // The verification re-hashes the whole chain: it runs alongside, the events do not wait for it.
    void api<Verify>("GET", "/v1/audit/verify").then(setVerify, (e: unknown) => setError((e as Error).message));
  }, [refreshed]);

  const cursor = cursors.at(-1);
  const first = cursors.length === 1;
  const load = useCallback(async () => {
    setBusy(true);
    setError(null);
    try {
      const query = queryOf(filters);
      query.set("order", "desc");
      query.set("limit", String(PER_PAGE));
      if (cursor !== undefined) query.set("beforeSeq", String(cursor));
      // Counted once per search (on its first page), not again for every page.
      if (first) query.set("count", "true");
      const answer = await api<AuditPage>("GET", `/v1/audit/events?${query}`);
      setPage(answer);
      if (answer.total !== undefined) setTotal({ count: answer.total, capped: !!answer.totalCapped });
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  }, [filters, cursor, first]);
  useEffect(() => {
    void load();
  }, [load, refreshed, searches]);

  function search(event?: FormEvent) {
    event?.preventDefault();
    setFilters(draft);
    setCursors([undefined]);
    setSearches((n) => n + 1);
  }

  async function exportAs(format: "jsonl" | "csv") {
    setExporting(format);
    setError(null);
    try {
      const query = queryOf(filters);
      query.set("format", format);
      const text = await api<string>("GET", `/v1/audit/export?${query}`);
      const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
      saveFile(
        text,
        `stint-audit-${stamp}.${format}`,
        format === "csv" ? "text/csv;charset=utf-8" : "application/x-ndjson",
      );
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setExporting(null);
    }
  }

  const field = (key: keyof Filters) => ({
    value: draft[key],
    onChange: (e: { currentTarget: { value: string } }) => {
      const value = e.currentTarget.value;
      setDraft((old) => ({ ...old, [key]: value }));
    },
  });
  const items = page?.items ?? [];
  const start = (cursors.length - 1) * PER_PAGE;
  const older = page?.nextBeforeSeq ?? null;

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
      <form onSubmit={search} aria-label="Filter events">
        <Group align="flex-end" wrap="wrap">
          <TextInput label="Actor" description="Exact name" {...field("actor")} w={150} />
          <TextInput
            label="Action"
            description="Exact, or prefix*"
            placeholder="request.*"
            {...field("action")}
            w={170}
          />
          <TextInput
            label="Target"
            description="Subject, or prefix*"
            placeholder="user:alice"
            {...field("target")}
            w={170}
          />
          <TextInput label="Role" description="Events about it" {...field("role")} w={150} />
          <NativeSelect
            label="Outcome"
            description="Any, or one"
            data={[
              { value: "", label: "Any" },
              { value: "success", label: "success" },
              { value: "denied", label: "denied" },
              { value: "failed", label: "failed" },
            ]}
            {...field("outcome")}
            w={130}
          />
          <TextInput label="Since" description="From" type="datetime-local" {...field("since")} w={210} />
          <TextInput label="Until" description="Before" type="datetime-local" {...field("until")} w={210} />
          <Button type="submit" loading={busy}>
            Search
          </Button>
          <Button variant="default" onClick={() => setRefreshed((n) => n + 1)}>
            Refresh
          </Button>
        </Group>
      </form>
      <Group justify="space-between" wrap="wrap">
        <Text size="sm" c="gray.7" aria-live="polite" data-testid="audit-count">
          {page && total
            ? total.count === 0
              ? "No events match."
              : `Events ${items.length === 0 ? 0 : start + 1}–${start + items.length} of ${total.capped ? "more than " : ""}${total.count.toLocaleString("en")} matching.`
            : ""}
        </Text>
        <Group gap="xs">
          <Button variant="default" size="xs" onClick={() => void exportAs("jsonl")} loading={exporting === "jsonl"}>
            Export JSON lines
          </Button>
          <Button variant="default" size="xs" onClick={() => void exportAs("csv")} loading={exporting === "csv"}>
            Export CSV
          </Button>
        </Group>
      </Group>
      {items.length > 0 && (
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
              {items.map((e) => (
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
      {(older !== null || !first) && (
        <Group gap="sm">
          <Button variant="default" disabled={first} onClick={() => setCursors((old) => old.slice(0, -1))}>
            Newer
          </Button>
          <Button variant="default" disabled={older === null} onClick={() => setCursors((old) => [...old, older!])}>
            Older
          </Button>
        </Group>
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
