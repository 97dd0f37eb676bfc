/**
 * Vault: the secrets you may see, with check-out and check-in, and "Reveal" for break-glass secrets
 * (reason and a fresh one-time code). Values are shown once in a dialog and never kept.
 */
import { Alert, Badge, Button, Group, Stack, Table, Text, Title } from "@mantine/core";
import { useState } from "react";
import { usePolledList } from "../polling.js";
import type { SecretMetaDto } from "../../../src/contract/vault.js";
import { api, currentSession } from "../api.js";
import { formatCountdown, useNow } from "../ui.js";
import { toneProps } from "./requests/shared.js";
import { CheckoutDialog, RevealDialog, segment } from "./vault/dialogs.js";

export default function Vault() {
  const { items, error, setError, load } = usePolledList<SecretMetaDto>("/v1/secrets", 10_000);
  const [notice, setNotice] = useState<string | null>(null);
  const [checkingOut, setCheckingOut] = useState<SecretMetaDto | null>(null);
  const [revealing, setRevealing] = useState<SecretMetaDto | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const now = useNow(1000);
  const me = currentSession()?.user.name;

  async function checkin(secret: SecretMetaDto) {
    setBusy(secret.path);
    setNotice(null);
    try {
      const out = await api<{ rotated: boolean; currentVersion: number }>(
        "POST",
        `/v1/secrets/${segment(secret.path)}/checkin`,
      );
      setNotice(
        `${secret.path} is checked in${out.rotated ? `; it was rotated to version ${out.currentVersion}` : ""}.`,
      );
      setError(null);
      await load();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(null);
    }
  }

  return (
    <Stack>
      <Title order={1} size="h2">
        Vault
      </Title>
      <Text c="dimmed" size="sm">
        Secrets you may use: through an active role that lists them, or your platform role.
      </Text>
      {error && (
        <Alert color="red" role="alert">
          {error}
        </Alert>
      )}
      {notice && (
        <Alert color="teal" role="status" withCloseButton closeButtonLabel="Dismiss" onClose={() => setNotice(null)}>
          {notice}
        </Alert>
      )}
      <Title order={2} size="h4">
        Secrets
      </Title>
      {items?.length === 0 && <Text c="dimmed">There is no secret you may see.</Text>}
      {items && items.length > 0 && (
        <Table.ScrollContainer minWidth={860}>
          <Table striped aria-label="Secrets">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Path</Table.Th>
                <Table.Th>Kind</Table.Th>
                <Table.Th>Description</Table.Th>
                <Table.Th>Exclusive</Table.Th>
                <Table.Th>Checked out</Table.Th>
                <Table.Th>Actions</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {items.map((s) => {
                const mine = s.checkedOut?.holder === me;
                const left = s.checkedOut ? Date.parse(s.checkedOut.until) - now : 0;
                return (
                  <Table.Tr key={s.path}>
                    <Table.Td>
                      <Group gap={6} wrap="nowrap">
                        <code>{s.path}</code>
                        {s.breakGlass && <Badge {...toneProps("red")}>break-glass</Badge>}
                      </Group>
                    </Table.Td>
                    <Table.Td>{s.kind}</Table.Td>
                    <Table.Td>{s.description ?? ""}</Table.Td>
                    <Table.Td>{s.checkout.exclusive ? "yes" : "no"}</Table.Td>
                    <Table.Td>
                      {s.checkedOut ? (
                        <Text size="sm">
                          by {mine ? "you" : s.checkedOut.holder}, {formatCountdown(left)}
                          {left > 0 ? " left" : ""}
                        </Text>
                      ) : (
                        <Text size="sm" c="dimmed">
                          available
                        </Text>
                      )}
                    </Table.Td>
                    <Table.Td>
                      <Group gap="xs" wrap="nowrap">
                        {s.breakGlass ? (
                          <Button
                            size="xs"
                            color="red.9"
                            onClick={() => setRevealing(s)}
                            aria-label={`Reveal ${s.path}`}
                          >
                            Reveal
                          </Button>
                        ) : mine ? (
                          <Button
                            size="xs"
                            variant="default"
                            loading={busy === s.path}
                            onClick={() => void checkin(s)}
                            aria-label={`Check in ${s.path}`}
                          >
                            Check in
                          </Button>
                        ) : (
                          <Button
                            size="xs"
                            onClick={() => setCheckingOut(s)}
                            disabled={!!s.checkedOut}
                            aria-label={`Check out ${s.path}`}
                          >
                            Check out
                          </Button>
                        )}
                      </Group>
                    </Table.Td>
                  </Table.Tr>
                );
              })}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      {checkingOut && (
        <CheckoutDialog
          secret={checkingOut}
          onClose={() => {
            setCheckingOut(null);
            void load();
          }}
        />
      )}
      {revealing && <RevealDialog secret={revealing} onClose={() => setRevealing(null)} />}
    </Stack>
  );
}
