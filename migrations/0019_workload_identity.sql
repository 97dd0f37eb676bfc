-- Workload identity (issue 15): a service identity's trusts in external OIDC issuers, and the job
-- tokens already exchanged (a jti is accepted once per issuer).
create table workload_trusts (
  id uuid primary key,
  principal_id uuid not null references principals (id),
  name text not null,
  issuer text not null,
  audiences text[] not null,
  conditions jsonb not null,
  token_ttl_ms integer not null,
  created_by uuid references principals (id),
  created_at timestamptz not null,
  unique (principal_id, name)
);
create index workload_trusts_issuer on workload_trusts (issuer);

create table workload_token_uses (
  issuer text not null,
  jti text not null,
  -- Kept until the job token could no longer be accepted anyway (its expiry plus the clock tolerance).
  keep_until timestamptz not null,
  principal_id uuid not null references principals (id),
  used_at timestamptz not null,
  primary key (issuer, jti)
);
create index workload_token_uses_keep_until on workload_token_uses (keep_until);
