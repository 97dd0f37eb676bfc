-- Break-glass secrets and the reviews they leave behind.

-- A break-glass secret is revealed only with a reason and a fresh MFA check, loudly; it is rotated afterwards.
alter table secrets add column break_glass boolean not null default false;
alter table secrets add column rotation_due_at timestamptz;
create index secrets_rotation_due on secrets (rotation_due_at) where rotation_due_at is not null;

-- Items someone must review after the fact (a break-glass reveal, a break-glass activation).
create table review_items (
  id uuid primary key,
  kind text not null check (kind in ('break-glass-secret', 'break-glass-activation')),
  subject text not null,
  actor_id uuid references principals (id),
  reason text not null,
  status text not null check (status in ('open', 'closed')),
  created_at timestamptz not null,
  due_at timestamptz not null,
  closed_at timestamptz,
  closed_by text,
  outcome text
);
create index review_items_open on review_items (due_at) where status = 'open';
