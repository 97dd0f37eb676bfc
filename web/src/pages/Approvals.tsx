import { Text, Title, Stack } from "@mantine/core";

export default function Approvals() {
  return (
    <Stack>
      <Title order={1} size="h2">
        Approvals
      </Title>
      <Text c="dimmed">Coming next.</Text>
    </Stack>
  );
}
