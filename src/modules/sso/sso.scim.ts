/**
 * Single sign-on meeting SCIM: the account a provider's `scim` setting says its SCIM service provisioned for the
 * person signing in (docs/identity.md, "SCIM and single sign-on together").
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/schema.js";
import * as provisioning from "../identity/provisioning.js";
import * as ssoStore from "./sso.store.js";
import type { SsoIdentity, SsoProvider } from "./sso.types.js";

type Db = Kysely<Database>;

/**
 * The account the SCIM service this provider names (`scim`) provisioned for this person, matched by userName
 * (to the usernameClaim value, case aside) or externalId (to `sub`), locked; null when there is none, or when
 * it is already linked to someone (another subject, another issuer). A local account, another source's or
 * another SCIM service's is never matched.
 */
export async function scimAccount(
  tx: Db,
  provider: SsoProvider,
  identity: SsoIdentity,
): Promise<provisioning.PrincipalRow | null> {
  if (!provider.scim) return null;
  const found = await provisioning.provisionedMatching(
    tx,
    provider.scim.service,
    provider.scim.match === "userName" ? { userName: identity.username } : { externalId: identity.subject },
  );
  if (found.length !== 1 || (await ssoStore.hasLink(tx, found[0]!.id))) return null;
  return (await provisioning.lockPrincipal(tx, found[0]!.id)) ?? null;
}
