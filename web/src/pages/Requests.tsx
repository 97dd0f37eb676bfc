import { Text, Title, Stack } from "@mantine/core";

export default function Requests() {
  return (
    <Stack>
      <Title order={1} size="h2">
        Requests
      </Title>
      <Text c="dimmed">Coming next.</Text>
    </Stack>
  );
}
