-- Access review campaigns (recertification). A campaign's items are rows of the existing review_items table
-- (kind 'eligibility'), so break-glass items and eligibility items share one inbox.

-- Recurring campaigns declared in the configuration file (`reviews:`); the reviews worker opens one campaign per
-- definition when next_open_at passes and moves next_open_at on by its period.
create table review_definitions (
  name text primary key,
  spec jsonb not null,
  next_open_at timestamptz not null,
  created_at timestamptz not null,
  updated_at timestamptz not null
);

create table review_campaigns (
  id uuid primary key,
  name text not null,
  -- The recurring definition that opened it (null: created ad hoc by API).
  definition_name text,
  scope jsonb not null,
  reviewers jsonb not null,
  -- 'remove' or 'keep' for every item, or 'by-risk' (remove for high and critical roles, keep otherwise).
  on_missed text not null check (on_missed in ('remove', 'keep', 'by-risk')),
  remind_every_ms bigint,
  escalate_to text,
  status text not null check (status in ('open', 'closed')),
  opened_at timestamptz not null,
  due_at timestamptz not null,
  last_reminded_at timestamptz,
  escalated_at timestamptz,
  closed_at timestamptz,
  closed_by text,
  created_by text not null
);
-- One open campaign per definition: two nodes opening the same period collide here.
create unique index review_campaigns_one_open_definition on review_campaigns (definition_name)
  where status = 'open' and definition_name is not null;
create index review_campaigns_due on review_campaigns (due_at) where status = 'open';

alter table review_items drop constraint review_items_kind_check;
alter table review_items add constraint review_items_kind_check
  check (kind in ('break-glass-secret', 'break-glass-activation', 'eligibility'));
alter table review_items add column campaign_id uuid references review_campaigns (id);
alter table review_items add column eligibility_id uuid references eligibilities (id);
alter table review_items add column role_id uuid references roles (id);
alter table review_items add column reviewer_ids uuid[] not null default '{}';
alter table review_items add column evidence jsonb;
alter table review_items add column on_missed text check (on_missed in ('remove', 'keep'));
alter table review_items add column decision_reason text;
create index review_items_campaign on review_items (campaign_id);
create index review_items_reviewers on review_items using gin (reviewer_ids) where status = 'open';
