/**
 * A fresh second factor asked for in the middle of a decision (an approval whose policy asks the approver for a
 * recent MFA check): a one-time code, or a passkey; then the decision is sent again. Shown when the server
 * answered MFA_STEP_UP_REQUIRED (either counts) or WEBAUTHN_REQUIRED (only a passkey does).
 */
import { Alert, Button, Group, PasswordInput, Stack } from "@mantine/core";
import { useState } from "react";
import { stepUpRequest } from "../../../../src/contract/identity.js";
import { api, ApiError } from "../../api.js";
import { PasskeyStepUp } from "./PasskeyStepUp.js";

/** What the server asked for, from its refusal; null for any other error. */
export interface StepUpNeed {
  message: string;
  passkeyOnly: boolean;
}

export function stepUpNeedOf(error: unknown): StepUpNeed | null {
  if (!(error instanceof ApiError)) return null;
  if (error.code === "MFA_STEP_UP_REQUIRED") return { message: error.message, passkeyOnly: false };
  if (error.code === "WEBAUTHN_REQUIRED") return { message: error.message, passkeyOnly: true };
  return null;
}

export function StepUpPrompt(props: { need: StepUpNeed; action: string; onDone: () => void }) {
  const [otp, setOtp] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function confirm() {
    const code = stepUpRequest.safeParse({ otp: otp.trim() });
    if (!code.success) return setError("Enter the 6-digit code from your authenticator app.");
    setError(null);
    setBusy(true);
    try {
      await api("POST", "/v1/auth/step-up", code.data);
      props.onDone();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <Stack gap="xs">
      <Alert color="yellow" role="status">
        {props.need.message}
      </Alert>
      {!props.need.passkeyOnly && (
        <Group align="flex-end">
          <PasswordInput
            label="One-time code"
            value={otp}
            onChange={(e) => setOtp(e.currentTarget.value)}
            error={error}
            autoComplete="one-time-code"
            inputMode="numeric"
            data-autofocus
          />
          <Button onClick={() => void confirm()} loading={busy}>
            Confirm and {props.action}
          </Button>
        </Group>
      )}
      <PasskeyStepUp
        label={`${props.need.passkeyOnly ? "Confirm" : "Or confirm"} with passkey and ${props.action}`}
        onDone={props.onDone}
      />
    </Stack>
  );
}
