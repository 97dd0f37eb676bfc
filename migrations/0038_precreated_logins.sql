-- Logins created at a PostgreSQL target ahead of demand (the target's options.preCreatedLogins): NOLOGIN, no
-- membership, an expired VALID UNTIL, marked as Stint's, their password already set and sealed here (bound to
-- `precreated:<id>`). 'creating' while the target call runs; 'ready' once it has. A submit takes one (the row is
-- deleted and its sealed password moves to the grant's credential, `pool_id` naming the binding); the activation
-- then only gives it LOGIN, a validity and the role's membership. Dropped like any minted login when it ends.
create table precreated_logins (
  id uuid primary key,
  target_id uuid not null references targets (id) on delete cascade,
  login text not null unique,
  state text not null check (state in ('creating', 'ready')),
  ciphertext text not null,
  wrapped_key text not null,
  kek_version integer not null references vault_keks (version),
  created_at timestamptz not null
);
create index precreated_logins_ready on precreated_logins (target_id, created_at) where state = 'ready';

-- The pre-created login a grant was handed: its sealed password opens bound to `precreated:<pool_id>`. Unique, so
-- no two grants ever hold the same pre-created login.
alter table grant_credentials add column pool_id uuid;
create unique index grant_credentials_pool_id on grant_credentials (pool_id) where pool_id is not null;
