/**
 * Configuration as code: the catalog exported as YAML, edited here, its plan shown as a diff, and
 * applied. Problems of the file are listed by line and column.
 */
import { Alert, Badge, Button, Code, Group, Stack, Table, Text, Textarea, Title } from "@mantine/core";
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
      if (action === "diff") setPlan(await api<ConfigPlanDto>("POST", "/v1/config/diff", parsed.data));
      else {
        const result = await api<ConfigApplyResultDto>("POST", "/v1/config/apply", parsed.data);
        setApplied(result);
        setPlan(result);
        const { yaml: text } = await api<{ yaml: string }>("GET", "/v1/config/export");
        setExported(text);
      }
    } catch (e) {
      setPlan(null);
      const listed = e instanceof ApiError ? (e.details?.problems as ConfigProblem[] | undefined) : undefined;
      if (listed && listed.length > 0) setProblems(listed);
      setError((e as Error).message);
    } finally {
      setBusy(null);
    }
  }

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
        <Code
          block
          mah={320}
          style={{ overflow: "auto" }}
          role="region"
          aria-label="Current configuration (YAML)"
          tabIndex={0}
        >
          {exported}
        </Code>
      )}
      <Textarea
        label="Configuration to plan (YAML)"
        value={yaml}
        onChange={(e) => {
          setYaml(e.currentTarget.value);
          setPlan(null);
          setApplied(null);
        }}
        autosize
        minRows={8}
        maxRows={30}
        spellCheck={false}
        styles={{ input: { fontFamily: "var(--mantine-font-family-monospace)", fontSize: 13 } }}
      />
      <Group>
        <Button variant="default" onClick={() => void run("diff")} loading={busy === "diff"}>
          Show diff
        </Button>
        {write && (
          <Button onClick={() => void run("apply")} loading={busy === "apply"} disabled={busy !== null}>
            Apply
          </Button>
        )}
        <Button variant="subtle" onClick={() => void load()}>
          Reset to current
        </Button>
      </Group>
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
      {plan && <PlanView plan={plan} applied={applied?.applied ?? null} />}
    </Stack>
  );
}

function PlanView({ plan, applied }: { plan: ConfigPlanDto; applied: boolean | null }) {
  const { create, update, delete: remove } = plan.summary;
  return (
    <Stack gap="sm">
      <Title order={2} size="h4">
        {applied === null ? "Planned changes" : "Applied changes"}
      </Title>
      {applied !== null && (
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
