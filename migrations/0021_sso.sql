-- OIDC single sign-on (issue 15).
-- A person an identity provider signed in is linked by (issuer, sub), never by name alone.
create table oidc_identities (
  issuer text not null,
  subject text not null,
  provider text not null,
  principal_id uuid not null references principals (id),
  created_at timestamptz not null,
  last_sign_in_at timestamptz not null,
  primary key (issuer, subject)
);
create index oidc_identities_principal on oidc_identities (principal_id);

-- A sign-in under way: the state (only its hash is kept), nonce and PKCE verifier Stint sent the provider, and
-- how the result goes back to whoever started it (the web UI, or the CLI's loopback redirect, each bound to the
-- PKCE challenge its client made). Single use (used_at set by the callback that consumes it), short-lived.
-- Kept in the database so that any node may receive the callback.
create table sso_attempts (
  state_hash text primary key,
  provider text not null,
  nonce text not null,
  code_verifier text not null,
  client_challenge text not null,
  client_redirect text,
  created_at timestamptz not null,
  expires_at timestamptz not null,
  used_at timestamptz
);
create index sso_attempts_expires on sso_attempts (expires_at);

-- What a finished sign-in hands its client: a one-time code (only its hash is kept) the client redeems with the
-- PKCE verifier behind its challenge, for a Stint session. Device grants keep the provider's device code here
-- too (sealed), under a handle only the client that started it knows.
create table sso_handoffs (
  code_hash text primary key,
  kind text not null check (kind in ('code', 'device')),
  provider text not null,
  principal_id uuid references principals (id),
  client_challenge text,
  device_code_sealed text,
  poll_interval_s integer,
  amr text[],
  mfa_at timestamptz,
  created_at timestamptz not null,
  expires_at timestamptz not null,
  used_at timestamptz
);
create index sso_handoffs_expires on sso_handoffs (expires_at);

-- The way a session was opened (password, password and one-time code, or single sign-on): its access tokens
-- say so in `amr` for the session's whole life.
alter table refresh_sessions add column amr text[];
