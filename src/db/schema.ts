/** Row types of every table, as Kysely sees them. Migrations are the source of truth. */
import type { ColumnType, Generated } from "kysely";

type Timestamp = ColumnType<Date, Date | string, Date | string>;
type Json<T = Record<string, unknown>> = ColumnType<T, string, string>;

export interface PrincipalsTable {
  id: string;
  kind: "user" | "service";
  name: string;
  email: ColumnType<string | null, string | null | undefined, string | null>;
  display_name: ColumnType<string | null, string | null | undefined, string | null>;
  manager_id: ColumnType<string | null, string | null | undefined, string | null>;
  status: ColumnType<"active" | "disabled", "active" | "disabled" | undefined, "active" | "disabled">;
  platform_roles: string[];
  source: Generated<string>;
  /** The identity provider's id for a principal SCIM provisioned (migration 0020). */
  external_id: Generated<string | null>;
  /** The userName the identity provider gave (migration 0020). */
  scim_name: Generated<string | null>;
  /** Who disabled it: `scim:<service>` or `user:<name>` (an administrator); null while active (migration 0033). */
  disabled_by: Generated<string | null>;
  /** The SCIM service identity that provisioned or adopted it (migration 0033). */
  provisioned_by: Generated<string | null>;
  /** When it last lost its last role that may approve a held change (admin, security) (migration 0048). */
  approver_role_lost_at: Generated<Date | null>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface PasswordCredentialsTable {
  principal_id: string;
  hash: string;
  updated_at: Timestamp;
}

export interface MfaTotpTable {
  principal_id: string;
  secret_sealed: string;
  confirmed_at: Timestamp | null;
  last_used_step: Generated<number>;
  created_at: Timestamp;
}

export interface RecoveryCodesTable {
  id: string;
  principal_id: string;
  code_hash: string;
  used_at: Timestamp | null;
}

export interface GroupsTable {
  id: string;
  name: string;
  description: string | null;
  source: Generated<string>;
  external_id: Generated<string | null>;
  scim_name: Generated<string | null>;
  /** The SCIM service that created the group (migration 0043); null for any other, or one from before. */
  provisioned_by: Generated<string | null>;
  created_at: Timestamp;
}

export interface GroupMembersTable {
  group_id: string;
  principal_id: string;
  added_at: Timestamp;
}

export interface RefreshSessionsTable {
  id: string;
  principal_id: string;
  token_hash: string;
  /** Hashes of the secrets this session rotated away from (bounded; newest last). */
  previous_token_hashes: Generated<string[]>;
  mfa_at: Timestamp | null;
  /** The last passkey (WebAuthn, user verified) check of the session; mfa_at is the last MFA of any kind. */
  webauthn_at: Timestamp | null;
  created_at: Timestamp;
  last_used_at: Timestamp;
  expires_at: Timestamp;
  revoked_at: Timestamp | null;
  revoked_reason: string | null;
  source_ip: string | null;
  user_agent: string | null;
}

export interface ApiTokensTable {
  id: string;
  principal_id: string;
  name: string;
  token_hash: string;
  created_by: string | null;
  created_at: Timestamp;
  expires_at: Timestamp;
  last_used_at: Timestamp | null;
  revoked_at: Timestamp | null;
}

/** A service identity's trust in an external OIDC issuer (migration 0019, modules/workload). */
export interface WorkloadTrustsTable {
  id: string;
  principal_id: string;
  name: string;
  issuer: string;
  audiences: string[];
  conditions: Json<Record<string, string>>;
  token_ttl_ms: number;
  created_by: string | null;
  created_at: Timestamp;
}

/** A job token's `jti` already exchanged, per issuer (migration 0019). */
export interface WorkloadTokenUsesTable {
  issuer: string;
  jti: string;
  keep_until: Timestamp;
  principal_id: string;
  used_at: Timestamp;
}

export interface LoginThrottleTable {
  key: string;
  failures: number;
  window_started_at: Timestamp;
  locked_until: Timestamp | null;
}

export interface SetupCodesTable {
  id: string;
  code_hash: string;
  created_at: Timestamp;
  expires_at: Timestamp;
  used_at: Timestamp | null;
}

/** One-time invites: a user chooses their own password (migration 0050, finding 89). */
export interface UserInvitesTable {
  id: string;
  principal_id: string;
  code_hash: string;
  issued_by: string;
  created_at: Timestamp;
  expires_at: Timestamp;
  used_at: Timestamp | null;
  ended_as: "redeemed" | "replaced" | "revoked" | null;
}

export interface SigningKeysTable {
  id: string;
  purpose: "token" | "audit";
  public_jwk: Json;
  private_sealed: string;
  created_at: Timestamp;
  retired_at: Timestamp | null;
}

export interface AuditEventsTable {
  seq: number;
  id: string;
  time: Timestamp;
  actor: string;
  actor_id: string | null;
  action: string;
  subject: string | null;
  outcome: "success" | "denied" | "failed";
  reason: string | null;
  correlation_id: string | null;
  source_ip: string | null;
  user_agent: string | null;
  details: Json;
  prev_hash: string;
  hash: string;
}

/** Events committed but not yet chained (migration 0018); the sequencer moves them into audit_events. */
export interface AuditPendingTable {
  pos: Generated<number>;
  id: string;
  time: Timestamp;
  actor: string;
  actor_id: string | null;
  action: string;
  subject: string | null;
  outcome: "success" | "denied" | "failed";
  reason: string | null;
  correlation_id: string | null;
  source_ip: string | null;
  user_agent: string | null;
  details: Json;
  mac: string;
}

export interface AuditSequencerTable {
  id: number;
  holder: string | null;
  expires_at: Timestamp;
}

export interface AuditHeadTable {
  id: number;
  seq: number;
  hash: string;
}

export interface AuditCheckpointsTable {
  seq: number;
  hash: string;
  key_id: string;
  signature: string;
  signed_at: Timestamp;
  /** The checkpoint interval in force after this checkpoint (signed); null for checkpoints signed before 0014. */
  every: number | null;
}

export interface OutboxTable {
  id: string;
  kind: string;
  idempotency_key: string;
  payload: Json;
  status: Generated<"pending" | "running" | "done" | "dead">;
  attempts: Generated<number>;
  max_attempts: Generated<number>;
  next_attempt_at: Timestamp;
  locked_until: Timestamp | null;
  last_error: string | null;
  created_at: Timestamp;
  done_at: Timestamp | null;
  /** What the row talks to (`target:<id>`, `channel:<name>`): the runner caps rows running per lane. */
  lane: string | null;
  /** A row run after its enqueuing commit: its node renews this while it runs; past it, any runner takes over. */
  alive_until: Timestamp | null;
}

export interface TargetsTable {
  id: string;
  name: string;
  kind: "internal" | "postgres" | "mysql" | "ldap" | "ssh-host" | "webhook";
  address: string | null;
  config: Json;
  labels: Json<Record<string, string>>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface PoliciesTable {
  id: string;
  name: string;
  description: string | null;
  spec: Json;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface RolesTable {
  id: string;
  name: string;
  description: string | null;
  target_id: string;
  policy_id: string;
  entitlement: Json;
  risk: "low" | "medium" | "high" | "critical";
  owners: string[];
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface EligibilitiesTable {
  id: string;
  role_id: string;
  principal_id: string | null;
  group_id: string | null;
  starts_at: Timestamp;
  ends_at: Timestamp | null;
  granted_by: string;
  reason: string | null;
  created_at: Timestamp;
  removed_at: Timestamp | null;
  expiry_reported_at: Timestamp | null;
}

export type RequestState =
  | "pending"
  | "approved"
  | "provisioning"
  | "active"
  | "denied"
  | "cancelled"
  | "expired"
  | "revoked"
  | "deactivated"
  | "failed";

export interface ActivationRequestsTable {
  id: string;
  role_id: string;
  requester_id: string;
  extends_request_id: string | null;
  state: RequestState;
  duration_ms: number;
  reason: string;
  ticket: string | null;
  break_glass: Generated<boolean>;
  policy_snapshot: Json;
  stages: Json<unknown[]>;
  stage_index: Generated<number>;
  stage_deadline: Timestamp | null;
  mfa_at: Timestamp | null;
  submitted_at: Timestamp;
  decided_at: Timestamp | null;
  activated_at: Timestamp | null;
  expires_at: Timestamp | null;
  ended_at: Timestamp | null;
  end_reason: string | null;
  ended_by: string | null;
  extensions: Generated<number>;
  expiring_notified_at: Timestamp | null;
  /** A later start the requester asked for: approved ahead, the request stays approved until then (0026). */
  start_at: Timestamp | null;
  /** When a pending request expires undecided: submission + the policy's requestTtl (0026). */
  pending_expires_at: Timestamp | null;
  updated_at: Timestamp;
}

export interface RequestDecisionsTable {
  id: string;
  request_id: string;
  stage_index: number;
  approver_id: string;
  decision: "approve" | "deny";
  reason: string | null;
  decided_at: Timestamp;
}

export interface GrantsTable {
  id: string;
  request_id: string;
  role_id: string;
  principal_id: string;
  state: "provisioning" | "active" | "revoking" | "revoked" | "failed";
  attempts: Generated<number>;
  last_error: string | null;
  login: string | null;
  next_attempt_at: Timestamp | null;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface TargetSecretsTable {
  path: string;
  sealed: string;
  /** The target it belongs to (null: stored before 0011 and not yet re-sealed). */
  target_id: string | null;
  /** The endpoint fingerprint it was set for (custody.rules endpointOf). */
  endpoint: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface DriftFindingsTable {
  id: string;
  target_id: string;
  role_id: string;
  login: string;
  kind: "unexpected" | "missing";
  action: "reported" | "removing" | "removed" | "reprovisioning";
  first_seen_at: Timestamp;
  last_seen_at: Timestamp;
  resolved_at: Timestamp | null;
  resolution: string | null;
}

export interface VaultConfigTable {
  id: number;
  mode: "key-file" | "shamir";
  shares: number | null;
  threshold: number | null;
  verifier: string;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface VaultKeksTable {
  version: number;
  wrapped: string;
  state: "active" | "retired";
  created_at: Timestamp;
}

export interface SecretsTable {
  id: string;
  path: string;
  kind: "password" | "ssh-key" | "api-key" | "certificate" | "generic";
  description: string | null;
  owner: string | null;
  metadata: Json<Record<string, string>>;
  roles: string[];
  platform_roles: string[];
  checkout: Json;
  current_version: number;
  break_glass: Generated<boolean>;
  rotation_due_at: Timestamp | null;
  rotation: Json<{ target: string; login: string; every?: string }> | null;
  rotation_claimed_by: string | null;
  rotation_claimed_until: Timestamp | null;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface SecretTargetAllowancesTable {
  path: string;
  target_id: string;
  endpoint: string;
  granted_by: string;
  created_at: Timestamp;
  /** HMAC over path, target and endpoint (custody.rules allowanceMac); null only before 0011_allowance_mac. */
  mac: string | null;
}

export interface SecretVersionsTable {
  secret_id: string;
  version: number;
  ciphertext: string;
  wrapped_key: string;
  kek_version: number;
  source: "put" | "generate" | "rotation";
  created_by: string;
  created_at: Timestamp;
  /** Written before a rotation changed the target; current only once the rotation commits. */
  pending: Generated<boolean>;
}

export interface SecretCheckoutsTable {
  id: string;
  secret_id: string;
  holder_id: string;
  reason: string;
  checked_out_at: Timestamp;
  expires_at: Timestamp;
  returned_at: Timestamp | null;
  return_reason: string | null;
}

export interface GrantCredentialsTable {
  grant_id: string;
  login: string;
  ciphertext: string;
  wrapped_key: string;
  kek_version: number;
  created_at: Timestamp;
  /** The pre-created login handed to the grant (its password opens bound to `precreated:<pool_id>`); else null. */
  pool_id: Generated<string | null>;
}

/** A login created at a PostgreSQL target ahead of demand (migrations/0038), NOLOGIN until handed out. */
export interface PrecreatedLoginsTable {
  id: string;
  target_id: string;
  login: string;
  state: "creating" | "ready";
  ciphertext: string;
  wrapped_key: string;
  kek_version: number;
  created_at: Timestamp;
}

export interface SshKeysTable {
  purpose: "user-ca" | "proxy-host";
  public_key: string;
  sealed_private_key: string;
  created_at: Timestamp;
}

/** An issued SSH certificate, bound to its activation and target (serial: the uint64 in decimal). */
export interface SshCertificatesTable {
  serial: string;
  principal_id: string;
  request_id: string;
  target_id: string;
  principal: string;
  key_id: string;
  issued_at: Timestamp;
  valid_before: Timestamp;
}

export interface DatabaseTokensTable {
  id: string;
  token_hash: string;
  principal_id: string;
  request_id: string;
  role_id: string;
  once: boolean;
  used_at: Timestamp | null;
  created_at: Timestamp;
  expires_at: Timestamp;
}

export interface SessionsTable {
  id: string;
  kind: "ssh" | "postgres" | "mysql";
  principal_id: string;
  request_id: string;
  role_id: string;
  target_id: string;
  login: string;
  client_address: string | null;
  node: string;
  started_at: Timestamp;
  ended_at: Timestamp | null;
  end_reason: string | null;
  end_detail: string | null;
  ended_by: string | null;
  recording_key: string | null;
  recording_sha256: string | null;
  recording_bytes: number | null;
  bytes_up: Generated<number>;
  bytes_down: Generated<number>;
  seen_at: Timestamp | null;
}

export interface ReviewItemsTable {
  id: string;
  kind: "break-glass-secret" | "break-glass-activation" | "anomaly-alert" | "eligibility";
  subject: string;
  /** Break-glass: who used it; eligibility: whose access is reviewed. */
  actor_id: string | null;
  reason: string;
  status: "open" | "closed";
  created_at: Timestamp;
  due_at: Timestamp;
  closed_at: Timestamp | null;
  closed_by: string | null;
  outcome: string | null;
  /** Access review campaigns (migration 0025). */
  campaign_id: Generated<string | null>;
  eligibility_id: Generated<string | null>;
  role_id: Generated<string | null>;
  reviewer_ids: Generated<string[]>;
  evidence: Generated<unknown>;
  on_missed: Generated<"remove" | "keep" | null>;
  decision_reason: Generated<string | null>;
}

export interface ReviewDefinitionsTable {
  name: string;
  spec: unknown;
  next_open_at: Timestamp;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface ReviewCampaignsTable {
  id: string;
  name: string;
  definition_name: string | null;
  scope: unknown;
  reviewers: unknown;
  on_missed: "remove" | "keep" | "by-risk";
  remind_every_ms: ColumnType<string | null, number | null, number | null>;
  escalate_to: string | null;
  status: "open" | "closed";
  opened_at: Timestamp;
  due_at: Timestamp;
  last_reminded_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  escalated_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  closed_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  closed_by: ColumnType<string | null, string | null | undefined, string | null>;
  created_by: string;
}

export interface UsedDecisionLinksTable {
  jti: string;
  request_id: string;
  used_by: string;
  used_at: Timestamp;
}

export interface WebauthnCredentialsTable {
  id: string;
  principal_id: string;
  credential_id: string;
  public_key: string;
  sign_count: ColumnType<number | string, number, number>;
  transports: string[];
  name: string;
  aaguid: string;
  backed_up: boolean;
  created_at: Timestamp;
  last_used_at: Timestamp | null;
}

export interface WebauthnChallengesTable {
  id: string;
  principal_id: string;
  purpose: "register" | "login" | "step_up";
  challenge: string;
  session_id: string | null;
  handoff_id: string | null;
  created_at: Timestamp;
  expires_at: Timestamp;
  used_at: Timestamp | null;
}

export interface StepUpHandoffsTable {
  id: string;
  principal_id: string;
  session_id: string;
  match_code: string;
  source_ip: string | null;
  user_agent: string | null;
  created_at: Timestamp;
  expires_at: Timestamp;
  completed_at: Timestamp | null;
}

/** Four-eyes change requests (migration 0027). */
export interface ChangeRequestsTable {
  id: string;
  status: "pending" | "applied" | "denied" | "expired" | "stale";
  author_id: string;
  author_name: string;
  document: string;
  plan: Json<unknown>;
  assessment: Json<unknown>;
  tier: "low" | "medium" | "high" | "critical";
  base_fingerprint: string;
  created_at: Timestamp;
  expires_at: Timestamp;
  decided_by_id: string | null;
  decided_by_name: string | null;
  decided_at: Timestamp | null;
  decision_reason: string | null;
  /** What it holds: a configuration file, or a change to one principal (migration 0049). */
  kind: Generated<"catalog" | "directory">;
  /** A held password reset's hash, sealed by the vault; null otherwise and once decided (migration 0049). */
  sealed_secret: ColumnType<unknown, string | null | undefined, string | null>;
}

export interface Database {
  principals: PrincipalsTable;
  password_credentials: PasswordCredentialsTable;
  mfa_totp: MfaTotpTable;
  recovery_codes: RecoveryCodesTable;
  groups: GroupsTable;
  group_members: GroupMembersTable;
  refresh_sessions: RefreshSessionsTable;
  api_tokens: ApiTokensTable;
  workload_trusts: WorkloadTrustsTable;
  workload_token_uses: WorkloadTokenUsesTable;
  login_throttle: LoginThrottleTable;
  setup_codes: SetupCodesTable;
  user_invites: UserInvitesTable;
  signing_keys: SigningKeysTable;
  audit_events: AuditEventsTable;
  audit_head: AuditHeadTable;
  audit_pending: AuditPendingTable;
  audit_sequencer: AuditSequencerTable;
  audit_checkpoints: AuditCheckpointsTable;
  outbox: OutboxTable;
  targets: TargetsTable;
  policies: PoliciesTable;
  roles: RolesTable;
  eligibilities: EligibilitiesTable;
  activation_requests: ActivationRequestsTable;
  request_decisions: RequestDecisionsTable;
  grants: GrantsTable;
  used_decision_links: UsedDecisionLinksTable;
  target_secrets: TargetSecretsTable;
  drift_findings: DriftFindingsTable;
  vault_config: VaultConfigTable;
  vault_keks: VaultKeksTable;
  secrets: SecretsTable;
  secret_versions: SecretVersionsTable;
  secret_target_allowances: SecretTargetAllowancesTable;
  secret_checkouts: SecretCheckoutsTable;
  grant_credentials: GrantCredentialsTable;
  precreated_logins: PrecreatedLoginsTable;
  review_items: ReviewItemsTable;
  review_definitions: ReviewDefinitionsTable;
  review_campaigns: ReviewCampaignsTable;
  change_requests: ChangeRequestsTable;
  ssh_keys: SshKeysTable;
  ssh_certificates: SshCertificatesTable;
  database_tokens: DatabaseTokensTable;
  sessions: SessionsTable;
  webauthn_credentials: WebauthnCredentialsTable;
  webauthn_challenges: WebauthnChallengesTable;
  step_up_handoffs: StepUpHandoffsTable;
}
