-- The node relaying a live session touches it at every sweep; a session nobody touched for a while
-- belonged to a node that died, and any node ends it (end_reason 'node_lost').
alter table sessions add column seen_at timestamptz;
update sessions set seen_at = coalesce(ended_at, started_at);
create index sessions_unseen on sessions (seen_at) where ended_at is null;
