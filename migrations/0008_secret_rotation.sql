-- A secret that is a login's password at a target: rotation changes it there, proves the new one, then commits it.
alter table secrets add column rotation jsonb;
