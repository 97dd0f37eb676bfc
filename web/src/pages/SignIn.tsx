/** Sign-in with password and, when the account has one, a TOTP code; clear errors, session expiry told. */
import { Alert, Anchor, Button, Center, Paper, Stack, TextInput, Title, Text } from "@mantine/core";
import { useState, type FormEvent } from "react";
import { ApiError, signIn, takeExpiredNotice } from "../api.js";
import type { WebauthnOptionsDto } from "../../../src/contract/passkeys.js";
import { PasskeySignIn } from "./passkeys/PasskeySignIn.js";
import { SsoSignIn } from "./SsoSignIn.js";
import { CredentialFields } from "./CredentialFields.js";
import { InviteRedeem } from "./InviteRedeem.js";

export function SignIn() {
  const [expired] = useState(() => takeExpiredNotice());
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [otp, setOtp] = useState("");
  const [needOtp, setNeedOtp] = useState(false);
  // The second factors the account has, and the passkey challenge, from MFA_REQUIRED.
  const [mfa, setMfa] = useState<{ methods: string[]; webauthn?: WebauthnOptionsDto } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  // An invited user without a password yet chooses one with their invite code (InviteRedeem).
  const [inviting, setInviting] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError(null);
    setBusy(true);
    try {
      await signIn(username.trim(), password, needOtp ? otp.trim() : undefined);
    } catch (e) {
      if (e instanceof ApiError && e.code === "MFA_REQUIRED") {
        const details = (e.details ?? {}) as { methods?: string[]; webauthn?: WebauthnOptionsDto };
        setMfa({ methods: details.methods ?? ["totp"], ...(details.webauthn ? { webauthn: details.webauthn } : {}) });
        setNeedOtp((details.methods ?? ["totp"]).includes("totp"));
        if ((details.methods ?? ["totp"]).includes("totp"))
          setError(needOtp ? e.message : "Enter the six-digit code from your authenticator app.");
      } else setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <Center mih="100vh" p="md">
      <Paper withBorder shadow="sm" p="xl" w="100%" maw={400} component="main">
        {inviting ? (
          <InviteRedeem onBack={() => setInviting(false)} />
        ) : (
          <form onSubmit={(e) => void submit(e)} aria-label="Sign in">
            <Stack>
              <Title order={1} size="h2">
                Sign in to Stint
              </Title>
              <Text size="sm" c="gray.7">
                Just-in-time access: nothing is standing, everything is recorded.
              </Text>
              {expired && (
                <Alert color="yellow" role="status">
                  Your session has expired; sign in again.
                </Alert>
              )}
              {error && (
                <Alert color="red" role="alert">
                  {error}
                </Alert>
              )}
              <SsoSignIn />
              <CredentialFields
                username={username}
                onUsername={setUsername}
                password={password}
                onPassword={setPassword}
              />
              {needOtp && (
                <TextInput
                  label="One-time code"
                  name="otp"
                  inputMode="numeric"
                  autoComplete="one-time-code"
                  required
                  value={otp}
                  onChange={(e) => setOtp(e.currentTarget.value)}
                />
              )}
              {mfa?.webauthn && (
                <PasskeySignIn
                  username={username.trim()}
                  password={password}
                  challenge={mfa.webauthn}
                  orCode={needOtp}
                  onRestart={(message) => {
                    setError(message);
                    setMfa({ methods: mfa.methods });
                  }}
                />
              )}
              {(!mfa || needOtp || !mfa.webauthn) && (
                <Button type="submit" loading={busy}>
                  Sign in
                </Button>
              )}
              <Anchor component="button" type="button" size="sm" onClick={() => setInviting(true)}>
                I have an invite code
              </Anchor>
            </Stack>
          </form>
        )}
      </Paper>
    </Center>
  );
}
