/** Account: the passkeys of the signed-in user (list, add, rename, remove). */
import { Alert, Button, Group, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { useCallback, useEffect, useState, type FormEvent } from "react";
import { passkeyName, type PasskeyDto } from "../../../src/contract/passkeys.js";
import { api, ApiError } from "../api.js";
import { browserProblem, browserSupportsWebAuthn, registerPasskey } from "../passkeys.js";
import { PasskeyStepUp } from "./passkeys/PasskeyStepUp.js";

export default function Account() {
  const [keys, setKeys] = useState<PasskeyDto[] | null>(null);
  const [name, setName] = useState("");
  const [nameError, setNameError] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [needStepUp, setNeedStepUp] = useState(false);
  const [busy, setBusy] = useState(false);

  const load = useCallback(async () => {
    try {
      setKeys((await api<{ items: PasskeyDto[] }>("GET", "/v1/me/webauthn/credentials")).items);
    } catch (e) {
      setError((e as Error).message);
    }
  }, []);
  useEffect(() => void load(), [load]);

  function failed(e: unknown) {
    if (e instanceof ApiError && e.code === "MFA_STEP_UP_REQUIRED") setNeedStepUp(true);
    setError(e instanceof ApiError ? e.message : browserProblem(e));
  }

  async function add(event: FormEvent) {
    event.preventDefault();
    setError(null);
    setNotice(null);
    const parsed = passkeyName.safeParse(name);
    if (!parsed.success) {
      setNameError(parsed.error.issues[0]?.message ?? "not a valid name");
      return;
    }
    setNameError(null);
    setBusy(true);
    try {
      const added = await registerPasskey(parsed.data);
      setNotice(`Passkey “${added.name}” added.`);
      setName("");
      await load();
    } catch (e) {
      failed(e);
    } finally {
      setBusy(false);
    }
  }

  async function remove(key: PasskeyDto) {
    setError(null);
    setNotice(null);
    try {
      await api("DELETE", `/v1/me/webauthn/credentials/${key.id}`);
      setNotice(`Passkey “${key.name}” removed.`);
      await load();
    } catch (e) {
      failed(e);
    }
  }

  return (
    <Stack maw={760}>
      <Title order={1} size="h2">
        Account
      </Title>
      <Title order={2} size="h3">
        Passkeys
      </Title>
      <Text size="sm" c="gray.7">
        A passkey (security key, phone or this device) is a phishing-resistant second factor: use it to sign in and to
        confirm activations whose policy asks for one.
      </Text>
      {!browserSupportsWebAuthn() && (
        <Alert color="yellow" role="status">
          This browser does not support passkeys.
        </Alert>
      )}
      {notice && (
        <Alert color="green" role="status">
          {notice}
        </Alert>
      )}
      {error && (
        <Alert color="red" role="alert">
          {error}
        </Alert>
      )}
      {needStepUp && (
        <PasskeyStepUp
          label="Confirm with an existing passkey"
          onDone={() => {
            setNeedStepUp(false);
            setError(null);
            setNotice("Confirmed: you can change your passkeys for the next 15 minutes.");
          }}
        />
      )}
      {keys && keys.length === 0 && <Text>No passkey yet.</Text>}
      {keys && keys.length > 0 && (
        <Table aria-label="Passkeys">
          <Table.Thead>
            <Table.Tr>
              <Table.Th>Name</Table.Th>
              <Table.Th>Added</Table.Th>
              <Table.Th>Last used</Table.Th>
              <Table.Th />
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {keys.map((key) => (
              <Table.Tr key={key.id}>
                <Table.Td>{key.name}</Table.Td>
                <Table.Td>{new Date(key.createdAt).toLocaleString()}</Table.Td>
                <Table.Td>{key.lastUsedAt ? new Date(key.lastUsedAt).toLocaleString() : "never"}</Table.Td>
                <Table.Td>
                  <Button
                    size="xs"
                    color="red"
                    variant="light"
                    aria-label={`Remove ${key.name}`}
                    onClick={() => void remove(key)}
                  >
                    Remove
                  </Button>
                </Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      )}
      <form onSubmit={(e) => void add(e)} aria-label="Add a passkey">
        <Group align="flex-end">
          <TextInput
            label="Passkey name"
            placeholder="e.g. YubiKey 5C"
            value={name}
            error={nameError}
            onChange={(e) => setName(e.currentTarget.value)}
          />
          <Button type="submit" loading={busy}>
            Add passkey
          </Button>
        </Group>
      </form>
    </Stack>
  );
}
