-- Every SSH certificate Stint issues, bound to the activation (request) and target it was issued for.
-- The SSH proxy accepts a certificate only while that activation is active, and only for its target;
-- the KRL (GET /v1/ssh/krl) lists the serials of certificates whose activation ended before they
-- expire, for hosts that trust the CA directly (sshd RevokedKeys).
create table ssh_certificates (
  serial text primary key,
  principal_id uuid not null references principals (id),
  request_id uuid not null references activation_requests (id),
  target_id uuid not null references targets (id),
  principal text not null,
  key_id text not null,
  issued_at timestamptz not null,
  valid_before timestamptz not null
);
create index ssh_certificates_request on ssh_certificates (request_id);
create index ssh_certificates_valid_before on ssh_certificates (valid_before);
