/**
 * "Sign in with <provider>" on the sign-in page. A click makes a PKCE verifier (kept in this tab's
 * sessionStorage only) and goes to Stint's start address with its challenge; Stint sends the browser to the
 * identity provider and, once the provider answered, back here with a one-time code in the URL fragment (never
 * sent to any server by the browser), which only this tab's verifier turns into a session.
 */
import { Alert, Button, Divider, Stack } from "@mantine/core";
import { useEffect, useState } from "react";
import { signInWithSsoCode } from "../api.js";

const VERIFIER_KEY = "stint.sso.verifier";

/** What a refused sign-in tells the person (the codes docs/errors.md lists). */
const REFUSALS: Record<string, string> = {
  SSO_EMAIL_DOMAIN_DENIED: "Your e-mail address's domain may not sign in to Stint.",
  SSO_ACCOUNT_CONFLICT: "A Stint account of that name exists and is not linked to your sign-in; ask an administrator.",
  ACCOUNT_DISABLED: "This account is disabled.",
  SSO_STATE_INVALID: "This sign-in expired or was already used; start again.",
  SSO_PROVIDER_DENIED: "The identity provider did not sign you in.",
  SSO_PROVIDER_UNAVAILABLE: "The identity provider could not be reached; try again.",
  SSO_CODE_INVALID: "This sign-in expired or was already used; start again.",
};

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replace(/=+$/, "");
}

async function startSignIn(provider: string) {
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem(VERIFIER_KEY, verifier);
  window.location.assign(`/v1/auth/sso/${encodeURIComponent(provider)}/login?code_challenge=${base64url(digest)}`);
}

export function SsoSignIn() {
  const [providers, setProviders] = useState<{ id: string; displayName: string }[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    const fragment = new URLSearchParams(window.location.hash.slice(1));
    const code = fragment.get("sso_code");
    const refused = fragment.get("sso_error");
    if (code || refused) window.history.replaceState(null, "", window.location.pathname);
    if (refused) setError(REFUSALS[refused] ?? `Single sign-on was refused (${refused.replace(/[^A-Z_]/g, "")}).`);
    if (code) {
      const verifier = sessionStorage.getItem(VERIFIER_KEY);
      sessionStorage.removeItem(VERIFIER_KEY);
      if (!verifier) setError("This sign-in was started in another tab; start again here.");
      else {
        setBusy(true);
        signInWithSsoCode(code, verifier).catch((e: unknown) => {
          setError(e instanceof Error ? e.message : String(e));
          setBusy(false);
        });
      }
    }
    fetch("/v1/auth/sso/providers", { headers: { accept: "application/json" } })
      .then(async (res) => (res.ok ? ((await res.json()) as { items: { id: string; displayName: string }[] }) : null))
      .then((list) => list && setProviders(list.items))
      .catch(() => undefined);
  }, []);

  if (providers.length === 0 && !error) return null;
  return (
    <Stack gap="xs">
      {error && (
        <Alert color="red" role="alert">
          {error}
        </Alert>
      )}
      {providers.map((p) => (
        <Button key={p.id} variant="default" loading={busy} onClick={() => void startSignIn(p.id)}>
          Sign in with {p.displayName}
        </Button>
      ))}
      {providers.length > 0 && <Divider label="or with a password" labelPosition="center" />}
    </Stack>
  );
}
