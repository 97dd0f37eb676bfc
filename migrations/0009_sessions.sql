-- Brokered sessions (SSH and PostgreSQL proxies), the keys behind them and database tokens.

-- Stint's SSH keys: the user-certificate authority and the proxy's host key. Private halves sealed
-- with a master-key-derived key, bound to the purpose; every node reads the same pair.
create table ssh_keys (
  purpose text primary key check (purpose in ('user-ca', 'proxy-host')),
  public_key text not null,
  sealed_private_key text not null,
  created_at timestamptz not null
);

-- Passwords for the PostgreSQL proxy (`stint db login`): only a SHA-256 of the token is kept. A token
-- is bound to its user, role and activation and dies with the activation; `once` tokens open one session.
create table database_tokens (
  id uuid primary key,
  token_hash text not null unique,
  principal_id uuid not null references principals (id),
  request_id uuid not null references activation_requests (id),
  role_id uuid not null references roles (id),
  once boolean not null default false,
  used_at timestamptz,
  created_at timestamptz not null,
  expires_at timestamptz not null
);
create index database_tokens_request on database_tokens (request_id);

-- A brokered connection: who, through which activation, to which target, as which login; how it
-- ended; where its recording is and the SHA-256 the audit event names.
create table sessions (
  id uuid primary key,
  kind text not null check (kind in ('ssh', 'postgres')),
  principal_id uuid not null references principals (id),
  request_id uuid not null references activation_requests (id),
  role_id uuid not null references roles (id),
  target_id uuid not null references targets (id),
  login text not null,
  client_address text,
  node text not null,
  started_at timestamptz not null,
  ended_at timestamptz,
  end_reason text,
  end_detail text,
  ended_by text,
  recording_key text,
  recording_sha256 text,
  recording_bytes bigint,
  bytes_up bigint not null default 0,
  bytes_down bigint not null default 0
);
create index sessions_live on sessions (request_id) where ended_at is null;
create index sessions_started on sessions (started_at desc);
