import { Text, Title, Stack } from "@mantine/core";

export default function Dashboards() {
  return (
    <Stack>
      <Title order={1} size="h2">
        Dashboards
      </Title>
      <Text c="dimmed">Coming next.</Text>
    </Stack>
  );
}
