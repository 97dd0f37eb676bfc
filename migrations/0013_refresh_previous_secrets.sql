-- The hashes of a refresh session's rotated secrets (newest last, a bounded number). Reuse detection ends
-- the session only when a presented secret matches one of them; a secret that never belonged to the
-- session is just a wrong token, so knowing a session id is not enough to sign its owner out.
alter table refresh_sessions add column previous_token_hashes text[] not null default '{}';
