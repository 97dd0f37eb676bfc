-- Required audit checkpoints (issue 12, finding 7): each checkpoint states, under its signature, the
-- checkpoint interval in force after it, so `verify` can tell a missing checkpoint from one never due.
-- NULL marks a checkpoint signed before this migration (v1 message: seq and hash only).
alter table audit_checkpoints add column every integer;
