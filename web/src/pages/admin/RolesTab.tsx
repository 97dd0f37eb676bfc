/** Roles: the list, and create/edit in a dialog checked with the API's own schema before sending. */
import { Badge, Select, TagsInput } from "@mantine/core";
import { useState } from "react";
import { roleInput, type PolicyDto, type RoleDto, type TargetDto } from "../../../../src/contract/catalog-api.js";
import { toneProps, type Tone } from "../requests/shared.js";
import { CatalogFormDialog, CatalogList, useCatalogForm, type Column, type FormProps } from "./catalog-kit.js";
import { JsonField, parseJsonField, pretty, TextField, useList } from "./shared.js";

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
  const form = useCatalogForm({
    noun: "role",
    path: "/v1/roles",
    fields: FIELDS,
    fallback: "entitlement",
    item: role,
    onClose,
    onSaved,
  });
  const { errors } = form;

  async function submit() {
    let entitlementValue: unknown;
    try {
      entitlementValue = parseJsonField(entitlement, {});
    } catch (e) {
      form.setErrors({ entitlement: (e as Error).message });
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
    await form.send(roleInput.safeParse(body), {
      ...(target ? {} : { target: "Choose a target." }),
      ...(policy ? {} : { policy: "Choose a policy." }),
    });
  }

  const withCurrent = (names: string[], current: string | null) =>
    current && !names.includes(current) ? [current, ...names] : names;
  return (
    <CatalogFormDialog {...form.dialog} onSubmit={() => void submit()}>
      <TextField
        label="Name"
        description="Lower-case letters, digits, '.', '_' or '-'."
        value={name}
        onChange={setName}
        error={errors.name}
        data-autofocus
      />
      <TextField label="Description" value={description} onChange={setDescription} error={errors.description} />
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
