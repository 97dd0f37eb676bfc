-- Credential custody: a target's credential and the vault secrets its sessions use belong to that target at
-- its endpoint; rotations are claimed with a lease and leave a pending version until settled.

-- A stored target credential belongs to one target and to the endpoint (address, login, TLS) it was set for.
-- Both are in the sealed value's associated data. Rows from before are re-sealed at start (target_id null
-- until then) when exactly one target names their path.
alter table target_secrets add column target_id uuid references targets (id) on delete cascade;
alter table target_secrets add column endpoint text;

-- Which vault secrets a target's sessions may inject, and for which endpoint: created when the target is
-- defined with a secret of its own (targets/<name>/…) or one its author may read, or by an admin's
-- `stint secret allow`. A secret is used by at most one target.
create table secret_target_allowances (
  path text not null,
  target_id uuid not null references targets (id) on delete cascade,
  endpoint text not null,
  granted_by text not null,
  created_at timestamptz not null,
  primary key (path, target_id)
);
create unique index secret_target_allowances_one_target on secret_target_allowances (path);
create index secret_target_allowances_target on secret_target_allowances (target_id);

-- Rotation: a node claims a due rotation until the lease ends; a version written before the target was
-- changed stays pending until the rotation commits (or is reconciled at start after a crash).
alter table secrets add column rotation_claimed_by text;
alter table secrets add column rotation_claimed_until timestamptz;
alter table secret_versions add column pending boolean not null default false;
