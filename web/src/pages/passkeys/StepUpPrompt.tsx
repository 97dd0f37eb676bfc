/**
 * A fresh second factor asked for in the middle of a decision (an approval whose policy asks the approver for a
 * recent MFA check): a one-time code, or a passkey; then the decision is sent again. Shown when the server
 * answered MFA_STEP_UP_REQUIRED (either counts) or WEBAUTHN_REQUIRED (only a passkey does), or ahead of it when
 * the approvals inbox said the approval would need one (`needAhead`). `useStepUpRetry` is that whole round: the
 * prompt, and the decision sent again once the step-up is done.
 */
import { Alert, Button, Group, PasswordInput, Stack } from "@mantine/core";
import { useRef, useState, type ReactNode } from "react";
import type { ApproverMfaHintDto } from "../../../../src/contract/requests.js";
import { stepUpRequest } from "../../../../src/contract/identity.js";
import { api, ApiError } from "../../api.js";
import { formatWindow } from "../../ui.js";
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

/**
 * What a list's hint says approving `what` will ask of this approver now, as the prompt words it; null when nothing (not
 * required, or the session's MFA is recent enough for now). A hint: the server checks again and, refusing, words
 * its own need, which the prompt then shows instead.
 */
export function needAhead(hint: ApproverMfaHintDto | undefined, what = "this request"): StepUpNeed | null {
  if (!hint?.required || hint.satisfied) return null;
  const within = formatWindow(hint.withinSeconds ?? 0);
  return hint.passkeyOnly
    ? { message: `Approving ${what} needs a passkey check of yours within the last ${within}.`, passkeyOnly: true }
    : {
        message: `Approving ${what} needs a fresh MFA check of yours (within the last ${within}): a one-time code or a passkey.`,
        passkeyOnly: false,
      };
}

/**
 * A decision that may be refused for want of a fresh second factor, sent again once the approver has stepped up:
 * `caught(error)` in the decision's catch shows the prompt when the error asks for a step-up (true); `ahead` shows it
 * from the start, and `ask(need)` once known, where the inbox's hint said the decision would need it (`needAhead`). `again` is the decision,
 * the one of the latest render (so what the approver typed meanwhile goes with it). `prompt` is what to render
 * (null while none is asked).
 */
export function useStepUpRetry(
  action: string,
  again: () => void,
  ahead: StepUpNeed | null = null,
): { caught: (error: unknown) => boolean; ask: (need: StepUpNeed) => void; prompt: ReactNode } {
  const [need, setNeed] = useState<StepUpNeed | null>(ahead);
  const latest = useRef(again);
  latest.current = again;
  const caught = (error: unknown) => {
    const asked = stepUpNeedOf(error);
    if (asked) setNeed(asked);
    return asked !== null;
  };
  const prompt = need ? (
    <StepUpPrompt
      need={need}
      action={action}
      onDone={() => {
        setNeed(null);
        latest.current();
      }}
    />
  ) : null;
  return { caught, ask: setNeed, prompt };
}
