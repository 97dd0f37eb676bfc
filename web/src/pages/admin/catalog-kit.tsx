/**
 * The shape every catalog tab shares, written once: a list with New / Edit / Delete, and the edit dialog's
 * save (PUT to the item or POST to the list, the server's refusals shown next to their fields). A tab
 * declares its columns and its form's fields; the rest is here.
 */
import { Button, Group, Modal, Stack, Table, Text } from "@mantine/core";
import { useState, type ReactNode } from "react";
import type { ZodError } from "zod";
import { api } from "../../api.js";
import {
  canWriteCatalog,
  clientErrors,
  ConfirmDelete,
  FormAlert,
  HeldAlert,
  heldMessage,
  RowActions,
  serverErrors,
  useList,
} from "./shared.js";

export interface Column<T> {
  header: string;
  cell: (item: T) => ReactNode;
}

export interface FormProps<T> {
  /** null: a new one. */
  item: T | null;
  onClose: () => void;
  onSaved: () => void;
}

/** How a list removes an item, when not by `DELETE {path}/{name}` under the word "Delete". */
export interface Removal<T> {
  /** The action's word: "Remove". */
  verb: string;
  /** The item's URL, e.g. by its id. */
  url: (item: T) => string;
  /** The dialog's title. */
  title: (item: T) => string;
  /** The request's body, if the API wants one. */
  body?: unknown;
}

/** The list of one kind of catalog object (targets, roles, policies, eligibility) with its New, Edit and Delete. */
export function CatalogList<T extends { id: string }>(props: {
  /** "target", "role", "policy": used in button names, titles and the empty text. */
  noun: string;
  /** The API's collection, e.g. /v1/targets. */
  path: string;
  intro: string;
  /** The first, bold column (default: Name, the item's `name`). */
  first?: Column<T>;
  columns: Column<T>[];
  /** How a row is named to screen readers and in titles (default: "{noun} {name}"). */
  subject?: (item: T) => string;
  /** What deleting it removes and when the server refuses, in a sentence. */
  deleteWhat: (item: T) => string;
  removal?: Removal<T>;
  /** Said when the list is empty (default: "No {nouns} yet."). */
  empty?: string;
  minWidth?: number;
  Form: (props: FormProps<T>) => ReactNode;
}) {
  const { noun, path, Form } = props;
  const first = props.first ?? { header: "Name", cell: nameOf };
  const subject = props.subject ?? ((item: T) => `${noun} ${nameOf(item)}`);
  const removal: Removal<T> = props.removal ?? {
    verb: "Delete",
    url: (item) => itemUrl(path, item),
    title: (item) => `Delete ${subject(item)}`,
  };
  const { items, error, reload } = useList<T>(path);
  const [editing, setEditing] = useState<T | "new" | null>(null);
  const [deleting, setDeleting] = useState<T | null>(null);
  const write = canWriteCatalog();
  return (
    <Stack>
      <Group justify="space-between">
        <Text c="dimmed" size="sm">
          {props.intro}
        </Text>
        {write && <Button onClick={() => setEditing("new")}>New {noun}</Button>}
      </Group>
      <FormAlert message={error} />
      <Table.ScrollContainer minWidth={props.minWidth ?? 760}>
        <Table striped highlightOnHover>
          <Table.Thead>
            <Table.Tr>
              <Table.Th>{first.header}</Table.Th>
              {props.columns.map((c) => (
                <Table.Th key={c.header}>{c.header}</Table.Th>
              ))}
              {write && <Table.Th>Actions</Table.Th>}
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {items?.map((item) => (
              <Table.Tr key={item.id}>
                <Table.Td fw={600}>{first.cell(item)}</Table.Td>
                {props.columns.map((c) => (
                  <Table.Td key={c.header}>{c.cell(item)}</Table.Td>
                ))}
                {write && (
                  <RowActions
                    subject={subject(item)}
                    onEdit={() => setEditing(item)}
                    onDelete={() => setDeleting(item)}
                    deleteVerb={removal.verb}
                  />
                )}
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </Table.ScrollContainer>
      {items?.length === 0 && <Text c="dimmed">{props.empty ?? `No ${plural(noun)} yet.`}</Text>}
      {editing && (
        <Form
          item={editing === "new" ? null : editing}
          onClose={() => setEditing(null)}
          onSaved={() => {
            setEditing(null);
            void reload();
          }}
        />
      )}
      {deleting && (
        <ConfirmDelete
          title={removal.title(deleting)}
          what={props.deleteWhat(deleting)}
          confirmLabel={`${removal.verb} ${noun}`}
          onConfirm={async () => {
            await api("DELETE", removal.url(deleting), removal.body);
            await reload();
          }}
          onClose={() => setDeleting(null)}
        />
      )}
    </Stack>
  );
}

/** How an item is named in the API's URLs and in titles: its name, or its id when it has none. */
const nameOf = (item: { id: string }) => (item as { name?: string }).name ?? item.id;
const itemUrl = (path: string, item: { id: string }) => `${path}/${encodeURIComponent(nameOf(item))}`;

const plural = (noun: string) => (noun.endsWith("y") ? `${noun.slice(0, -1)}ies` : `${noun}s`);

/** A zod `safeParse` result, as the form checks it. */
type Checked = { success: true; data: unknown } | { success: false; error: ZodError };

/**
 * A catalog form's saving, bound to the item it edits (null: a new one): field messages, the form's own
 * message, busy. `send` takes the body checked with the API's schema: what the schema (or the form, in
 * `extra`) refuses is shown next to its field and nothing is sent; otherwise it is PUT to the item when
 * editing, POSTed to the collection when new, and a refusal is mapped onto the fields (`fallback` takes
 * problems of fields the form does not show). `dialog` is what CatalogFormDialog needs besides onSubmit.
 */
export function useCatalogForm<T extends { id: string }>(options: {
  noun: string;
  /** The API's collection, e.g. /v1/roles; an item is `{path}/{name or id}`. */
  path: string;
  fields: string[];
  fallback: string;
  item: T | null;
  onClose: () => void;
  onSaved: () => void;
  /** The field an ALREADY_EXISTS refusal is shown at (default: name). */
  conflictField?: string;
}) {
  const { item, fields, fallback } = options;
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  /** Set when four-eyes held the write as a change request: the dialog says so instead of closing. */
  const [notice, setNotice] = useState<string | null>(null);
  async function send(checked: Checked, extra: Record<string, string> = {}): Promise<void> {
    setError(null);
    setNotice(null);
    if (!checked.success || Object.keys(extra).length > 0) {
      setErrors({ ...(checked.success ? {} : clientErrors(checked.error, fields, fallback)), ...extra });
      return;
    }
    setErrors({});
    setBusy(true);
    try {
      const result = item
        ? await api<unknown>("PUT", itemUrl(options.path, item), checked.data)
        : await api<unknown>("POST", options.path, checked.data);
      const held = heldMessage(result);
      if (held) setNotice(held);
      else options.onSaved();
    } catch (e) {
      const found = serverErrors(e, fields, fallback, { ALREADY_EXISTS: options.conflictField ?? "name" });
      setErrors(found.fields);
      setError(found.message);
    } finally {
      setBusy(false);
    }
  }
  const dialog = {
    noun: options.noun,
    editing: item ? nameOf(item) : null,
    error,
    notice,
    busy,
    onClose: options.onClose,
  };
  return { errors, setErrors, send, dialog };
}

/** The edit dialog around a catalog form's fields: its message, then the fields, then Cancel and Save/Create. */
export function CatalogFormDialog(props: {
  noun: string;
  /** The name of what is edited; null: a new one. */
  editing: string | null;
  /** The dialog's title (default: "Edit {noun} {editing}" or "New {noun}"). */
  title?: string;
  error: string | null;
  /** A write held for a second admin (useCatalogSave's `notice`): said, and the dialog only closes. */
  notice?: string | null;
  busy: boolean;
  onSubmit: () => void;
  onClose: () => void;
  children: ReactNode;
}) {
  const { noun, editing } = props;
  return (
    <Modal
      opened
      closeButtonProps={{ "aria-label": "Close" }}
      onClose={props.onClose}
      title={props.title ?? (editing !== null ? `Edit ${noun} ${editing}` : `New ${noun}`)}
      size="lg"
    >
      <Stack>
        <FormAlert message={props.error} />
        <HeldAlert message={props.notice ?? null} />
        {props.children}
        <Group justify="flex-end">
          <Button variant="default" onClick={props.onClose}>
            {props.notice ? "Done" : "Cancel"}
          </Button>
          {!props.notice && (
            <Button onClick={props.onSubmit} loading={props.busy}>
              {editing !== null ? `Save ${noun}` : `Create ${noun}`}
            </Button>
          )}
        </Group>
      </Stack>
    </Modal>
  );
}
