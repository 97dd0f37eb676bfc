-- The vault: envelope-encrypted secrets with versions, key-encryption keys, the seal, check-outs.

-- How the vault's root key is obtained (a key file or environment variable, or Shamir shares), and a value
-- sealed under it that proves a root key is the right one.
create table vault_config (
  id integer primary key check (id = 1),
  mode text not null check (mode in ('key-file', 'shamir')),
  shares integer,
  threshold integer,
  verifier text not null,
  created_at timestamptz not null,
  updated_at timestamptz not null
);

-- Key-encryption keys, each sealed under the root key. Data keys are wrapped by the newest active one;
-- rotating adds a version and re-wraps every data key, never touching the payloads.
create table vault_keks (
  version integer primary key,
  wrapped text not null,
  state text not null check (state in ('active', 'retired')),
  created_at timestamptz not null
);

create table secrets (
  id uuid primary key,
  path text not null unique,
  kind text not null check (kind in ('password', 'ssh-key', 'api-key', 'certificate', 'generic')),
  description text,
  owner text,
  metadata jsonb not null default '{}',
  roles text[] not null default '{}',
  platform_roles text[] not null default '{}',
  checkout jsonb not null default '{}',
  current_version integer not null,
  created_at timestamptz not null,
  updated_at timestamptz not null
);

-- Each version: the payload sealed under its own data key, the data key wrapped by a KEK; both bound to
-- the secret, its path and the version, so rows cannot be swapped.
create table secret_versions (
  secret_id uuid not null references secrets (id) on delete cascade,
  version integer not null,
  ciphertext text not null,
  wrapped_key text not null,
  kek_version integer not null references vault_keks (version),
  source text not null check (source in ('put', 'generate', 'rotation')),
  created_by text not null,
  created_at timestamptz not null,
  primary key (secret_id, version)
);

create table secret_checkouts (
  id uuid primary key,
  secret_id uuid not null references secrets (id) on delete cascade,
  holder_id uuid not null references principals (id),
  reason text not null,
  checked_out_at timestamptz not null,
  expires_at timestamptz not null,
  returned_at timestamptz,
  return_reason text
);
-- Exclusive: at most one open check-out per secret, decided by the database.
create unique index secret_checkouts_one_open on secret_checkouts (secret_id) where returned_at is null;
create index secret_checkouts_expiry on secret_checkouts (expires_at) where returned_at is null;
