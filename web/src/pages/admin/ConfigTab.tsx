/**
 * Configuration as code: the catalog exported as YAML (line numbers, copy, download), edited here, its plan shown as
 * a diff, and applied only after that diff was shown for the exact text and confirmed (deletions named and
 * acknowledged). A file that widens access at a four-eyes tier is held as a change request for a second admin.
 * Problems of the file are listed by line and column.
 */
import { Alert, Badge, Button, Checkbox, Group, List, Modal, Stack, Table, Text, Title } from "@mantine/core";
import { useCallback, useEffect, useState } from "react";
import {
  configRequest,
  type ConfigApplyResultDto,
  type ConfigPlanDto,
  type ConfigProblem,
} from "../../../../src/contract/catalog-api.js";
import { api, ApiError } from "../../api.js";
import { toneProps, type Tone } from "../requests/shared.js";
import { canWriteCatalog, FormAlert } from "./shared.js";
import { CopyDownload, YamlEditor, YamlView } from "./YamlEditor.js";

const ACTION_TONE: Record<string, Tone> = { create: "green", update: "blue", delete: "red" };

function show(value: unknown): string {
  if (value === undefined) return "—";
  return typeof value === "string" ? value : JSON.stringify(value);
}

export function ConfigTab() {
  const write = canWriteCatalog();
  const [exported, setExported] = useState<string | null>(null);
  const [yaml, setYaml] = useState("");
  const [plan, setPlan] = useState<ConfigPlanDto | null>(null);
  const [applied, setApplied] = useState<ConfigApplyResultDto | null>(null);
  const [problems, setProblems] = useState<ConfigProblem[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<"diff" | "apply" | null>(null);
  /** The exact text the shown plan was made for: Apply needs the diff of what is in the editor now. */
  const [plannedFor, setPlannedFor] = useState<string | null>(null);
  const [confirming, setConfirming] = useState(false);

  const load = useCallback(async () => {
    try {
      const { yaml: text } = await api<{ yaml: string }>("GET", "/v1/config/export");
      setExported(text);
      setYaml(text);
      setError(null);
    } catch (e) {
      setError((e as Error).message);
    }
  }, []);
  useEffect(() => {
    void load();
  }, [load]);

  async function run(action: "diff" | "apply") {
    setError(null);
    setProblems([]);
    setApplied(null);
    const parsed = configRequest.safeParse({ yaml });
    if (!parsed.success) {
      setError(parsed.error.issues[0]?.message ?? "The file is not valid.");
      return;
    }
    setBusy(action);
    try {
      if (action === "diff") {
        setPlan(await api<ConfigPlanDto>("POST", "/v1/config/diff", parsed.data));
        setPlannedFor(parsed.data.yaml);
      } else {
        const result = await api<ConfigApplyResultDto>("POST", "/v1/config/apply", parsed.data);
        setApplied(result);
        setPlan(result);
        setPlannedFor(null);
        const { yaml: text } = await api<{ yaml: string }>("GET", "/v1/config/export");
        setExported(text);
      }
    } catch (e) {
      setPlan(null);
      setPlannedFor(null);
      const listed = e instanceof ApiError ? (e.details?.problems as ConfigProblem[] | undefined) : undefined;
      if (listed && listed.length > 0) setProblems(listed);
      setError((e as Error).message);
    } finally {
      setBusy(null);
    }
  }

  const ready = plan !== null && plannedFor === yaml && plan.changes.length > 0 && applied === null;

  return (
    <Stack>
      <Text c="dimmed" size="sm">
        The whole catalog as one YAML file (docs/configuration-as-code.md). Edit it, look at the changes it would make,
        then apply them{write ? "" : " (applying is for admin and security)"}.
      </Text>
      <FormAlert message={error} />
      <Title order={2} size="h4">
        Current configuration
      </Title>
      {exported === null ? (
        <Text c="dimmed">Loading…</Text>
      ) : (
        <>
          <YamlView label="Current configuration (YAML)" value={exported} />
          <CopyDownload text={exported} filename="stint.yaml" what="export" />
        </>
      )}
      <YamlEditor
        label="Configuration to plan (YAML)"
        value={yaml}
        onChange={(value) => {
          setYaml(value);
          setPlan(null);
          setPlannedFor(null);
          setApplied(null);
        }}
      />
      <Group>
        <Button variant="default" onClick={() => void run("diff")} loading={busy === "diff"}>
          Show diff
        </Button>
        {write && (
          <Button
            onClick={() => setConfirming(true)}
            loading={busy === "apply"}
            disabled={busy !== null || !ready}
            aria-describedby={ready ? undefined : "apply-needs-diff"}
          >
            Apply…
          </Button>
        )}
        <Button variant="subtle" onClick={() => void load()}>
          Reset to current
        </Button>
      </Group>
      {write && !ready && (
        <Text id="apply-needs-diff" size="sm" c="dimmed">
          Show the diff of this text first; Apply asks you to confirm those changes.
        </Text>
      )}
      {confirming && plan && (
        <ConfirmApply
          plan={plan}
          onClose={() => setConfirming(false)}
          onConfirm={() => {
            setConfirming(false);
            void run("apply");
          }}
        />
      )}
      {problems.length > 0 && (
        <>
          <Title order={2} size="h4">
            Problems in the file
          </Title>
          <Table.ScrollContainer minWidth={560}>
            <Table aria-label="Problems in the file">
              <Table.Thead>
                <Table.Tr>
                  <Table.Th>Line</Table.Th>
                  <Table.Th>Column</Table.Th>
                  <Table.Th>Where</Table.Th>
                  <Table.Th>Problem</Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {problems.map((p, i) => (
                  <Table.Tr key={i}>
                    <Table.Td>{p.line}</Table.Td>
                    <Table.Td>{p.column}</Table.Td>
                    <Table.Td>{p.path ? <code>{p.path}</code> : "—"}</Table.Td>
                    <Table.Td>{p.message}</Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
        </>
      )}
      {applied?.changeRequest && (
        <Alert color="yellow" title="Held for a second admin (four-eyes)">
          This file widens access at risk {applied.changeRequest.tier}, so nothing was applied yet: change request{" "}
          <code>{applied.changeRequest.id}</code> waits until{" "}
          {new Date(applied.changeRequest.expiresAt).toLocaleString()} for another admin to approve it (Administration →
          Change requests).
        </Alert>
      )}
      {plan && (
        <PlanView plan={plan} applied={applied ? applied.applied || (applied.changeRequest ? "held" : false) : null} />
      )}
    </Stack>
  );
}

/** Asks before applying: the totals, every deletion by name (acknowledged), and the four-eyes rule. */
function ConfirmApply(props: { plan: ConfigPlanDto; onClose: () => void; onConfirm: () => void }) {
  const deletions = props.plan.changes.filter((c) => c.action === "delete");
  const [acknowledged, setAcknowledged] = useState(deletions.length === 0);
  const { create, update, delete: remove } = props.plan.summary;
  return (
    <Modal opened closeButtonProps={{ "aria-label": "Close" }} onClose={props.onClose} title="Apply these changes?">
      <Stack>
        <Text>
          {create} to create, {update} to update, {remove} to delete, as the diff shows. A change that widens access at
          a four-eyes risk tier holds the whole file for a second admin instead.
        </Text>
        {deletions.length > 0 && (
          <Alert color="red" title={`This deletes ${deletions.length} thing${deletions.length === 1 ? "" : "s"}`}>
            <List size="sm">
              {deletions.map((c) => (
                <List.Item key={`${c.kind}:${c.name}`}>
                  {c.kind} <code>{c.name}</code>
                </List.Item>
              ))}
            </List>
            <Checkbox
              mt="sm"
              checked={acknowledged}
              onChange={(e) => setAcknowledged(e.currentTarget.checked)}
              label={`I mean to delete ${deletions.length === 1 ? "it" : `these ${deletions.length}`}`}
            />
          </Alert>
        )}
        <Group justify="flex-end">
          <Button variant="default" onClick={props.onClose}>
            Cancel
          </Button>
          <Button color={deletions.length > 0 ? "red" : undefined} disabled={!acknowledged} onClick={props.onConfirm}>
            Apply {props.plan.changes.length} change{props.plan.changes.length === 1 ? "" : "s"}
          </Button>
        </Group>
      </Stack>
    </Modal>
  );
}

/** The diff of a plan: totals, notes and one row per change with its fields (from → to). */
export function PlanView({
  plan,
  applied,
  title,
}: {
  plan: ConfigPlanDto;
  applied: boolean | "held" | null;
  title?: string;
}) {
  const { create, update, delete: remove } = plan.summary;
  return (
    <Stack gap="sm">
      <Title order={2} size="h4">
        {title ?? (applied === null || applied === "held" ? "Planned changes" : "Applied changes")}
      </Title>
      {typeof applied === "boolean" && (
        <Alert color={applied ? "teal" : "gray"}>
          {applied ? "The configuration was applied." : "Nothing to apply: the catalog already matches the file."}
        </Alert>
      )}
      <Text aria-live="polite">
        {create} to create, {update} to update, {remove} to delete.
      </Text>
      {plan.notes.map((note, i) => (
        <Alert key={i} color="blue" variant="light">
          {note}
        </Alert>
      ))}
      {plan.changes.length === 0 ? (
        <Text c="dimmed">No changes.</Text>
      ) : (
        <Table.ScrollContainer minWidth={640}>
          <Table aria-label="Changes">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Action</Table.Th>
                <Table.Th>Kind</Table.Th>
                <Table.Th>Name</Table.Th>
                <Table.Th>Fields</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {plan.changes.map((c, i) => (
                <Table.Tr key={i}>
                  <Table.Td>
                    <Badge {...toneProps(ACTION_TONE[c.action] ?? "gray")}>{c.action}</Badge>
                  </Table.Td>
                  <Table.Td>{c.kind}</Table.Td>
                  <Table.Td fw={600}>{c.name}</Table.Td>
                  <Table.Td>
                    {c.fields.length === 0
                      ? "—"
                      : c.fields.map((f) => (
                          <Text key={f.field} size="sm" style={{ wordBreak: "break-word" }}>
                            <code>{f.field}</code>: {show(f.from)} → {show(f.to)}
                          </Text>
                        ))}
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
    </Stack>
  );
}
