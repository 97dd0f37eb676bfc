import { Text, Title, Stack } from "@mantine/core";

export default function Audit() {
  return (
    <Stack>
      <Title order={1} size="h2">
        Audit
      </Title>
      <Text c="dimmed">Coming next.</Text>
    </Stack>
  );
}
