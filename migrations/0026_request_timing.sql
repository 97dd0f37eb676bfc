-- Request timing (issue 16): a pending request expires at pending_expires_at (submission + the policy's
-- requestTtl, default 24h); a request may ask to start later (start_at): approved ahead, it stays 'approved'
-- until the scheduler starts it at start_at.
alter table activation_requests add column start_at timestamptz;
alter table activation_requests add column pending_expires_at timestamptz;
-- Requests already pending get the default time to live, counted from their submission.
update activation_requests set pending_expires_at = submitted_at + interval '24 hours' where state = 'pending';
create index activation_requests_pending_expiry on activation_requests (pending_expires_at) where state = 'pending';
create index activation_requests_start on activation_requests (start_at)
  where state = 'approved' and start_at is not null;
