-- SCIM and single sign-on meet on one account (docs/identity.md, "SCIM and single sign-on together"), and an
-- administrator's disable outlasts the identity provider's next sync.
-- disabled_by: who disabled the principal: 'scim:<service>' (a SCIM deprovision, which SCIM may undo) or
-- 'user:<name>' (a Stint administrator, which only an administrator undoes). Null while active; a principal
-- disabled before this migration counts as an administrator's.
alter table principals add column disabled_by text;
-- provisioned_by: the SCIM service identity that provisioned (or adopted) the principal; single sign-on links
-- an account only to the provider that names that service (never across issuers).
alter table principals add column provisioned_by text;
-- username: the provider's usernameClaim value at the link's first sign-in, matched exactly (case aside) to a
-- SCIM userName; null for links from before this migration.
alter table oidc_identities add column username text;
-- SCIM's filter on userName and the pairing look these up by their lower-cased spelling.
create index principals_scim_name_lower on principals (lower(scim_name));
create index oidc_identities_username on oidc_identities (issuer, lower(username));
