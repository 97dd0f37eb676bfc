-- Audit sequencing off the business transaction's critical path (issue 14).
-- A transaction writes its events here, unchained and without taking the head lock; the sequencer
-- moves committed ones into audit_events in batches (seq, prev_hash, hash), in `pos` order among
-- those it finds, and moves the head, all in one transaction: an event is either pending or
-- chained, never both, never lost. `mac` is an HMAC-SHA256 under a key derived from the master key
-- over the event's canonical JSON: a database writer cannot add an event the sequencer will chain.
create table audit_pending (
  pos bigserial primary key,
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
  mac text not null
);

-- The lease of the one background sequencer of a cluster (any node takes it over once it expires).
create table audit_sequencer (
  id integer primary key check (id = 1),
  holder text,
  expires_at timestamptz not null
);
insert into audit_sequencer (id, holder, expires_at) values (1, null, 'epoch');
