import { Text, Title, Stack } from "@mantine/core";

export default function Sessions() {
  return (
    <Stack>
      <Title order={1} size="h2">
        Sessions
      </Title>
      <Text c="dimmed">Coming next.</Text>
    </Stack>
  );
}
