-- Anomaly alerts (issue 16). The alerts consumer reads the chained audit log from its own cursor, a row of
-- siem_cursors named `alerts:anomaly` (a name no SIEM destination can take: destination names have no colon),
-- under the same lease. What the rules learned per principal (usual hours, known addresses, roles used, decision
-- counts) is one row of alert_state per key, written in the transaction that moves the cursor, with the
-- seq of the last event it took in: an event is learned from at most once.
create table alert_state (
  key text primary key,
  seq bigint not null,
  state jsonb not null,
  updated_at timestamptz not null
);

-- One alert per rule and audit event: reprocessing an event raises nothing twice.
create table alerts (
  id uuid primary key,
  rule text not null,
  severity text not null check (severity in ('info', 'warning', 'critical')),
  event_id uuid not null,
  event_seq bigint not null,
  event_time timestamptz not null,
  principal text,
  subject text,
  title text not null,
  text text not null,
  details jsonb not null,
  action text not null check (action in ('none', 'review', 'revoke')),
  review_item_id uuid references review_items (id),
  status text not null check (status in ('open', 'acknowledged')),
  raised_at timestamptz not null,
  acknowledged_at timestamptz,
  acknowledged_by text,
  ack_note text,
  unique (rule, event_id)
);
create index alerts_raised on alerts (raised_at desc, id desc);
create index alerts_open on alerts (raised_at) where status = 'open';

-- An alert whose rule is configured with `action: review` opens a review item of its own kind.
alter table review_items drop constraint review_items_kind_check;
alter table review_items add constraint review_items_kind_check
  check (kind in ('break-glass-secret', 'break-glass-activation', 'eligibility', 'anomaly-alert'));
