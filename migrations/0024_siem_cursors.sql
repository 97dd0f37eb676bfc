-- SIEM streaming (issue 16): one row per configured destination. `seq` is the audit chain's sequence
-- number of the last event the destination has received (at least once), `checkpoint_seq` that of the
-- last signed checkpoint it has received; delivery resumes after them, so a restart neither loses nor
-- re-reads the stream. The lease makes one node of the cluster the destination's only deliverer; a
-- cursor moves only under the lease (`holder` in the update), so a node that lost it cannot move it.
create table siem_cursors (
  destination text primary key,
  seq bigint not null default 0,
  checkpoint_seq bigint not null default 0,
  holder text,
  lease_expires_at timestamptz not null default 'epoch',
  delivered_at timestamptz,
  updated_at timestamptz not null default now()
);
