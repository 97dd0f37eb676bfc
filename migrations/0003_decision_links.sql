-- One-time decision links: the jti of every link token that was used, so none works twice.
create table used_decision_links (
  jti text primary key,
  request_id uuid not null references activation_requests (id),
  used_by uuid not null references principals (id),
  used_at timestamptz not null
);
