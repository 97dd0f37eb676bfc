-- Connectors: admin credentials of targets, the login a grant was made for, drift findings.

-- A target's admin credential until the vault takes over: AES-256-GCM under a key derived from the
-- master key, bound to its path. Read by the workers for one connector call, never returned by the API.
create table target_secrets (
  path text primary key,
  sealed text not null,
  created_at timestamptz not null,
  updated_at timestamptz not null
);

-- The login the grant was provisioned for: revocation removes exactly that, even if the mapping changed since.
alter table grants add column login text;
alter table grants add column next_attempt_at timestamptz;
create index grants_unsettled on grants (state, updated_at) where state in ('provisioning', 'revoking');

-- What a reconcile found at a target that Stint did not grant (unexpected) or that Stint granted
-- but the target lacks (missing). One open finding per role, login and kind; it closes when it is
-- gone or removed, so a cycle that sees the same drift again does not report it twice.
create table drift_findings (
  id uuid primary key,
  target_id uuid not null references targets (id) on delete cascade,
  role_id uuid not null references roles (id) on delete cascade,
  login text not null,
  kind text not null check (kind in ('unexpected', 'missing')),
  action text not null check (action in ('reported', 'removing', 'removed', 'reprovisioning')),
  first_seen_at timestamptz not null,
  last_seen_at timestamptz not null,
  resolved_at timestamptz,
  resolution text
);
create unique index drift_findings_open on drift_findings (role_id, login, kind) where resolved_at is null;
create index drift_findings_target on drift_findings (target_id) where resolved_at is null;
