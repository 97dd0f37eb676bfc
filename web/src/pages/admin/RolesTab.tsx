/** Roles: the list, and create/edit in a dialog checked with the API's own schema before sending. */
import { Badge, Button, Group, Modal, Select, Stack, Table, TagsInput, Text, TextInput } from "@mantine/core";
import { useState } from "react";
import { roleInput, type PolicyDto, type RoleDto, type TargetDto } from "../../../../src/contract/catalog-api.js";
import { api } from "../../api.js";
import { toneProps, type Tone } from "../requests/shared.js";
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

const FIELDS = ["name", "description", "target", "policy", "risk", "owners", "entitlement"];
const RISK_TONE: Record<RoleDto["risk"], Tone> = { low: "gray", medium: "yellow", high: "orange", critical: "red" };

export function RolesTab() {
  const { items, error, reload } = useList<RoleDto>("/v1/roles");
  const [editing, setEditing] = useState<RoleDto | "new" | null>(null);
  const [deleting, setDeleting] = useState<RoleDto | null>(null);
  const write = canWriteCatalog();
  return (
    <Stack>
      <Group justify="space-between">
        <Text c="dimmed" size="sm">
          A role is what people activate: an entitlement at a target, under a policy.
        </Text>
        {write && <Button onClick={() => setEditing("new")}>New role</Button>}
      </Group>
      <FormAlert message={error} />
      <Table.ScrollContainer minWidth={760}>
        <Table striped highlightOnHover>
          <Table.Thead>
            <Table.Tr>
              <Table.Th>Name</Table.Th>
              <Table.Th>Target</Table.Th>
              <Table.Th>Policy</Table.Th>
              <Table.Th>Risk</Table.Th>
              <Table.Th>Owners</Table.Th>
              <Table.Th>Description</Table.Th>
              {write && <Table.Th>Actions</Table.Th>}
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {items?.map((r) => (
              <Table.Tr key={r.id}>
                <Table.Td fw={600}>{r.name}</Table.Td>
                <Table.Td>{r.target}</Table.Td>
                <Table.Td>{r.policy}</Table.Td>
                <Table.Td>
                  <Badge {...toneProps(RISK_TONE[r.risk])}>{r.risk}</Badge>
                </Table.Td>
                <Table.Td>{r.owners.join(", ") || "—"}</Table.Td>
                <Table.Td>{r.description ?? ""}</Table.Td>
                {write && (
                  <RowActions subject={`role ${r.name}`} onEdit={() => setEditing(r)} onDelete={() => setDeleting(r)} />
                )}
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </Table.ScrollContainer>
      {items?.length === 0 && <Text c="dimmed">No roles yet.</Text>}
      {editing && (
        <RoleForm
          role={editing === "new" ? null : editing}
          onClose={() => setEditing(null)}
          onSaved={() => {
            setEditing(null);
            void reload();
          }}
        />
      )}
      {deleting && (
        <ConfirmDelete
          title={`Delete role ${deleting.name}`}
          what={`The role ${deleting.name} and its eligibilities are removed; a role with activation history cannot be deleted.`}
          confirmLabel="Delete role"
          onConfirm={async () => {
            await api("DELETE", `/v1/roles/${encodeURIComponent(deleting.name)}`);
            await reload();
          }}
          onClose={() => setDeleting(null)}
        />
      )}
    </Stack>
  );
}

function RoleForm({ role, onClose, onSaved }: { role: RoleDto | null; onClose: () => void; onSaved: () => void }) {
  const targets = useList<TargetDto>("/v1/targets").items ?? [];
  const policies = useList<PolicyDto>("/v1/policies").items ?? [];
  const [name, setName] = useState(role?.name ?? "");
  const [description, setDescription] = useState(role?.description ?? "");
  const [target, setTarget] = useState<string | null>(role?.target ?? null);
  const [policy, setPolicy] = useState<string | null>(role?.policy ?? null);
  const [risk, setRisk] = useState<string | null>(role?.risk ?? "medium");
  const [owners, setOwners] = useState<string[]>(role?.owners ?? []);
  const [entitlement, setEntitlement] = useState(role ? pretty(role.entitlement) : "{}");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit() {
    setError(null);
    let entitlementValue: unknown;
    try {
      entitlementValue = parseJsonField(entitlement, {});
    } catch (e) {
      setErrors({ entitlement: (e as Error).message });
      return;
    }
    const body = {
      name: name.trim(),
      ...(description.trim() ? { description: description.trim() } : {}),
      target: target ?? "",
      policy: policy ?? "",
      risk: risk ?? "",
      owners,
      entitlement: entitlementValue,
    };
    // The API's own schema: what it would refuse is shown here and nothing is sent.
    const parsed = roleInput.safeParse(body);
    if (!parsed.success) {
      const found = clientErrors(parsed.error, FIELDS, "entitlement");
      if (!target) found.target = "Choose a target.";
      if (!policy) found.policy = "Choose a policy.";
      setErrors(found);
      return;
    }
    setErrors({});
    setBusy(true);
    try {
      if (role) await api("PUT", `/v1/roles/${encodeURIComponent(role.name)}`, parsed.data);
      else await api("POST", "/v1/roles", parsed.data);
      onSaved();
    } catch (e) {
      const found = serverErrors(e, FIELDS, "entitlement", { ALREADY_EXISTS: "name" });
      setErrors(found.fields);
      setError(found.message);
    } finally {
      setBusy(false);
    }
  }

  const withCurrent = (names: string[], current: string | null) =>
    current && !names.includes(current) ? [current, ...names] : names;
  return (
    <Modal
      opened
      closeButtonProps={{ "aria-label": "Close" }}
      onClose={onClose}
      title={role ? `Edit role ${role.name}` : "New role"}
      size="lg"
    >
      <Stack>
        <FormAlert message={error} />
        <TextInput
          label="Name"
          description="Lower-case letters, digits, '.', '_' or '-'."
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
        <Select
          label="Target"
          data={withCurrent(
            targets.map((t) => t.name),
            target,
          )}
          value={target}
          onChange={setTarget}
          error={errors.target}
          searchable
        />
        <Select
          label="Policy"
          data={withCurrent(
            policies.map((p) => p.name),
            policy,
          )}
          value={policy}
          onChange={setPolicy}
          error={errors.policy}
          searchable
        />
        <Select
          label="Risk"
          data={["low", "medium", "high", "critical"]}
          value={risk}
          onChange={setRisk}
          error={errors.risk}
          allowDeselect={false}
        />
        <TagsInput
          label="Owners"
          description="Groups that own the role; press Enter after each."
          value={owners}
          onChange={setOwners}
          error={errors.owners}
        />
        <JsonField
          label="Entitlement (JSON)"
          description="What activating the role grants at its target; its shape belongs to the target's kind."
          value={entitlement}
          onChange={setEntitlement}
          error={errors.entitlement}
        />
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>
            Cancel
          </Button>
          <Button onClick={() => void submit()} loading={busy}>
            {role ? "Save role" : "Create role"}
          </Button>
        </Group>
      </Stack>
    </Modal>
  );
}
