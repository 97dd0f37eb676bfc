import { Text, Title, Stack } from "@mantine/core";

export default function Vault() {
  return (
    <Stack>
      <Title order={1} size="h2">
        Vault
      </Title>
      <Text c="dimmed">Coming next.</Text>
    </Stack>
  );
}
