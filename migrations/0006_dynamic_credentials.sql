-- Dynamic database credentials: the password of a login minted for one grant, sealed by the vault
-- (envelope encryption, bound to the grant), readable by the requester while the grant is active.
create table grant_credentials (
  grant_id uuid primary key references grants (id),
  login text not null,
  ciphertext text not null,
  wrapped_key text not null,
  kek_version integer not null references vault_keks (version),
  created_at timestamptz not null
);
