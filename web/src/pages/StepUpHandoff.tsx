/**
 * A CLI session's passkey step-up, handed to the browser (`stint step-up --webauthn` prints this page's
 * link). The page shows where the request came from and the code the terminal shows; the person checks
 * they match, then confirms with their passkey. Only the same signed-in user can see or answer it.
 */
import { Alert, Button, Code, Stack, Text, Title } from "@mantine/core";
import { useEffect, useState } from "react";
import type { StepUpHandoffStatusDto } from "../../../src/contract/passkeys.js";
import { api, ApiError } from "../api.js";
import { browserProblem, stepUpWithPasskey } from "../passkeys.js";

export default function StepUpHandoff(props: { id: string }) {
  const [handoff, setHandoff] = useState<StepUpHandoffStatusDto | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    api<StepUpHandoffStatusDto>("GET", `/v1/auth/step-up-handoffs/${props.id}`)
      .then(setHandoff)
      .catch((e: unknown) => setError((e as Error).message));
  }, [props.id]);

  async function confirm() {
    setError(null);
    setBusy(true);
    try {
      await stepUpWithPasskey(props.id);
      setHandoff(await api<StepUpHandoffStatusDto>("GET", `/v1/auth/step-up-handoffs/${props.id}`));
    } catch (e) {
      setError(e instanceof ApiError ? e.message : browserProblem(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <Stack maw={560}>
      <Title order={1} size="h2">
        Confirm a terminal step-up
      </Title>
      {error && (
        <Alert color="red" role="alert">
          {error}
        </Alert>
      )}
      {handoff && handoff.status === "pending" && (
        <>
          <Text>
            A terminal signed in as you asks to confirm with your passkey. Continue only if your terminal shows this
            code:
          </Text>
          <Code fz="xl" aria-label="Match code">
            {handoff.matchCode}
          </Code>
          <Text size="sm" c="gray.7">
            Requested from {handoff.requestedFrom.sourceIp ?? "an unknown address"}
            {handoff.requestedFrom.userAgent ? ` (${handoff.requestedFrom.userAgent})` : ""}.
          </Text>
          <Button loading={busy} onClick={() => void confirm()}>
            Confirm with passkey
          </Button>
        </>
      )}
      {handoff && handoff.status === "completed" && (
        <Alert color="green" role="status">
          Done: your terminal is confirmed. You can close this page.
        </Alert>
      )}
      {handoff && handoff.status === "expired" && (
        <Alert color="yellow" role="status">
          This link has expired; run the command in your terminal again.
        </Alert>
      )}
    </Stack>
  );
}
