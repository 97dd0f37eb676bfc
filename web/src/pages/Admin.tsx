import { Text, Title, Stack } from "@mantine/core";

export default function Admin() {
  return (
    <Stack>
      <Title order={1} size="h2">
        Admin
      </Title>
      <Text c="dimmed">Coming next.</Text>
    </Stack>
  );
}
