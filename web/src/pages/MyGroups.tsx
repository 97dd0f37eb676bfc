/** The groups the signed-in person is in (from the identity provider's claim for single sign-on users). */
import { Badge, Group, Text } from "@mantine/core";
import { useEffect, useState } from "react";
import { api } from "../api.js";

export function MyGroups() {
  const [groups, setGroups] = useState<string[] | null>(null);
  useEffect(() => {
    api<{ groups: string[] }>("GET", "/v1/me")
      .then((me) => setGroups(me.groups))
      .catch(() => setGroups(null));
  }, []);
  if (!groups) return null;
  return (
    <Group gap="xs" role="group" aria-label="Your groups">
      <Text size="sm" c="gray.7">
        {groups.length === 0 ? "You are in no group." : "Your groups:"}
      </Text>
      {groups.map((g) => (
        <Badge key={g} variant="light" data-testid={`group-${g}`}>
          {g}
        </Badge>
      ))}
    </Group>
  );
}
