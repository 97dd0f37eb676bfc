/**
 * Policies: how a role is activated. The main settings have their own fields, approval stages their
 * editor with approvers picked from the directory; the rest of the spec (windows, session rules…) is edited
 * as JSON. Checked with the API's schema before sending.
 */
import { Group, NumberInput, Switch } from "@mantine/core";
import { useState } from "react";
import { policyInput, type PolicyDto } from "../../../../src/contract/catalog-api.js";
import { policySpec } from "../../../../src/contract/catalog.js";
import { policyInWords } from "../../ui.js";
import { CatalogFormDialog, CatalogList, useCatalogForm, type Column, type FormProps } from "./catalog-kit.js";
import { JsonField, parseJsonField, pretty, TextField } from "./shared.js";
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
  return (
    <CatalogList<PolicyDto>
      noun="policy"
      path="/v1/policies"
      intro="How long, with which approvals and checks, a role may be activated."
      columns={COLUMNS}
      deleteWhat={(p) => `The policy ${p.name} is removed. A policy that roles still use cannot be deleted.`}
      Form={PolicyForm}
    />
  );
}

const COLUMNS: Column<PolicyDto>[] = [
  { header: "Rules", cell: (p) => summary(p.spec) },
  { header: "Used by", cell: (p) => p.roles.join(", ") || "—" },
  { header: "Description", cell: (p) => p.description ?? "" },
];

const DEFAULT_SPEC: Spec = policySpec.parse({});

function PolicyForm({ item: policy, onClose, onSaved }: FormProps<PolicyDto>) {
  const spec = policy?.spec ?? DEFAULT_SPEC;
  const [name, setName] = useState(policy?.name ?? "");
  const [description, setDescription] = useState(policy?.description ?? "");
  const [defaultDuration, setDefaultDuration] = useState(spec.defaultDuration);
  const [maxDuration, setMaxDuration] = useState(spec.maxDuration);
  const [mfaRequired, setMfaRequired] = useState(spec.mfa.required);
  const [minLength, setMinLength] = useState<number | string>(spec.justification.minLength);
  const [stages, setStages] = useState(spec.approval.stages);
  const [advanced, setAdvanced] = useState(pretty(advancedPart(spec)));
  const form = useCatalogForm({
    noun: "policy",
    path: "/v1/policies",
    fields: FIELDS,
    fallback: ADVANCED,
    item: policy,
    onClose,
    onSaved,
  });
  const { errors } = form;

  async function submit() {
    let rest: Json;
    try {
      const value = parseJsonField(advanced, {});
      if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("must be a JSON object");
      rest = value as Json;
    } catch (e) {
      form.setErrors({ [ADVANCED]: (e as Error).message });
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
    await form.send(policyInput.safeParse(body));
  }

  return (
    <CatalogFormDialog {...form.dialog} onSubmit={() => void submit()}>
      <TextField label="Name" value={name} onChange={setName} error={errors.name} data-autofocus />
      <TextField label="Description" value={description} onChange={setDescription} error={errors.description} />
      <Group grow align="flex-start">
        <TextField
          label="Default duration"
          description="Like 30m, 1h or 1d."
          value={defaultDuration}
          onChange={setDefaultDuration}
          error={errors["spec.defaultDuration"]}
        />
        <TextField
          label="Maximum duration"
          description="The longest activation."
          value={maxDuration}
          onChange={setMaxDuration}
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
    </CatalogFormDialog>
  );
}
