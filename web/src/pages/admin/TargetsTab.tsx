/** Targets: the systems Stint grants access to; the list, and create/edit checked with the API's schema. */
import { Badge, Group, Select, Stack, Text } from "@mantine/core";
import { useState } from "react";
import { targetInput, type TargetDto } from "../../../../src/contract/catalog-api.js";
import { targetKind } from "../../../../src/contract/catalog.js";
import { CatalogFormDialog, CatalogList, useCatalogForm, type Column, type FormProps } from "./catalog-kit.js";
import { JsonField, parseJsonField, pretty, TextField } from "./shared.js";

const FIELDS = ["name", "kind", "address", "credential", "identity", "labels", "options"];

export function TargetsTab() {
  return (
    <CatalogList<TargetDto>
      noun="target"
      path="/v1/targets"
      intro="Systems where roles grant privilege: databases, hosts, directories."
      columns={COLUMNS}
      deleteWhat={(t) => `The target ${t.name} is removed. A target that roles still use cannot be deleted.`}
      Form={TargetForm}
    />
  );
}

const COLUMNS: Column<TargetDto>[] = [
  { header: "Kind", cell: (t) => t.kind },
  { header: "Address", cell: (t) => t.address ?? "—" },
  {
    header: "Credential",
    cell: (t) =>
      t.credential ? (
        <Group gap={6} wrap="nowrap">
          <code>{t.credential.secret}</code>
          {!t.credential.stored && (
            <Badge color="red.9" c="white">
              not stored
            </Badge>
          )}
        </Group>
      ) : (
        "—"
      ),
  },
  {
    // What the definition weakens (clear-text transport, unchecked certificates, replayable sign-ins): the same
    // sentences the API's `warnings` and `stint diff` give.
    header: "Warnings",
    cell: (t) =>
      t.warnings.length === 0 ? (
        "—"
      ) : (
        <Stack gap={4}>
          {t.warnings.map((warning) => (
            <Group key={warning} gap={6} wrap="nowrap" align="flex-start">
              <Badge color="red.9" c="white" miw="max-content">
                weakened
              </Badge>
              <Text size="sm">{warning}</Text>
            </Group>
          ))}
        </Stack>
      ),
  },
  {
    header: "Labels",
    cell: (t) =>
      Object.entries(t.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(", ") || "—",
  },
];

function TargetForm({ item: target, onClose, onSaved }: FormProps<TargetDto>) {
  const [name, setName] = useState(target?.name ?? "");
  const [kind, setKind] = useState<string | null>(target?.kind ?? "postgres");
  const [address, setAddress] = useState(target?.address ?? "");
  const [secret, setSecret] = useState(target?.credential?.secret ?? "");
  const [template, setTemplate] = useState(target?.identity.template ?? "{{name}}");
  const [labels, setLabels] = useState(target ? pretty(target.labels) : "{}");
  const [options, setOptions] = useState(target ? pretty(target.options) : "{}");
  const form = useCatalogForm({
    noun: "target",
    path: "/v1/targets",
    fields: FIELDS,
    fallback: "options",
    item: target,
    onClose,
    onSaved,
  });
  const { errors } = form;

  async function submit() {
    const jsonErrors: Record<string, string> = {};
    const json = (field: string, text: string) => {
      try {
        return parseJsonField(text, {});
      } catch (e) {
        jsonErrors[field] = (e as Error).message;
        return {};
      }
    };
    const body = {
      name: name.trim(),
      kind: kind ?? "",
      ...(address.trim() ? { address: address.trim() } : {}),
      ...(secret.trim() ? { credential: { secret: secret.trim() } } : {}),
      identity: { template: template.trim() || "{{name}}", map: target?.identity.map ?? {} },
      labels: json("labels", labels),
      options: json("options", options),
    };
    await form.send(targetInput.safeParse(body), jsonErrors);
  }

  return (
    <CatalogFormDialog {...form.dialog} onSubmit={() => void submit()}>
      <TextField label="Name" value={name} onChange={setName} error={errors.name} data-autofocus />
      <Select
        label="Kind"
        data={targetKind.options}
        value={kind}
        onChange={setKind}
        error={errors.kind}
        allowDeselect={false}
      />
      <TextField
        label="Address"
        description="host:port, a URL or an LDAP URI, as the kind expects."
        value={address}
        onChange={setAddress}
        error={errors.address}
      />
      <TextField
        label="Credential secret path"
        description="Where the vault keeps the admin credential, e.g. targets/app-db/admin."
        value={secret}
        onChange={setSecret}
        error={errors.credential}
      />
      <TextField
        label="Login template"
        description="How a Stint user maps to a login: {{name}}, {{email}} or {{emailLocal}}."
        value={template}
        onChange={setTemplate}
        error={errors.identity}
      />
      <JsonField label="Labels (JSON)" value={labels} onChange={setLabels} error={errors.labels} />
      <JsonField
        label="Options (JSON)"
        description="Settings of this kind of target."
        value={options}
        onChange={setOptions}
        error={errors.options}
      />
    </CatalogFormDialog>
  );
}
