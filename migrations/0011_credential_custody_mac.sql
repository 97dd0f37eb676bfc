-- A session-secret allowance carries a MAC (key derived from the master key) over its path, target and endpoint,
-- so that a database writer cannot allow a secret for a target, or move an allowance to another address.
-- Rows written before get theirs at start (grants bindStoredCredentials).
alter table secret_target_allowances add column mac text;
