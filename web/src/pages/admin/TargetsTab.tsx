/** Targets: the systems Stint grants access to; the list, and create/edit checked with the API's schema. */
import { Badge, Button, Group, Modal, Select, Stack, Table, Text, TextInput } from "@mantine/core";
import { useState } from "react";
import { targetInput, type TargetDto } from "../../../../src/contract/catalog-api.js";
import { targetKind } from "../../../../src/contract/catalog.js";
import { api } from "../../api.js";
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

const FIELDS = ["name", "kind", "address", "credential", "identity", "labels", "options"];

export function TargetsTab() {
  const { items, error, reload } = useList<TargetDto>("/v1/targets");
  const [editing, setEditing] = useState<TargetDto | "new" | null>(null);
  const [deleting, setDeleting] = useState<TargetDto | null>(null);
  const write = canWriteCatalog();
  return (
    <Stack>
      <Group justify="space-between">
        <Text c="dimmed" size="sm">
          Systems where roles grant privilege: databases, hosts, directories.
        </Text>
        {write && <Button onClick={() => setEditing("new")}>New target</Button>}
      </Group>
      <FormAlert message={error} />
      <Table.ScrollContainer minWidth={760}>
        <Table striped highlightOnHover>
          <Table.Thead>
            <Table.Tr>
              <Table.Th>Name</Table.Th>
              <Table.Th>Kind</Table.Th>
              <Table.Th>Address</Table.Th>
              <Table.Th>Credential</Table.Th>
              <Table.Th>Labels</Table.Th>
              {write && <Table.Th>Actions</Table.Th>}
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {items?.map((t) => (
              <Table.Tr key={t.id}>
                <Table.Td fw={600}>{t.name}</Table.Td>
                <Table.Td>{t.kind}</Table.Td>
                <Table.Td>{t.address ?? "—"}</Table.Td>
                <Table.Td>
                  {t.credential ? (
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
                  )}
                </Table.Td>
                <Table.Td>
                  {Object.entries(t.labels)
                    .map(([k, v]) => `${k}=${v}`)
                    .join(", ") || "—"}
                </Table.Td>
                {write && (
                  <RowActions
                    subject={`target ${t.name}`}
                    onEdit={() => setEditing(t)}
                    onDelete={() => setDeleting(t)}
                  />
                )}
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </Table.ScrollContainer>
      {items?.length === 0 && <Text c="dimmed">No targets yet.</Text>}
      {editing && (
        <TargetForm
          target={editing === "new" ? null : editing}
          onClose={() => setEditing(null)}
          onSaved={() => {
            setEditing(null);
            void reload();
          }}
        />
      )}
      {deleting && (
        <ConfirmDelete
          title={`Delete target ${deleting.name}`}
          what={`The target ${deleting.name} is removed. A target that roles still use cannot be deleted.`}
          confirmLabel="Delete target"
          onConfirm={async () => {
            await api("DELETE", `/v1/targets/${encodeURIComponent(deleting.name)}`);
            await reload();
          }}
          onClose={() => setDeleting(null)}
        />
      )}
    </Stack>
  );
}

function TargetForm({
  target,
  onClose,
  onSaved,
}: {
  target: TargetDto | null;
  onClose: () => void;
  onSaved: () => void;
}) {
  const [name, setName] = useState(target?.name ?? "");
  const [kind, setKind] = useState<string | null>(target?.kind ?? "postgres");
  const [address, setAddress] = useState(target?.address ?? "");
  const [secret, setSecret] = useState(target?.credential?.secret ?? "");
  const [template, setTemplate] = useState(target?.identity.template ?? "{{name}}");
  const [labels, setLabels] = useState(target ? pretty(target.labels) : "{}");
  const [options, setOptions] = useState(target ? pretty(target.options) : "{}");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit() {
    setError(null);
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
    const parsed = targetInput.safeParse(body);
    if (!parsed.success || Object.keys(jsonErrors).length > 0) {
      setErrors({ ...(parsed.success ? {} : clientErrors(parsed.error, FIELDS, "options")), ...jsonErrors });
      return;
    }
    setErrors({});
    setBusy(true);
    try {
      if (target) await api("PUT", `/v1/targets/${encodeURIComponent(target.name)}`, parsed.data);
      else await api("POST", "/v1/targets", parsed.data);
      onSaved();
    } catch (e) {
      const found = serverErrors(e, FIELDS, "options", { ALREADY_EXISTS: "name" });
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
      title={target ? `Edit target ${target.name}` : "New target"}
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
        <Select
          label="Kind"
          data={targetKind.options}
          value={kind}
          onChange={setKind}
          error={errors.kind}
          allowDeselect={false}
        />
        <TextInput
          label="Address"
          description="host:port, a URL or an LDAP URI, as the kind expects."
          value={address}
          onChange={(e) => setAddress(e.currentTarget.value)}
          error={errors.address}
        />
        <TextInput
          label="Credential secret path"
          description="Where the vault keeps the admin credential, e.g. targets/app-db/admin."
          value={secret}
          onChange={(e) => setSecret(e.currentTarget.value)}
          error={errors.credential}
        />
        <TextInput
          label="Login template"
          description="How a Stint user maps to a login: {{name}}, {{email}} or {{emailLocal}}."
          value={template}
          onChange={(e) => setTemplate(e.currentTarget.value)}
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
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>
            Cancel
          </Button>
          <Button onClick={() => void submit()} loading={busy}>
            {target ? "Save target" : "Create target"}
          </Button>
        </Group>
      </Stack>
    </Modal>
  );
}
