-- PIM core: targets, policies, roles, eligibility, activation requests, decisions, grants.

create table targets (
  id uuid primary key,
  name text not null unique,
  kind text not null check (kind in ('internal', 'postgres', 'mysql', 'ldap', 'ssh-host', 'webhook')),
  address text,
  config jsonb not null default '{}',
  labels jsonb not null default '{}',
  created_at timestamptz not null,
  updated_at timestamptz not null
);

create table policies (
  id uuid primary key,
  name text not null unique,
  description text,
  spec jsonb not null,
  created_at timestamptz not null,
  updated_at timestamptz not null
);

create table roles (
  id uuid primary key,
  name text not null unique,
  description text,
  target_id uuid not null references targets (id),
  policy_id uuid not null references policies (id),
  entitlement jsonb not null default '{}',
  risk text not null check (risk in ('low', 'medium', 'high', 'critical')),
  owners text[] not null default '{}',
  created_at timestamptz not null,
  updated_at timestamptz not null
);

-- Eligibility: a principal or a group may activate a role, itself time-bound.
create table eligibilities (
  id uuid primary key,
  role_id uuid not null references roles (id),
  principal_id uuid references principals (id),
  group_id uuid references groups (id),
  starts_at timestamptz not null,
  ends_at timestamptz,
  granted_by text not null,
  reason text,
  created_at timestamptz not null,
  removed_at timestamptz,
  expiry_reported_at timestamptz,
  check ((principal_id is null) <> (group_id is null))
);
create index eligibilities_role on eligibilities (role_id) where removed_at is null;
create index eligibilities_ends on eligibilities (ends_at) where removed_at is null and expiry_reported_at is null;

create table activation_requests (
  id uuid primary key,
  role_id uuid not null references roles (id),
  requester_id uuid not null references principals (id),
  -- An extension is a request of its own that, once approved, moves its parent's expiry.
  extends_request_id uuid references activation_requests (id),
  state text not null check (state in ('pending', 'approved', 'provisioning', 'active', 'denied', 'cancelled', 'expired', 'revoked', 'deactivated', 'failed')),
  duration_ms bigint not null,
  reason text not null,
  ticket text,
  break_glass boolean not null default false,
  -- The policy as it was at submission, with any extra stage the activation window added.
  policy_snapshot jsonb not null,
  stages jsonb not null default '[]',
  stage_index integer not null default 0,
  stage_deadline timestamptz,
  mfa_at timestamptz,
  submitted_at timestamptz not null,
  decided_at timestamptz,
  activated_at timestamptz,
  expires_at timestamptz,
  ended_at timestamptz,
  end_reason text,
  ended_by text,
  extensions integer not null default 0,
  expiring_notified_at timestamptz,
  updated_at timestamptz not null
);
-- Never two overlapping grants: one open request per requester and role.
create unique index activation_requests_one_open on activation_requests (requester_id, role_id)
  where extends_request_id is null and state in ('pending', 'approved', 'provisioning', 'active');
create unique index activation_requests_one_open_extension on activation_requests (extends_request_id)
  where extends_request_id is not null and state = 'pending';
create index activation_requests_expiry on activation_requests (expires_at) where state = 'active';
create index activation_requests_stage_deadline on activation_requests (stage_deadline) where state = 'pending';
create index activation_requests_requester on activation_requests (requester_id, submitted_at desc);
create index activation_requests_role on activation_requests (role_id, submitted_at desc);

create table request_decisions (
  id uuid primary key,
  request_id uuid not null references activation_requests (id),
  stage_index integer not null,
  approver_id uuid not null references principals (id),
  decision text not null check (decision in ('approve', 'deny')),
  reason text,
  decided_at timestamptz not null,
  unique (request_id, stage_index, approver_id)
);

-- The realized privilege at the target for an active request.
create table grants (
  id uuid primary key,
  request_id uuid not null unique references activation_requests (id),
  role_id uuid not null references roles (id),
  principal_id uuid not null references principals (id),
  state text not null check (state in ('provisioning', 'active', 'revoking', 'revoked', 'failed')),
  attempts integer not null default 0,
  last_error text,
  created_at timestamptz not null,
  updated_at timestamptz not null
);
create index grants_principal on grants (principal_id) where state in ('provisioning', 'active', 'revoking');
