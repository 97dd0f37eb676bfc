-- Each SCIM service sees and changes only the users and groups it provisioned (docs/security.md, docs/identity.md).
-- provisioned_by: the SCIM service identity that created the group. Groups SCIM created before this migration
-- keep null: with exactly one service in scimServices that service owns them (and records itself at its next
-- change of the group); with several, null is owned by none and read-only to SCIM (404) until an administrator
-- sets it (docs/operations.md, upgrade notes). SQL cannot know the configuration, so nothing is guessed here.
alter table groups add column provisioned_by text;
