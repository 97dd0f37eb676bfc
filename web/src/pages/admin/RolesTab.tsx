/** Roles: the list, and create/edit in a dialog checked with the API's own schema before sending. */
import { Badge, Select, TagsInput, TextInput } from "@mantine/core";
import { useState } from "react";
import { roleInput, type PolicyDto, type RoleDto, type TargetDto } from "../../../../src/contract/catalog-api.js";
import { toneProps, type Tone } from "../requests/shared.js";
import { CatalogFormDialog, CatalogList, useCatalogSave, type Column, type FormProps } from "./catalog-kit.js";
import { clientErrors, JsonField, parseJsonField, pretty, useList } from "./shared.js";

const FIELDS = ["name", "description", "target", "policy", "risk", "owners", "entitlement"];
const RISK_TONE: Record<RoleDto["risk"], Tone> = { low: "gray", medium: "yellow", high: "orange", critical: "red" };

export function RolesTab() {
  return (
    <CatalogList<RoleDto>
      noun="role"
      path="/v1/roles"
      intro="A role is what people activate: an entitlement at a target, under a policy."
      columns={COLUMNS}
      deleteWhat={(r) =>
        `The role ${r.name} and its eligibilities are removed; a role with activation history cannot be deleted.`
      }
      Form={RoleForm}
    />
  );
}

const COLUMNS: Column<RoleDto>[] = [
  { header: "Target", cell: (r) => r.target },
  { header: "Policy", cell: (r) => r.policy },
  { header: "Risk", cell: (r) => <Badge {...toneProps(RISK_TONE[r.risk])}>{r.risk}</Badge> },
  { header: "Owners", cell: (r) => r.owners.join(", ") || "—" },
  { header: "Description", cell: (r) => r.description ?? "" },
];

function RoleForm({ item: role, onClose, onSaved }: FormProps<RoleDto>) {
  const targets = useList<TargetDto>("/v1/targets").items ?? [];
  const policies = useList<PolicyDto>("/v1/policies").items ?? [];
  const [name, setName] = useState(role?.name ?? "");
  const [description, setDescription] = useState(role?.description ?? "");
  const [target, setTarget] = useState<string | null>(role?.target ?? null);
  const [policy, setPolicy] = useState<string | null>(role?.policy ?? null);
  const [risk, setRisk] = useState<string | null>(role?.risk ?? "medium");
  const [owners, setOwners] = useState<string[]>(role?.owners ?? []);
  const [entitlement, setEntitlement] = useState(role ? pretty(role.entitlement) : "{}");
  const { errors, setErrors, error, busy, save, notice } = useCatalogSave({
    path: "/v1/roles",
    fields: FIELDS,
    fallback: "entitlement",
  });

  async function submit() {
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
    await save(role, parsed.data, onSaved);
  }

  const withCurrent = (names: string[], current: string | null) =>
    current && !names.includes(current) ? [current, ...names] : names;
  return (
    <CatalogFormDialog
      noun="role"
      editing={role?.name ?? null}
      error={error}
      notice={notice}
      busy={busy}
      onSubmit={() => void submit()}
      onClose={onClose}
    >
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
    </CatalogFormDialog>
  );
}
