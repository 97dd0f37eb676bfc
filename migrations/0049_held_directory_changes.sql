-- Four-eyes on the directory (docs/security.md, finding 81): granting a platform role that may approve (admin,
-- security) and an administrator's reset of an approver's password are held as change requests, as widening files
-- are, so one admin cannot make or take over a second approver. kind: what the change request holds ('catalog': a
-- configuration file, as before; 'directory': a change to one principal, described in plan.directory).
alter table change_requests add column kind text not null default 'catalog' check (kind in ('catalog', 'directory'));
-- A held password reset's scrypt hash, sealed under the vault's current key-encryption key (envelope encryption,
-- bound to the change request): { ciphertext, wrappedKey, kekVersion }. Null for everything else; cleared once the
-- change request is decided, expired or stale.
alter table change_requests add column sealed_secret jsonb;
