-- Foundation: identity, audit chain, outbox, signing keys.

create table principals (
  id uuid primary key,
  kind text not null check (kind in ('user', 'service')),
  name text not null unique,
  email text,
  display_name text,
  manager_id uuid references principals (id),
  status text not null default 'active' check (status in ('active', 'disabled')),
  platform_roles text[] not null default '{user}',
  source text not null default 'local',
  created_at timestamptz not null,
  updated_at timestamptz not null
);

create table password_credentials (
  principal_id uuid primary key references principals (id),
  hash text not null,
  updated_at timestamptz not null
);

-- TOTP secrets are sealed (AES-256-GCM) under a key derived from the master key.
create table mfa_totp (
  principal_id uuid primary key references principals (id),
  secret_sealed text not null,
  confirmed_at timestamptz,
  last_used_step bigint not null default 0,
  created_at timestamptz not null
);

create table recovery_codes (
  id uuid primary key,
  principal_id uuid not null references principals (id),
  code_hash text not null,
  used_at timestamptz
);
create index recovery_codes_principal on recovery_codes (principal_id);

create table groups (
  id uuid primary key,
  name text not null unique,
  description text,
  source text not null default 'local',
  created_at timestamptz not null
);

create table group_members (
  group_id uuid not null references groups (id),
  principal_id uuid not null references principals (id),
  added_at timestamptz not null,
  primary key (group_id, principal_id)
);
create index group_members_principal on group_members (principal_id);

-- Refresh sessions: the revocable half of a login. Only a hash of the token is kept.
create table refresh_sessions (
  id uuid primary key,
  principal_id uuid not null references principals (id),
  token_hash text not null,
  mfa_at timestamptz,
  created_at timestamptz not null,
  last_used_at timestamptz not null,
  expires_at timestamptz not null,
  revoked_at timestamptz,
  revoked_reason text,
  source_ip text,
  user_agent text
);
create index refresh_sessions_principal on refresh_sessions (principal_id) where revoked_at is null;

create table api_tokens (
  id uuid primary key,
  principal_id uuid not null references principals (id),
  name text not null,
  token_hash text not null,
  created_by uuid references principals (id),
  created_at timestamptz not null,
  expires_at timestamptz not null,
  last_used_at timestamptz,
  revoked_at timestamptz
);
create index api_tokens_principal on api_tokens (principal_id);

-- Failed sign-in counters, keyed by account (`user:<name>`) and by peer address (`ip:<addr>`).
create table login_throttle (
  key text primary key,
  failures integer not null,
  window_started_at timestamptz not null,
  locked_until timestamptz
);

create table setup_codes (
  id uuid primary key,
  code_hash text not null,
  created_at timestamptz not null,
  expires_at timestamptz not null,
  used_at timestamptz
);

-- Ed25519 keys for access tokens and audit checkpoints; private halves sealed.
create table signing_keys (
  id text primary key,
  purpose text not null check (purpose in ('token', 'audit')),
  public_jwk jsonb not null,
  private_sealed text not null,
  created_at timestamptz not null,
  retired_at timestamptz
);

-- The audit log: append-only, hash-chained. The head row is locked by every
-- audited transaction, which gives the chain its total order.
create table audit_events (
  seq bigint primary key,
  id uuid not null unique,
  time timestamptz not null,
  actor text not null,
  actor_id uuid,
  action text not null,
  subject text,
  outcome text not null check (outcome in ('success', 'denied', 'failed')),
  reason text,
  correlation_id text,
  source_ip text,
  user_agent text,
  details jsonb not null default '{}',
  prev_hash text not null,
  hash text not null
);
create index audit_events_time on audit_events (time);
create index audit_events_action on audit_events (action);
create index audit_events_actor on audit_events (actor);

create table audit_head (
  id integer primary key check (id = 1),
  seq bigint not null,
  hash text not null
);
insert into audit_head (id, seq, hash) values (1, 0, repeat('0', 64));

create table audit_checkpoints (
  seq bigint primary key,
  hash text not null,
  key_id text not null,
  signature text not null,
  signed_at timestamptz not null
);

-- Transactional outbox: side effects committed with the change that causes them.
create table outbox (
  id uuid primary key,
  kind text not null,
  idempotency_key text not null unique,
  payload jsonb not null,
  status text not null default 'pending' check (status in ('pending', 'running', 'done', 'dead')),
  attempts integer not null default 0,
  max_attempts integer not null default 10,
  next_attempt_at timestamptz not null,
  locked_until timestamptz,
  last_error text,
  created_at timestamptz not null,
  done_at timestamptz
);
create index outbox_due on outbox (next_attempt_at) where status in ('pending', 'running');
