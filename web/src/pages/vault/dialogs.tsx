/**
 * The vault's dialogs: check out (reason, duration) and reveal a break-glass secret (reason, then a
 * fresh one-time code when the API asks for one). Each shows the value once and forgets it on close.
 */
import { Alert, Button, Group, Modal, PasswordInput, Select, Stack, Text } from "@mantine/core";
import { useState } from "react";
import { stepUpRequest } from "../../../../src/contract/identity.js";
import { checkoutBody, revealBody, type SecretMetaDto } from "../../../../src/contract/vault.js";
import { api, ApiError } from "../../api.js";
import { shortTime, zodFieldErrors } from "../../ui.js";
import { ReasonField } from "../../reason-field.js";
import { SecretValue } from "./SecretValue.js";
import { shortId } from "../../../../src/contract/short-id.js";
import { PasskeyStepUp } from "../passkeys/PasskeyStepUp.js";

const DURATIONS = ["5m", "15m", "30m", "1h", "2h", "4h", "8h", "12h", "1d"];
const toMs = (d: string) => Number(d.slice(0, -1)) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[d.slice(-1) as "s"]!;

export const segment = (path: string) => encodeURIComponent(path);

/** "Give a reason." rather than zod's length message when the reason is empty. */
export function withReasonHint(errors: Record<string, string>, reason: string): Record<string, string> {
  return reason.trim() === "" && errors.reason ? { ...errors, reason: "Give a reason." } : errors;
}

function ErrorAlert({ message }: { message: string | null }) {
  if (!message) return null;
  return (
    <Alert color="red" role="alert">
      {message}
    </Alert>
  );
}

export function CheckoutDialog({ secret, onClose }: { secret: SecretMetaDto; onClose: () => void }) {
  const max = secret.checkout.maxDuration;
  const durations = [...DURATIONS.filter((d) => toMs(d) < toMs(max)), max];
  const [duration, setDuration] = useState<string>(max);
  const [reason, setReason] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<{ value: string; version: number; until: string } | null>(null);

  async function submit() {
    setError(null);
    const parsed = checkoutBody.safeParse({ reason: reason.trim(), duration });
    if (!parsed.success) return setErrors(withReasonHint(zodFieldErrors(parsed.error), reason));
    setErrors({});
    setBusy(true);
    try {
      const out = await api<{ value: string; version: number; until: string }>(
        "POST",
        `/v1/secrets/${segment(secret.path)}/checkout`,
        parsed.data,
      );
      setResult({ value: out.value, version: out.version, until: out.until });
    } catch (e) {
      const fields = e instanceof ApiError ? e.fieldErrors() : {};
      if (e instanceof ApiError && e.code === "DURATION_TOO_LONG") fields.duration = e.message;
      setErrors(fields);
      if (Object.keys(fields).length === 0) setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <Modal opened closeButtonProps={{ "aria-label": "Close" }} onClose={onClose} title={`Check out ${secret.path}`}>
      {result ? (
        <Stack>
          <Text size="sm">
            Version {result.version}, yours until {shortTime(result.until)}
            {secret.checkout.exclusive ? "; nobody else can check it out meanwhile" : ""}. Check it in when you are done
            {secret.checkout.rotateOnCheckin ? " (it is rotated then)" : ""}. The value is shown only here, now.
          </Text>
          <SecretValue label="Secret value" value={result.value} />
          <Group justify="flex-end">
            <Button onClick={onClose}>Done</Button>
          </Group>
        </Stack>
      ) : (
        <Stack>
          <ErrorAlert message={error} />
          <Select
            label="Duration"
            description={`At most ${max}; it is checked in automatically at the end.`}
            data={durations}
            value={duration}
            onChange={(v) => v && setDuration(v)}
            error={errors.duration}
            allowDeselect={false}
          />
          <ReasonField value={reason} onChange={setReason} error={errors.reason} autoFocus />
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>
              Cancel
            </Button>
            <Button onClick={() => void submit()} loading={busy}>
              Check out
            </Button>
          </Group>
        </Stack>
      )}
    </Modal>
  );
}

interface Revealed {
  value: string;
  version: number;
  reviewId: string;
  rotationDueAt: string;
}

export function RevealDialog({ secret, onClose }: { secret: SecretMetaDto; onClose: () => void }) {
  const [reason, setReason] = useState("");
  const [otp, setOtp] = useState("");
  const [needOtp, setNeedOtp] = useState(false);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<Revealed | null>(null);

  async function submit(viaPasskey = false) {
    setError(null);
    const parsed = revealBody.safeParse({ reason: reason.trim() });
    const fields = parsed.success ? {} : withReasonHint(zodFieldErrors(parsed.error), reason);
    const code = stepUpRequest.safeParse({ otp: otp.trim() });
    if (needOtp && !viaPasskey && !code.success) fields.otp = "Enter the 6-digit code from your authenticator app.";
    if (!parsed.success || Object.keys(fields).length > 0) return setErrors(fields);
    setErrors({});
    setBusy(true);
    try {
      if (needOtp && !viaPasskey && code.success) {
        try {
          await api("POST", "/v1/auth/step-up", code.data);
        } catch (e) {
          if (e instanceof ApiError && (e.code === "MFA_INVALID" || e.code === "MFA_REQUIRED"))
            return setErrors({ otp: e.message });
          throw e;
        }
      }
      setResult(await api<Revealed>("POST", `/v1/secrets/${segment(secret.path)}/reveal`, parsed.data));
    } catch (e) {
      if (e instanceof ApiError && e.code === "MFA_STEP_UP_REQUIRED") {
        setNeedOtp(true);
        setOtp("");
        setError("Revealing a break-glass secret needs a fresh one-time code from your authenticator app.");
      } else {
        const byField = e instanceof ApiError ? e.fieldErrors() : {};
        setErrors(byField);
        if (Object.keys(byField).length === 0) setError((e as Error).message);
      }
    } finally {
      setBusy(false);
    }
  }

  return (
    <Modal opened closeButtonProps={{ "aria-label": "Close" }} onClose={onClose} title={`Reveal ${secret.path}`}>
      {result ? (
        <Stack>
          <Alert color="orange" variant="light">
            This reveal is recorded and reviewed (review {shortId(result.reviewId)}). The secret must be rotated by{" "}
            {shortTime(result.rotationDueAt)}.
          </Alert>
          <SecretValue label="Secret value" value={result.value} />
          <Group justify="flex-end">
            <Button onClick={onClose}>Done</Button>
          </Group>
        </Stack>
      ) : (
        <Stack>
          <Text size="sm">
            {secret.path} is a break-glass secret: revealing it is audited, opens a review and schedules a rotation.
            Give the emergency that needs it.
          </Text>
          <ErrorAlert message={error} />
          <ReasonField value={reason} onChange={setReason} error={errors.reason} autoFocus />
          {needOtp && (
            <PasswordInput
              label="One-time code"
              value={otp}
              onChange={(e) => setOtp(e.currentTarget.value)}
              error={errors.otp}
              autoComplete="one-time-code"
              inputMode="numeric"
            />
          )}
          {needOtp && (
            <PasskeyStepUp
              label="Or confirm with passkey and reveal"
              onDone={() => {
                setNeedOtp(false);
                void submit(true);
              }}
            />
          )}
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>
              Cancel
            </Button>
            <Button color="red.9" onClick={() => void submit()} loading={busy}>
              Reveal
            </Button>
          </Group>
        </Stack>
      )}
    </Modal>
  );
}
