-- Invites (docs/security.md, finding 89): an administrator makes a user without choosing their password; the user
-- redeems a one-time code and chooses it. Only the code's SHA-256 is kept; one open invite per user (issuing another
-- replaces it: the older row is marked replaced), single use, expiring.
create table user_invites (
  id uuid primary key,
  principal_id uuid not null references principals (id) on delete cascade,
  code_hash text not null,
  -- Who issued it (`user:<name>`), for the audit trail and `stint users show`.
  issued_by text not null,
  created_at timestamptz not null,
  expires_at timestamptz not null,
  used_at timestamptz,
  -- 'redeemed' (the user chose a password), 'replaced' (a newer invite, or a password set otherwise) or 'revoked'
  -- (the user was disabled: an invite never outlives a leaver, even one enabled again later).
  ended_as text check (ended_as in ('redeemed', 'replaced', 'revoked'))
);
create unique index user_invites_open on user_invites (principal_id) where used_at is null;
