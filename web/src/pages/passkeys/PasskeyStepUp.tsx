/** A step-up with a passkey, offered wherever a fresh second factor is asked for (activation, vault). */
import { Alert, Button, Stack } from "@mantine/core";
import { useState } from "react";
import { ApiError } from "../../api.js";
import { browserProblem, stepUpWithPasskey } from "../../passkeys.js";

export function PasskeyStepUp(props: { onDone: () => void; label?: string }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  async function run() {
    setError(null);
    setBusy(true);
    try {
      await stepUpWithPasskey();
      props.onDone();
    } catch (e) {
      setError(e instanceof ApiError ? e.message : browserProblem(e));
    } finally {
      setBusy(false);
    }
  }
  return (
    <Stack gap="xs">
      {error && (
        <Alert color="red" role="alert">
          {error}
        </Alert>
      )}
      <Button variant="light" loading={busy} onClick={() => void run()}>
        {props.label ?? "Confirm with passkey"}
      </Button>
    </Stack>
  );
}
