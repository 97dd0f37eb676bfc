/**
 * Redeeming an invite (finding 89): the invited user types the one-time code an administrator gave them (never in a
 * URL: it is typed here and sent in the body) and chooses their own password, then is signed in.
 */
import { Alert, Anchor, Button, PasswordInput, Stack, Title, Text } from "@mantine/core";
import { useState, type FormEvent } from "react";
import { api, signIn } from "../api.js";
import { CredentialFields } from "./CredentialFields.js";

export function InviteRedeem({ onBack }: { onBack: () => void }) {
  const [username, setUsername] = useState("");
  const [code, setCode] = useState("");
  const [password, setPassword] = useState("");
  const [again, setAgain] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError(null);
    if (password !== again) return setError("The two passwords differ.");
    setBusy(true);
    try {
      await api("POST", "/v1/invites/redeem", { username: username.trim(), code: code.trim(), password });
      await signIn(username.trim(), password);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form onSubmit={(e) => void submit(e)} aria-label="Accept an invite">
      <Stack>
        <Title order={1} size="h2">
          Accept your invite
        </Title>
        <Text size="sm" c="gray.7">
          Type the one-time code an administrator gave you and choose your own password: nobody else will know it.
        </Text>
        {error && (
          <Alert color="red" role="alert">
            {error}
          </Alert>
        )}
        <CredentialFields
          username={username}
          onUsername={setUsername}
          password={password}
          onPassword={setPassword}
          choose={{ again, onAgain: setAgain }}
        >
          <PasswordInput
            label="Invite code"
            name="invite-code"
            autoComplete="off"
            required
            value={code}
            onChange={(e) => setCode(e.currentTarget.value)}
          />
        </CredentialFields>
        <Button type="submit" loading={busy}>
          Set my password and sign in
        </Button>
        <Anchor component="button" type="button" size="sm" onClick={onBack}>
          Back to sign-in
        </Anchor>
      </Stack>
    </form>
  );
}
