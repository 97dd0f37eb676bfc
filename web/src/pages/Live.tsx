/**
 * Live sessions (everybody signed in): the live sessions on this node the caller may watch — all of them
 * for admins and auditors, those of roles whose policy names the caller as an approver or moderator for
 * others — refreshed every 2 s. Watch opens a read-only view; Moderate joins as a moderator (a moderated
 * session waits for one, and ends when the moderator terminates it or the last one leaves).
 */
import { Alert, Badge, Button, Group, Loader, Modal, Stack, Table, Text, Title } from "@mantine/core";
import { lazy, Suspense, useState } from "react";
import { usePolledList } from "../polling.js";
import type { LiveMode, WatchableSession } from "../../../src/contract/live.js";
import { shortId } from "../../../src/contract/short-id.js";
import { formatAge, useNow } from "../ui.js";

const LiveView = lazy(() => import("./sessions/LiveView.js"));

export default function Live() {
  const { items, error } = usePolledList<WatchableSession>("/v1/sessions/live", 2000);
  const [open, setOpen] = useState<{ session: WatchableSession; mode: LiveMode } | null>(null);
  const now = useNow(1000);

  return (
    <Stack>
      <Title order={1} size="h2">
        Live sessions
      </Title>
      {error && (
        <Alert color="red" role="alert">
          {error}
        </Alert>
      )}
      {items === null && !error && <Loader size="sm" aria-label="Loading" />}
      {items?.length === 0 && <Text c="dimmed">There is no live session you may watch right now.</Text>}
      {items && items.length > 0 && (
        <Table.ScrollContainer minWidth={720}>
          <Table striped aria-label="Live sessions you may watch">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Session</Table.Th>
                <Table.Th>User</Table.Th>
                <Table.Th>Role</Table.Th>
                <Table.Th>Target</Table.Th>
                <Table.Th>For</Table.Th>
                <Table.Th>Moderation</Table.Th>
                <Table.Th>Actions</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {items.map((s) => (
                <Table.Tr key={s.id}>
                  <Table.Td>
                    <code>{shortId(s.id)}</code>
                  </Table.Td>
                  <Table.Td>{s.user}</Table.Td>
                  <Table.Td>{s.role}</Table.Td>
                  <Table.Td>{s.target}</Table.Td>
                  <Table.Td>{formatAge(s.startedAt, now)}</Table.Td>
                  <Table.Td>
                    {s.moderation === null ? (
                      "—"
                    ) : s.moderation.admitted ? (
                      <Badge color="green">moderated: {s.moderation.moderators.join(", ") || "nobody now"}</Badge>
                    ) : (
                      <Badge color="orange">waiting for a moderator</Badge>
                    )}
                  </Table.Td>
                  <Table.Td>
                    <Group gap="xs" wrap="nowrap">
                      <Button
                        size="xs"
                        variant="default"
                        onClick={() => setOpen({ session: s, mode: "watch" })}
                        aria-label={`Watch session ${shortId(s.id)} of ${s.user}`}
                      >
                        Watch
                      </Button>
                      {s.mayModerate && (
                        <Button
                          size="xs"
                          onClick={() => setOpen({ session: s, mode: "moderate" })}
                          aria-label={`Moderate session ${shortId(s.id)} of ${s.user}`}
                        >
                          Moderate
                        </Button>
                      )}
                    </Group>
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      {open && (
        <Modal
          opened
          size="auto"
          closeButtonProps={{ "aria-label": "Close" }}
          onClose={() => setOpen(null)}
          title={`${open.mode === "moderate" ? "Moderating" : "Watching"} session ${shortId(open.session.id)}`}
        >
          <Suspense fallback={<Loader size="sm" aria-label="Loading" />}>
            <LiveView session={open.session} mode={open.mode} onClose={() => setOpen(null)} />
          </Suspense>
        </Modal>
      )}
    </Stack>
  );
}
