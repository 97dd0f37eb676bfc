-- SCIM 2.0 provisioning (issue 15): the identity provider's own id for the users and groups it provisions.
-- Principals and groups it created have source 'scim'; SCIM sees and changes only those.
alter table principals add column external_id text;
create unique index principals_scim_external_id on principals (external_id) where source = 'scim' and external_id is not null;
alter table groups add column external_id text;
create unique index groups_scim_external_id on groups (external_id) where source = 'scim' and external_id is not null;
-- The name the identity provider knows it by (a user's userName such as alice@example.com, a group's
-- displayName): Stint's own name is derived from it (lower case, safe characters) and never changes.
alter table principals add column scim_name text;
alter table groups add column scim_name text;
