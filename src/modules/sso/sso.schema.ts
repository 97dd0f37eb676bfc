/**
 * Row types of the single sign-on tables (migration 0021), added to the database's types by declaration merging
 * so this module's tables are declared beside the module that owns them.
 */
import type { ColumnType, Generated } from "kysely";

type Timestamp = ColumnType<Date, Date | string, Date | string>;

/** A person an identity provider signed in, linked by (issuer, sub). */
export interface OidcIdentitiesTable {
  issuer: string;
  subject: string;
  provider: string;
  principal_id: string;
  /** The usernameClaim value at the link's first sign-in (migration 0033; null before). */
  username: Generated<string | null>;
  created_at: Timestamp;
  last_sign_in_at: Timestamp;
}

/** A sign-in under way: single use, short-lived. */
export interface SsoAttemptsTable {
  state_hash: string;
  provider: string;
  nonce: string;
  code_verifier: string;
  client_challenge: string;
  client_redirect: string | null;
  created_at: Timestamp;
  expires_at: Timestamp;
  used_at: Timestamp | null;
}

/** A finished sign-in's one-time code, or a device grant under way. */
export interface SsoHandoffsTable {
  code_hash: string;
  kind: "code" | "device";
  provider: string;
  principal_id: string | null;
  client_challenge: string | null;
  device_code_sealed: string | null;
  poll_interval_s: number | null;
  /** When a device grant's poll was last passed on to the provider (migration 0036). */
  polled_at: Generated<Date | null>;
  amr: string[] | null;
  mfa_at: Timestamp | null;
  created_at: Timestamp;
  expires_at: Timestamp;
  used_at: Timestamp | null;
}

declare module "../../db/schema.js" {
  interface RefreshSessionsTable {
    /** How the session was opened, for its access tokens' `amr`; null: by password. */
    amr: Generated<string[] | null>;
  }
  interface Database {
    oidc_identities: OidcIdentitiesTable;
    sso_attempts: SsoAttemptsTable;
    sso_handoffs: SsoHandoffsTable;
  }
}
