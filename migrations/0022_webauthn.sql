-- Passkeys / WebAuthn (issue 15): several credentials per user, challenges kept server-side (single use, short
-- TTL: any node may verify what another issued), and the time of the session's last passkey check apart from
-- its last MFA of any kind (a policy may require the passkey).
create table webauthn_credentials (
  id uuid primary key,
  principal_id uuid not null references principals (id) on delete cascade,
  -- The authenticator's credential id, base64url; unique across Stint (the authenticator made it at random).
  credential_id text not null unique,
  -- COSE public key, base64url.
  public_key text not null,
  -- The last signature counter seen (0 for authenticators that keep none); uint32.
  sign_count bigint not null default 0,
  transports text[] not null default '{}',
  name text not null,
  aaguid text not null,
  backed_up boolean not null default false,
  created_at timestamptz not null,
  last_used_at timestamptz
);
create index webauthn_credentials_principal on webauthn_credentials (principal_id);

create table webauthn_challenges (
  id uuid primary key,
  principal_id uuid not null references principals (id) on delete cascade,
  purpose text not null check (purpose in ('register', 'login', 'step_up')),
  -- base64url of 32 random bytes; not a secret once sent, but accepted once.
  challenge text not null,
  -- step_up: the refresh session that the answer steps up (the caller's, or the CLI session of a hand-off).
  session_id uuid,
  handoff_id uuid,
  created_at timestamptz not null,
  expires_at timestamptz not null,
  used_at timestamptz
);
create index webauthn_challenges_expires on webauthn_challenges (expires_at);

-- A CLI session hands its passkey step-up to a browser: the page, signed in as the same user, answers a
-- challenge bound to the CLI's session; the CLI polls until it is done.
create table step_up_handoffs (
  id uuid primary key,
  principal_id uuid not null references principals (id) on delete cascade,
  session_id uuid not null references refresh_sessions (id) on delete cascade,
  -- Shown by the CLI and by the page, so the person checks they confirm their own terminal's request.
  match_code text not null,
  source_ip text,
  user_agent text,
  created_at timestamptz not null,
  expires_at timestamptz not null,
  completed_at timestamptz
);

alter table refresh_sessions add column webauthn_at timestamptz;
