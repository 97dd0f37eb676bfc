/**
 * Eligibility: who may activate which role, and until when. Create, change the end and reason, and
 * remove; each checked with the API's schema before sending.
 */
import { Badge, SegmentedControl, Select, Stack, Text } from "@mantine/core";
import { useState } from "react";
import {
  eligibilityInput,
  eligibilityUpdate,
  type EligibilityDto,
  type RoleDto,
} from "../../../../src/contract/catalog-api.js";
import { shortTime } from "../../ui.js";
import { ReasonField } from "../../reason-field.js";
import { toneProps } from "../requests/shared.js";
import { TextField, useList } from "./shared.js";
import { useDirectory, withCurrent } from "./pickers.js";
import { CatalogFormDialog, CatalogList, useCatalogForm, type Column, type FormProps } from "./catalog-kit.js";

const FIELDS = ["role", "principal", "group", "endsAt", "startsAt", "reason"];
const STATUS_TONE = { active: "green", scheduled: "blue", ended: "gray" } as const;

/** A `datetime-local` value (local time, no zone) as an ISO time with offset; "" stays "". */
function localToIso(local: string): string {
  if (!local) return "";
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? local : date.toISOString();
}

function isoToLocal(iso: string | null): string {
  if (!iso) return "";
  const date = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

const who = (e: EligibilityDto) => (e.principal ? `user ${e.principal}` : `group ${e.group ?? "?"}`);

const COLUMNS: Column<EligibilityDto>[] = [
  { header: "Who", cell: who },
  { header: "Status", cell: (e) => <Badge {...toneProps(STATUS_TONE[e.status])}>{e.status}</Badge> },
  { header: "From", cell: (e) => shortTime(e.startsAt) },
  { header: "Until", cell: (e) => (e.endsAt ? shortTime(e.endsAt) : "no end") },
  { header: "Granted by", cell: (e) => e.grantedBy },
  { header: "Reason", cell: (e) => e.reason ?? "" },
];

export function EligibilityTab() {
  return (
    <CatalogList<EligibilityDto>
      noun="eligibility"
      path="/v1/eligibilities"
      intro="Who may ask for a role. Eligibility is not access: activation still follows the role's policy."
      first={{ header: "Role", cell: (e) => e.role }}
      columns={COLUMNS}
      subject={(e) => `eligibility of ${who(e)} for ${e.role}`}
      deleteWhat={(e) =>
        `${who(e)} will no longer be able to ask for ${e.role}. Active activations are not ended by this.`
      }
      removal={{ verb: "Remove", url: (e) => `/v1/eligibilities/${e.id}`, title: () => "Remove eligibility", body: {} }}
      empty="Nobody is eligible for any role yet."
      minWidth={820}
      Form={EligibilityForm}
    />
  );
}

function EligibilityForm({ item: eligibility, onClose, onSaved }: FormProps<EligibilityDto>) {
  const roles = useList<RoleDto>("/v1/roles").items ?? [];
  const [role, setRole] = useState<string | null>(eligibility?.role ?? null);
  const [kind, setKind] = useState<"user" | "group">(eligibility?.group ? "group" : "user");
  const [who, setWho] = useState(eligibility?.principal ?? eligibility?.group ?? "");
  const { directory, error: directoryError } = useDirectory();
  const [until, setUntil] = useState(isoToLocal(eligibility?.endsAt ?? null));
  const [reason, setReason] = useState(eligibility?.reason ?? "");
  const form = useCatalogForm({
    noun: "eligibility",
    path: "/v1/eligibilities",
    fields: FIELDS,
    fallback: "reason",
    item: eligibility,
    onClose,
    onSaved,
    conflictField: "principal",
  });
  const { errors } = form;

  async function submit() {
    const endsAt = localToIso(until);
    if (eligibility) {
      // Only the end and the reason change; who and which role stay.
      await form.send(
        eligibilityUpdate.safeParse({ endsAt: endsAt || null, reason: reason.trim() ? reason.trim() : null }),
      );
      return;
    }
    const parsed = eligibilityInput.safeParse({
      role: role ?? "",
      ...(kind === "user" ? { principal: who.trim() } : { group: who.trim() }),
      ...(endsAt ? { endsAt } : {}),
      ...(reason.trim() ? { reason: reason.trim() } : {}),
    });
    await form.send(parsed, role ? {} : { role: "Choose a role." });
  }

  const whoError = errors.principal ?? errors.group;
  const roleNames = roles.map((r) => r.name);
  return (
    <CatalogFormDialog
      {...form.dialog}
      title={eligibility ? `Edit eligibility for ${eligibility.role}` : "New eligibility"}
      onSubmit={() => void submit()}
    >
      <Select
        label="Role"
        data={role && !roleNames.includes(role) ? [role, ...roleNames] : roleNames}
        value={role}
        onChange={setRole}
        error={errors.role}
        searchable
        disabled={!!eligibility}
      />
      <Stack gap={4}>
        <Text size="sm" fw={500} id="eligibility-who-kind">
          Eligible
        </Text>
        <SegmentedControl
          aria-labelledby="eligibility-who-kind"
          data={[
            { value: "user", label: "A user" },
            { value: "group", label: "A group" },
          ]}
          value={kind}
          onChange={(v) => {
            setKind(v as "user" | "group");
            setWho("");
          }}
          disabled={!!eligibility}
        />
      </Stack>
      <Select
        label={kind === "user" ? "User" : "Group"}
        description={
          directoryError
            ? `The directory could not be read (${directoryError}).`
            : kind === "user"
              ? "A user or service identity of the directory."
              : "A group of the directory."
        }
        placeholder={kind === "user" ? "Search users" : "Search groups"}
        data={withCurrent((kind === "user" ? directory?.principals : directory?.groups) ?? [], who ? [who] : [])}
        value={who || null}
        onChange={(v) => setWho(v ?? "")}
        error={whoError}
        searchable
        nothingFoundMessage={kind === "user" ? "No such user" : "No such group"}
        disabled={!!eligibility}
      />
      <TextField
        type="datetime-local"
        label="Until"
        description="Leave empty for no end."
        value={until}
        onChange={setUntil}
        error={errors.endsAt}
      />
      <ReasonField value={reason} onChange={setReason} error={errors.reason} />
    </CatalogFormDialog>
  );
}
