/**
 * Administration: targets, roles, policies and eligibility (admin and security edit; auditors read),
 * the catalog as a YAML file (configuration as code), and four-eyes change requests waiting for a second admin.
 */
import { Stack, Tabs, Text, Title } from "@mantine/core";
import { useState } from "react";
import { ChangeRequestsTab } from "./admin/ChangeRequestsTab.js";
import { ConfigTab } from "./admin/ConfigTab.js";
import { EligibilityTab } from "./admin/EligibilityTab.js";
import { PoliciesTab } from "./admin/PoliciesTab.js";
import { RolesTab } from "./admin/RolesTab.js";
import { canWriteCatalog } from "./admin/shared.js";
import { TargetsTab } from "./admin/TargetsTab.js";

const TABS = [
  { value: "targets", label: "Targets", component: TargetsTab },
  { value: "roles", label: "Roles", component: RolesTab },
  { value: "policies", label: "Policies", component: PoliciesTab },
  { value: "eligibility", label: "Eligibility", component: EligibilityTab },
  { value: "config", label: "Configuration as code", component: ConfigTab },
  { value: "changes", label: "Change requests", component: ChangeRequestsTab },
] as const;

export default function Admin() {
  const [tab, setTab] = useState<string>("targets");
  return (
    <Stack>
      <Title order={1} size="h2">
        Administration
      </Title>
      {!canWriteCatalog() && <Text c="dimmed">You can read the catalog; changes are made by admin and security.</Text>}
      <Tabs value={tab} onChange={(v) => v && setTab(v)} keepMounted={false}>
        <Tabs.List style={{ overflowX: "auto", flexWrap: "nowrap" }}>
          {TABS.map((t) => (
            <Tabs.Tab key={t.value} value={t.value}>
              {t.label}
            </Tabs.Tab>
          ))}
        </Tabs.List>
        {TABS.map((t) => (
          <Tabs.Panel key={t.value} value={t.value} pt="md">
            <t.component />
          </Tabs.Panel>
        ))}
      </Tabs>
    </Stack>
  );
}
