/** The passkey step of sign-in: the password checked out and the server sent a challenge (MFA_REQUIRED). */
import { Alert, Button, Stack, Text } from "@mantine/core";
import { useState } from "react";
import type { WebauthnOptionsDto } from "../../../../src/contract/passkeys.js";
import { ApiError, signInWithPasskey } from "../../api.js";
import { answerChallenge, browserProblem } from "../../passkeys.js";

export function PasskeySignIn(props: {
  username: string;
  password: string;
  challenge: WebauthnOptionsDto;
  /** TOTP is offered beside the passkey. */
  orCode: boolean;
  /** The challenge was used (a refusal): the form shows why and asks the server for a new one. */
  onRestart: (message: string) => void;
}) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function usePasskey() {
    setError(null);
    setBusy(true);
    try {
      await signInWithPasskey(props.username, props.password, await answerChallenge(props.challenge));
    } catch (e) {
      // A refusal by the server used the challenge up; the browser's own (cancel, timeout) did not.
      if (e instanceof ApiError) props.onRestart(e.message);
      else setError(browserProblem(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <Stack gap="xs">
      <Text size="sm">
        {props.orCode
          ? "Confirm with your passkey, or enter a one-time code below."
          : "This account signs in with a passkey as its second factor."}
      </Text>
      {error && (
        <Alert color="red" role="alert">
          {error}
        </Alert>
      )}
      <Button variant={props.orCode ? "light" : "filled"} loading={busy} onClick={() => void usePasskey()}>
        Use passkey
      </Button>
    </Stack>
  );
}
