/**
 * Pieces shared by the administration tabs: loading a list, turning client (zod) and server
 * (ApiError) problems into messages per form field, and JSON text fields for the advanced parts.
 */
import {
  Alert,
  Button,
  Group,
  Modal,
  Stack,
  Table,
  Text,
  Textarea,
  TextInput,
  type TextInputProps,
} from "@mantine/core";
import { useCallback, useEffect, useState } from "react";
import type { ZodError } from "zod";
import { api, ApiError, hasRole } from "../../api.js";
import { zodFieldErrors } from "../../ui.js";

/** Catalog writes are for admin and security; auditors see read-only lists. */
export function canWriteCatalog(): boolean {
  return hasRole("admin", "security");
}

export function useList<T>(path: string): {
  items: T[] | null;
  error: string | null;
  reload: () => Promise<void>;
} {
  const [items, setItems] = useState<T[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const reload = useCallback(async () => {
    try {
      setItems((await api<{ items: T[] }>("GET", path)).items);
      setError(null);
    } catch (e) {
      setError((e as Error).message);
    }
  }, [path]);
  useEffect(() => {
    void reload();
  }, [reload]);
  return { items, error, reload };
}

/**
 * Folds problems into the fields a form shows: a problem whose path is one of `fields` (or lies
 * under one) goes there; any other goes to `fallback` as "path: message", so none is lost.
 */
export function toFields(problems: Record<string, string>, fields: string[], fallback: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [path, message] of Object.entries(problems)) {
    const field = fields.find((f) => path === f || path.startsWith(`${f}.`));
    if (field) out[field] ??= message;
    else out[fallback] = out[fallback] ? `${out[fallback]}; ${path}: ${message}` : `${path}: ${message}`;
  }
  return out;
}

export function clientErrors(error: ZodError, fields: string[], fallback: string): Record<string, string> {
  return toFields(zodFieldErrors(error), fields, fallback);
}

/** A server refusal as field messages, or as one sentence for the form when no field is named. */
export function serverErrors(
  error: unknown,
  fields: string[],
  fallback: string,
  codeFields: Record<string, string> = {},
): { fields: Record<string, string>; message: string | null } {
  if (!(error instanceof ApiError)) return { fields: {}, message: (error as Error).message };
  const byField = toFields(error.fieldErrors(), fields, fallback);
  const field = codeFields[error.code];
  if (field) byField[field] ??= error.message;
  return Object.keys(byField).length > 0 ? { fields: byField, message: null } : { fields: {}, message: error.message };
}

/** JSON text of an object field; an empty text is `empty`. Throws a readable message on bad JSON. */
export function parseJsonField(text: string, empty: unknown): unknown {
  if (text.trim() === "") return empty;
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new Error(`must be valid JSON (${(e as Error).message})`);
  }
}

export function JsonField(props: {
  label: string;
  description?: string;
  value: string;
  onChange: (value: string) => void;
  error?: string | undefined;
  readOnly?: boolean;
}) {
  return (
    <Textarea
      label={props.label}
      description={props.description}
      value={props.value}
      onChange={(e) => props.onChange(e.currentTarget.value)}
      error={props.error}
      autosize
      minRows={3}
      maxRows={14}
      readOnly={props.readOnly}
      styles={{ input: { fontFamily: "var(--mantine-font-family-monospace)", fontSize: 13 } }}
      spellCheck={false}
    />
  );
}

/** A text input whose onChange gives the text: `<TextField label="Name" value={name} onChange={setName} />`. */
export function TextField({
  onChange,
  ...props
}: Omit<TextInputProps, "onChange"> & { onChange: (text: string) => void }) {
  return <TextInput {...props} onChange={(e) => onChange(e.currentTarget.value)} />;
}

export function FormAlert({ message }: { message: string | null }) {
  if (!message) return null;
  return (
    <Alert color="red" role="alert">
      {message}
    </Alert>
  );
}

/** A write four-eyes held (202 `{ changeRequest }`): what the form says instead of "saved" or an error. */
export function heldMessage(result: unknown): string | null {
  if (typeof result !== "object" || result === null || !("changeRequest" in result)) return null;
  const held = (result as { changeRequest: { id: string; tier: string } }).changeRequest;
  return `Held for a second admin's approval: change request ${held.id} (it widens access at risk ${held.tier}). Another admin approves it under Change requests; until then nothing has changed.`;
}

/** Says a write was held for a second admin (not an error: nothing went wrong, nothing changed yet). */
export function HeldAlert({ message }: { message: string | null }) {
  if (!message) return null;
  return (
    <Alert color="blue" role="status" title="Held for a second admin">
      {message}
    </Alert>
  );
}

/** A yes/no dialog for deletes: says what goes, and shows the server's refusal if there is one. */
export function ConfirmDelete(props: {
  title: string;
  what: string;
  confirmLabel: string;
  onConfirm: () => Promise<void>;
  onClose: () => void;
}) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  async function confirm() {
    setBusy(true);
    try {
      await props.onConfirm();
      props.onClose();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  }
  return (
    <Modal opened closeButtonProps={{ "aria-label": "Close" }} onClose={props.onClose} title={props.title}>
      <Stack>
        <FormAlert message={error} />
        <Text>{props.what}</Text>
        <Group justify="flex-end">
          <Button variant="default" onClick={props.onClose}>
            Cancel
          </Button>
          <Button color="red" loading={busy} onClick={() => void confirm()}>
            {props.confirmLabel}
          </Button>
        </Group>
      </Stack>
    </Modal>
  );
}

export const pretty = (value: unknown) => JSON.stringify(value, null, 2);

/** The Edit and Delete (or Remove) buttons of a catalog row, named after what they act on. */
export function RowActions(props: { subject: string; onEdit: () => void; onDelete: () => void; deleteVerb?: string }) {
  const verb = props.deleteVerb ?? "Delete";
  return (
    <Table.Td>
      <Group gap="xs" wrap="nowrap">
        <Button size="xs" variant="default" onClick={props.onEdit} aria-label={`Edit ${props.subject}`}>
          Edit
        </Button>
        <Button
          size="xs"
          variant="subtle"
          color="red"
          c="red.9"
          onClick={props.onDelete}
          aria-label={`${verb} ${props.subject}`}
        >
          {verb}
        </Button>
      </Group>
    </Table.Td>
  );
}
