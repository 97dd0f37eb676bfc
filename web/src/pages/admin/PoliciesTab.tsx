/**
 * Policies: how a role is activated. The main settings have their own fields, approval stages their
 * editor with approvers picked from the directory; the rest of the spec (windows, session rules…) is edited
 * as JSON. Checked with the API's schema before sending.
 */
import { Button, Group, Modal, NumberInput, Stack, Switch, Table, Text, TextInput } from "@mantine/core";
import { useState } from "react";
import { policyInput, type PolicyDto } from "../../../../src/contract/catalog-api.js";
import { policySpec } from "../../../../src/contract/catalog.js";
import { api } from "../../api.js";
import { policyInWords } from "../../ui.js";
import {
  canWriteCatalog,
  clientErrors,
  ConfirmDelete,
  FormAlert,
  JsonField,
  parseJsonField,
  pretty,
  serverErrors,
  useList,
  RowActions,
} from "./shared.js";
import { StagesEditor } from "./pickers.js";

const FIELDS = [
  "name",
  "description",
  "spec.defaultDuration",
  "spec.maxDuration",
  "spec.mfa.required",
  "spec.justification.minLength",
  "spec.approval.stages",
];
const ADVANCED = "advanced";

type Spec = PolicyDto["spec"];
type Json = Record<string, unknown>;

/** The spec without the fields that have their own inputs. */
function advancedPart(spec: Spec): Json {
  const { defaultDuration: _d, maxDuration: _m, mfa, justification, approval, ...rest } = spec;
  const { required: _r, ...mfaRest } = mfa;
  const { minLength: _l, ...justificationRest } = justification;
  const { stages: _s, ...approvalRest } = approval;
  return { ...rest, approval: approvalRest, mfa: mfaRest, justification: justificationRest };
}

function summary(spec: Spec): string {
  return policyInWords({
    defaultDuration: spec.defaultDuration,
    maxDuration: spec.maxDuration,
    approvalRequired: spec.approval.stages.length > 0,
    approvalStages: spec.approval.stages.length,
    mfaRequired: spec.mfa.required,
    ticketRequired: spec.justification.ticketRequired,
    breakGlass: spec.breakGlass,
  });
}

export function PoliciesTab() {
  const { items, error, reload } = useList<PolicyDto>("/v1/policies");
  const [editing, setEditing] = useState<PolicyDto | "new" | null>(null);
  const [deleting, setDeleting] = useState<PolicyDto | null>(null);
  const write = canWriteCatalog();
  return (
    <Stack>
      <Group justify="space-between">
        <Text c="dimmed" size="sm">
          How long, with which approvals and checks, a role may be activated.
        </Text>
        {write && <Button onClick={() => setEditing("new")}>New policy</Button>}
      </Group>
      <FormAlert message={error} />
      <Table.ScrollContainer minWidth={760}>
        <Table striped highlightOnHover>
          <Table.Thead>
            <Table.Tr>
              <Table.Th>Name</Table.Th>
              <Table.Th>Rules</Table.Th>
              <Table.Th>Used by</Table.Th>
              <Table.Th>Description</Table.Th>
              {write && <Table.Th>Actions</Table.Th>}
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {items?.map((p) => (
              <Table.Tr key={p.id}>
                <Table.Td fw={600}>{p.name}</Table.Td>
                <Table.Td>{summary(p.spec)}</Table.Td>
                <Table.Td>{p.roles.join(", ") || "—"}</Table.Td>
                <Table.Td>{p.description ?? ""}</Table.Td>
                {write && (
                  <RowActions
                    subject={`policy ${p.name}`}
                    onEdit={() => setEditing(p)}
                    onDelete={() => setDeleting(p)}
                  />
                )}
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </Table.ScrollContainer>
      {items?.length === 0 && <Text c="dimmed">No policies yet.</Text>}
      {editing && (
        <PolicyForm
          policy={editing === "new" ? null : editing}
          onClose={() => setEditing(null)}
          onSaved={() => {
            setEditing(null);
            void reload();
          }}
        />
      )}
      {deleting && (
        <ConfirmDelete
          title={`Delete policy ${deleting.name}`}
          what={`The policy ${deleting.name} is removed. A policy that roles still use cannot be deleted.`}
          confirmLabel="Delete policy"
          onConfirm={async () => {
            await api("DELETE", `/v1/policies/${encodeURIComponent(deleting.name)}`);
            await reload();
          }}
          onClose={() => setDeleting(null)}
        />
      )}
    </Stack>
  );
}

const DEFAULT_SPEC: Spec = policySpec.parse({});

function PolicyForm({
  policy,
  onClose,
  onSaved,
}: {
  policy: PolicyDto | null;
  onClose: () => void;
  onSaved: () => void;
}) {
  const spec = policy?.spec ?? DEFAULT_SPEC;
  const [name, setName] = useState(policy?.name ?? "");
  const [description, setDescription] = useState(policy?.description ?? "");
  const [defaultDuration, setDefaultDuration] = useState(spec.defaultDuration);
  const [maxDuration, setMaxDuration] = useState(spec.maxDuration);
  const [mfaRequired, setMfaRequired] = useState(spec.mfa.required);
  const [minLength, setMinLength] = useState<number | string>(spec.justification.minLength);
  const [stages, setStages] = useState(spec.approval.stages);
  const [advanced, setAdvanced] = useState(pretty(advancedPart(spec)));
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit() {
    setError(null);
    let rest: Json;
    try {
      const value = parseJsonField(advanced, {});
      if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("must be a JSON object");
      rest = value as Json;
    } catch (e) {
      setErrors({ [ADVANCED]: (e as Error).message });
      return;
    }
    const body = {
      name: name.trim(),
      ...(description.trim() ? { description: description.trim() } : {}),
      spec: {
        ...rest,
        approval: { ...((rest.approval as Json | undefined) ?? {}), stages },
        defaultDuration: defaultDuration.trim(),
        maxDuration: maxDuration.trim(),
        mfa: { ...((rest.mfa as Json | undefined) ?? {}), required: mfaRequired },
        justification: {
          ...((rest.justification as Json | undefined) ?? {}),
          minLength: typeof minLength === "number" ? minLength : Number.NaN,
        },
      },
    };
    const parsed = policyInput.safeParse(body);
    if (!parsed.success) {
      setErrors(clientErrors(parsed.error, FIELDS, ADVANCED));
      return;
    }
    setErrors({});
    setBusy(true);
    try {
      if (policy) await api("PUT", `/v1/policies/${encodeURIComponent(policy.name)}`, parsed.data);
      else await api("POST", "/v1/policies", parsed.data);
      onSaved();
    } catch (e) {
      const found = serverErrors(e, FIELDS, ADVANCED, { ALREADY_EXISTS: "name" });
      setErrors(found.fields);
      setError(found.message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <Modal
      opened
      closeButtonProps={{ "aria-label": "Close" }}
      onClose={onClose}
      title={policy ? `Edit policy ${policy.name}` : "New policy"}
      size="lg"
    >
      <Stack>
        <FormAlert message={error} />
        <TextInput
          label="Name"
          value={name}
          onChange={(e) => setName(e.currentTarget.value)}
          error={errors.name}
          data-autofocus
        />
        <TextInput
          label="Description"
          value={description}
          onChange={(e) => setDescription(e.currentTarget.value)}
          error={errors.description}
        />
        <Group grow align="flex-start">
          <TextInput
            label="Default duration"
            description="Like 30m, 1h or 1d."
            value={defaultDuration}
            onChange={(e) => setDefaultDuration(e.currentTarget.value)}
            error={errors["spec.defaultDuration"]}
          />
          <TextInput
            label="Maximum duration"
            description="The longest activation."
            value={maxDuration}
            onChange={(e) => setMaxDuration(e.currentTarget.value)}
            error={errors["spec.maxDuration"]}
          />
        </Group>
        <Group grow align="flex-start">
          <NumberInput
            label="Minimum reason length"
            min={0}
            max={1000}
            allowDecimal={false}
            value={minLength}
            onChange={setMinLength}
            error={errors["spec.justification.minLength"]}
          />
        </Group>
        <StagesEditor stages={stages} onChange={setStages} error={errors["spec.approval.stages"]} />
        <Switch
          label="Require a fresh MFA check to activate"
          checked={mfaRequired}
          onChange={(e) => setMfaRequired(e.currentTarget.checked)}
          error={errors["spec.mfa.required"]}
        />
        <JsonField
          label="Advanced settings (JSON)"
          description="Windows, extensions, break-glass, session rules…"
          value={advanced}
          onChange={setAdvanced}
          error={errors[ADVANCED]}
        />
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>
            Cancel
          </Button>
          <Button onClick={() => void submit()} loading={busy}>
            {policy ? "Save policy" : "Create policy"}
          </Button>
        </Group>
      </Stack>
    </Modal>
  );
}
