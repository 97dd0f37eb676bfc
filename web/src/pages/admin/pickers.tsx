/**
 * Pickers fed by the directory API for the administration forms: people and groups are chosen from what
 * exists (searchable lists), not typed, and approval stages are edited as stages with their approvers.
 */
import {
  ActionIcon,
  Button,
  Checkbox,
  Group,
  MultiSelect,
  NumberInput,
  Paper,
  Select,
  Stack,
  Text,
  TextInput,
} from "@mantine/core";
import { useEffect, useState } from "react";
import type { PolicyDto } from "../../../../src/contract/catalog-api.js";
import { api } from "../../api.js";

export interface Directory {
  /** Users and service identities, by name, with a label that says which and who. */
  principals: { value: string; label: string }[];
  groups: { value: string; label: string }[];
}

/** How long a directory read is reused by the pickers that open after it (users created meanwhile appear after this). */
const DIRECTORY_MAX_AGE_MS = 30_000;
let directory: { read: Promise<Directory>; at: number } | null = null;

/** The directory's names, shared by every picker on the page and read again when older than 30 s. */
export function useDirectory(): { directory: Directory | null; error: string | null } {
  const [value, setValue] = useState<Directory | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (!directory || Date.now() - directory.at > DIRECTORY_MAX_AGE_MS)
      directory = { read: readDirectory(), at: Date.now() };
    let live = true;
    directory.read.then(
      (d) => live && setValue(d),
      (e: unknown) => {
        directory = null;
        if (live) setError((e as Error).message);
      },
    );
    return () => {
      live = false;
    };
  }, []);
  return { directory: value, error };
}

function readDirectory(): Promise<Directory> {
  return Promise.all([
    api<{ items: { name: string; kind: string; displayName: string | null; status: string }[] }>("GET", "/v1/users"),
    api<{ items: { name: string; description: string | null; members: string[] }[] }>("GET", "/v1/groups"),
  ]).then(([users, groups]) => ({
    principals: users.items
      .filter((u) => u.status === "active")
      .map((u) => ({
        value: u.name,
        label: `${u.name}${u.displayName ? ` (${u.displayName})` : ""}${u.kind === "service" ? " · service" : ""}`,
      })),
    groups: groups.items.map((g) => ({
      value: g.name,
      label: `${g.name} · ${g.members.length} member${g.members.length === 1 ? "" : "s"}`,
    })),
  }));
}

/** Options for a picker: the directory's, plus any value already set that the directory does not list. */
export function withCurrent(options: { value: string; label: string }[], current: readonly string[]) {
  const known = new Set(options.map((o) => o.value));
  return [...options, ...current.filter((v) => !known.has(v)).map((v) => ({ value: v, label: `${v} (not found)` }))];
}

type Stage = PolicyDto["spec"]["approval"]["stages"][number];
type Approvers = Stage["approvers"];

function ApproversPicker({
  value,
  onChange,
  directory,
  label,
}: {
  value: Approvers;
  onChange: (value: Approvers) => void;
  directory: Directory | null;
  label: string;
}) {
  return (
    <Stack gap={6}>
      <MultiSelect
        label={`${label}: users`}
        placeholder={value.users.length === 0 ? "Pick users" : undefined}
        data={withCurrent(directory?.principals ?? [], value.users)}
        value={value.users}
        onChange={(users) => onChange({ ...value, users })}
        searchable
        clearable
        nothingFoundMessage="No such user"
      />
      <MultiSelect
        label={`${label}: groups`}
        placeholder={value.groups.length === 0 ? "Pick groups" : undefined}
        data={withCurrent(directory?.groups ?? [], value.groups)}
        value={value.groups}
        onChange={(groups) => onChange({ ...value, groups })}
        searchable
        clearable
        nothingFoundMessage="No such group"
      />
      <Checkbox
        label="The requester's manager"
        checked={value.manager}
        onChange={(e) => onChange({ ...value, manager: e.currentTarget.checked })}
      />
    </Stack>
  );
}

const NEW_STAGE = (previous: Stage | undefined, index: number): Stage => ({
  name: `stage ${index + 1}`,
  approvers: previous?.approvers ?? { users: [], groups: [], manager: true },
  count: 1,
  onTimeout: "deny",
});

/** The policy's approval stages: each with a name, its approvers (picked) and how many approvals it needs. */
export function StagesEditor({
  stages,
  onChange,
  error,
}: {
  stages: Stage[];
  onChange: (stages: Stage[]) => void;
  error?: string | undefined;
}) {
  const { directory, error: directoryError } = useDirectory();
  const set = (i: number, stage: Stage) => onChange(stages.map((s, j) => (j === i ? stage : s)));
  return (
    <Stack gap="xs">
      <Group justify="space-between">
        <Text size="sm" fw={500}>
          Approval stages
        </Text>
        <Button
          size="xs"
          variant="light"
          disabled={stages.length >= 5}
          onClick={() => onChange([...stages, NEW_STAGE(stages.at(-1), stages.length)])}
        >
          Add stage
        </Button>
      </Group>
      {stages.length === 0 && (
        <Text size="sm" c="dimmed">
          No approval: an eligible user activates on their own (with the checks below).
        </Text>
      )}
      {directoryError && (
        <Text size="sm" c="red.8">
          The directory could not be read ({directoryError}); names already set are kept.
        </Text>
      )}
      {stages.map((stage, i) => (
        <Paper key={i} withBorder p="sm" role="group" aria-label={`Approval stage ${i + 1}`}>
          <Stack gap={6}>
            <Group align="flex-end" wrap="nowrap">
              <TextInput
                label={`Stage ${i + 1} name`}
                value={stage.name ?? ""}
                onChange={(e) => set(i, { ...stage, name: e.currentTarget.value })}
                style={{ flex: 1 }}
              />
              <NumberInput
                label="Approvals needed"
                min={1}
                max={10}
                allowDecimal={false}
                value={stage.count}
                onChange={(v) => set(i, { ...stage, count: typeof v === "number" ? v : 1 })}
                w={150}
              />
              <ActionIcon
                variant="subtle"
                color="red"
                size="lg"
                aria-label={`Remove stage ${i + 1}`}
                onClick={() => onChange(stages.filter((_, j) => j !== i))}
              >
                ×
              </ActionIcon>
            </Group>
            <ApproversPicker
              label={`Stage ${i + 1} approvers`}
              value={stage.approvers}
              onChange={(approvers) => set(i, { ...stage, approvers })}
              directory={directory}
            />
            <Group grow align="flex-start">
              <TextInput
                label="Decide within"
                description="Like 4h; empty: no deadline."
                value={stage.timeout ?? ""}
                onChange={(e) => {
                  const { timeout: _t, ...rest } = stage;
                  const timeout = e.currentTarget.value.trim();
                  set(i, timeout ? { ...rest, timeout } : rest);
                }}
              />
              <Select
                label="When nobody decides in time"
                data={[
                  { value: "deny", label: "Deny the request" },
                  { value: "escalate", label: "Escalate" },
                  { value: "approve", label: "Approve the stage" },
                ]}
                value={stage.onTimeout}
                allowDeselect={false}
                onChange={(v) => {
                  const onTimeout = (v ?? "deny") as Stage["onTimeout"];
                  const { escalateTo, ...rest } = stage;
                  set(
                    i,
                    onTimeout === "escalate"
                      ? { ...rest, onTimeout, escalateTo: escalateTo ?? { users: [], groups: [], manager: true } }
                      : { ...rest, onTimeout },
                  );
                }}
              />
            </Group>
            {stage.onTimeout === "escalate" && stage.escalateTo && (
              <ApproversPicker
                label={`Stage ${i + 1} escalates to`}
                value={stage.escalateTo}
                onChange={(escalateTo) => set(i, { ...stage, escalateTo })}
                directory={directory}
              />
            )}
          </Stack>
        </Paper>
      ))}
      {error && (
        <Text size="sm" c="red.8" role="alert">
          {error}
        </Text>
      )}
    </Stack>
  );
}
