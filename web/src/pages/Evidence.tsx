/**
 * The evidence report as a printable page: who had privileged access to a role or target in a period, approved
 * by whom, with what justification, what they did (sessions and their recordings' SHA-256), the break-glass
 * reviews, and the SLIs. "Print" prints only the report (navigation hidden); "Download CSV" fetches the CSV the
 * server renders, so its SHA-256 is the one the audit log records for it, like the JSON report's shown here.
 */
import { Alert, Button, Card, Code, Group, SimpleGrid, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { useState, type FormEvent } from "react";
import type { EvidenceActivation, EvidenceReportDto } from "../../../src/contract/evidence.js";
import { api, currentSession } from "../api.js";

const DAY_MS = 86_400_000;
const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

const PRINT_CSS = `@media print {
  header, nav, .stint-no-print { display: none !important; }
  main { padding: 0 !important; margin: 0 !important; }
  table { font-size: 10pt; }
}`;

function percent(value: number | null): string {
  return value === null ? "n/a" : `${(value * 100).toFixed(1)}%`;
}

function seconds(ms: number | null): string {
  if (ms === null) return "n/a";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function approvalInWords(a: EvidenceActivation): string {
  if (a.approval === "automatic") return "no approval needed (policy)";
  if (a.approval === "break-glass")
    return a.review
      ? `break-glass; review ${a.review.outcome ?? "open"}${a.review.closedBy ? ` by ${a.review.closedBy}` : ""}${
          a.review.finding ? `: ${a.review.finding}` : ""
        }`
      : "break-glass";
  return a.decisions.map((d) => `${d.decision} by ${d.approver}${d.reason ? ` (${d.reason})` : ""}`).join("; ");
}

export default function Evidence() {
  const now = Date.now();
  const [role, setRole] = useState("");
  const [target, setTarget] = useState("");
  const [from, setFrom] = useState(day(now - 30 * DAY_MS));
  const [to, setTo] = useState(day(now + DAY_MS));
  const [report, setReport] = useState<EvidenceReportDto | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const query = (format: "json" | "csv") => {
    const params = new URLSearchParams({
      from: new Date(`${from}T00:00:00Z`).toISOString(),
      to: new Date(`${to}T00:00:00Z`).toISOString(),
      format,
    });
    if (role.trim()) params.set("role", role.trim());
    if (target.trim()) params.set("target", target.trim());
    return `/v1/evidence?${params.toString()}`;
  };

  async function show(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    try {
      setReport(await api<EvidenceReportDto>("GET", query("json")));
      setError(null);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  }

  async function downloadCsv() {
    const res = await fetch(query("csv"), {
      headers: { authorization: `Bearer ${currentSession()?.accessToken ?? ""}` },
    });
    if (!res.ok) {
      setError(`The CSV could not be made (HTTP ${res.status}).`);
      return;
    }
    const url = URL.createObjectURL(await res.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = `stint-evidence-${from}-${to}.csv`;
    link.click();
    URL.revokeObjectURL(url);
  }

  return (
    <Stack>
      <style>{PRINT_CSS}</style>
      <Title order={1} size="h2">
        Evidence report
      </Title>
      <form onSubmit={(e) => void show(e)} className="stint-no-print" aria-label="Report scope">
        <Group align="flex-end">
          <TextInput label="Role" placeholder="any" value={role} onChange={(e) => setRole(e.currentTarget.value)} />
          <TextInput
            label="Target"
            placeholder="any"
            value={target}
            onChange={(e) => setTarget(e.currentTarget.value)}
          />
          <TextInput label="From" type="date" required value={from} onChange={(e) => setFrom(e.currentTarget.value)} />
          <TextInput label="To" type="date" required value={to} onChange={(e) => setTo(e.currentTarget.value)} />
          <Button type="submit" loading={busy}>
            Show report
          </Button>
          {report && (
            <>
              <Button variant="default" onClick={() => window.print()}>
                Print
              </Button>
              <Button variant="default" onClick={() => void downloadCsv()}>
                Download CSV
              </Button>
            </>
          )}
        </Group>
      </form>
      {error && (
        <Alert color="red" role="alert">
          {error}
        </Alert>
      )}
      {report && (
        <Stack data-testid="evidence-report">
          <Text>
            Privileged access{report.scope.role ? ` to role ${report.scope.role}` : ""}
            {report.scope.target ? ` on target ${report.scope.target}` : ""} from {report.scope.from} to{" "}
            {report.scope.to}: {report.activations.length} activation{report.activations.length === 1 ? "" : "s"}.
            Generated {report.generatedAt} by {report.generatedBy}.
          </Text>
          <Text size="sm">
            SHA-256 of this report (recorded in the audit log): <Code data-testid="report-sha256">{report.sha256}</Code>
          </Text>
          <SimpleGrid cols={{ base: 2, md: 3 }} aria-label="Service level indicators">
            <Card withBorder>
              <Text size="sm">Time to elevate (median / p95)</Text>
              <Text fw={700}>
                {seconds(report.slis.timeToElevate.medianMs)} / {seconds(report.slis.timeToElevate.p95Ms)}
              </Text>
            </Card>
            <Card withBorder>
              <Text size="sm">Elevation success rate</Text>
              <Text fw={700}>{percent(report.slis.elevationSuccessRate.value)}</Text>
            </Card>
            <Card withBorder>
              <Text size="sm">Approval latency (median / p95)</Text>
              <Text fw={700}>
                {seconds(report.slis.approvalLatency.medianMs)} / {seconds(report.slis.approvalLatency.p95Ms)}
              </Text>
            </Card>
            <Card withBorder>
              <Text size="sm">Privileged access with approved justification</Text>
              <Text fw={700}>{percent(report.slis.approvedJustification.value)}</Text>
            </Card>
            <Card withBorder>
              <Text size="sm">Recording coverage</Text>
              <Text fw={700}>{percent(report.slis.recordingCoverage.value)}</Text>
            </Card>
            <Card withBorder>
              <Text size="sm">Revocation latency (median / p95)</Text>
              <Text fw={700}>
                {seconds(report.slis.revocationLatency.medianMs)} / {seconds(report.slis.revocationLatency.p95Ms)}
              </Text>
            </Card>
          </SimpleGrid>
          <Table striped withTableBorder aria-label="Activations">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Who</Table.Th>
                <Table.Th>Role (target)</Table.Th>
                <Table.Th>Justification</Table.Th>
                <Table.Th>Approval</Table.Th>
                <Table.Th>Active</Table.Th>
                <Table.Th>Sessions (recording SHA-256)</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {report.activations.map((a) => (
                <Table.Tr key={a.requestId} data-testid={`activation-${a.requestId}`}>
                  <Table.Td>{a.requester}</Table.Td>
                  <Table.Td>
                    {a.role} ({a.target})
                  </Table.Td>
                  <Table.Td>
                    {a.justification}
                    {a.ticket ? ` [${a.ticket}]` : ""}
                  </Table.Td>
                  <Table.Td>{approvalInWords(a)}</Table.Td>
                  <Table.Td>
                    {a.activatedAt} – {a.endedAt ?? "active"}
                    {a.endReason ? ` (${a.endReason})` : ""}
                  </Table.Td>
                  <Table.Td>
                    {a.sessions.length === 0
                      ? "none"
                      : a.sessions.map((s) => (
                          <div key={s.id}>
                            {s.kind} {s.login}: <Code>{s.recording?.sha256 ?? "not recorded"}</Code>
                          </div>
                        ))}
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Stack>
      )}
    </Stack>
  );
}
