-- Four-eyes on changes to access itself (issue 16): a configuration file whose plan widens access at a risk tier
-- four-eyes covers is held here until a second admin (never its author) approves it. On approval the file is
-- applied again, atomically, and only if the catalog is still what the plan was made against (base_fingerprint).
create table change_requests (
  id uuid primary key,
  -- pending → applied | denied | expired | stale (the catalog changed under it; the author applies again)
  status text not null check (status in ('pending', 'applied', 'denied', 'expired', 'stale')),
  author_id uuid not null references principals (id),
  author_name text not null,
  -- The configuration file as the author sent it, and the plan (changes, summary, notes) it made.
  document text not null,
  plan jsonb not null,
  -- Each change's effect on access and the tier it reaches (change-requests.rules.ts).
  assessment jsonb not null,
  tier text not null check (tier in ('low', 'medium', 'high', 'critical')),
  -- SHA-256 of the catalog (as configuration as code sees it) the plan was made against.
  base_fingerprint text not null,
  created_at timestamptz not null,
  expires_at timestamptz not null,
  decided_by_id uuid references principals (id),
  decided_by_name text,
  decided_at timestamptz,
  decision_reason text
);
create index change_requests_pending on change_requests (created_at) where status = 'pending';
