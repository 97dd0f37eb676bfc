/**
 * The connectors, by target kind, and the checks the catalog runs on a target
 * and its roles before saving them (so a bad option fails at `stint apply`,
 * not at the first activation).
 */
import type { TargetKind } from "../catalog/catalog.types.js";
import type { Connector } from "./connector.types.js";
import { templateProblems, type IdentityMapping } from "./identity-mapping.rules.js";
import { ldapConnector, ldapPools } from "./ldap/ldap.connector.js";
import { mysqlConnector, mysqlPools } from "./mysql/mysql.connector.js";
import { postgresConnector, postgresPools } from "./postgres/postgres.connector.js";
import { sshHostConnector, sshHostPools } from "./ssh-host/ssh-host.connector.js";
import { webhookConnector } from "./webhook/webhook.connector.js";
import { DEFAULT_ADDRESS_POLICY, literalAddressProblems, type AddressPolicy } from "../../lib/address-policy.js";
import { AddressRefusedError, checkAddressHosts } from "../../lib/address-guard.js";
import { ConnectorError, type ConnectorTarget } from "./connector.types.js";

import { roleSessionProblems, withoutRoleSession } from "./session-options.rules.js";
export * from "./connector.types.js";
export { loginFor, templateProblems, type IdentityMapping } from "./identity-mapping.rules.js";

export type ConnectorKind = Exclude<TargetKind, "internal">;

export const CONNECTORS: Readonly<Record<ConnectorKind, Connector>> = {
  postgres: postgresConnector,
  mysql: mysqlConnector,
  ldap: ldapConnector,
  "ssh-host": sshHostConnector,
  webhook: webhookConnector,
};

/**
 * Where Stint may connect (STINT_ALLOW_NETWORKS, STINT_DENY_NETWORKS): set once at start from the
 * configuration, read by every address check below, at apply time and at connect time.
 */
let addressPolicy: AddressPolicy = DEFAULT_ADDRESS_POLICY;

export function configureAddressPolicy(policy: AddressPolicy): void {
  addressPolicy = Object.freeze({ allow: [...policy.allow], deny: [...policy.deny] });
}

export function currentAddressPolicy(): AddressPolicy {
  return addressPolicy;
}

/**
 * Closes the connectors' pooled admin connections (idle ones now, busy ones when their call ends), for a
 * server shutting down after its workers stopped. Idle connections never keep the process alive, and a later
 * call opens new ones.
 */
export async function closeConnectorPools(): Promise<void> {
  await Promise.all([postgresPools.closeAll(), mysqlPools.closeAll(), sshHostPools.closeAll(), ldapPools.closeAll()]);
}

const isTarget = (value: unknown): value is ConnectorTarget =>
  typeof value === "object" && value !== null && typeof (value as { address?: unknown }).address === "string";

/**
 * The connector with every call that reaches a target preceded by the address policy on what the target's
 * address resolves to now: a name re-pointed at the metadata service after `stint apply` is refused too.
 */
function guarded(connector: Connector): Connector {
  const wrapped: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(connector)) {
    if (typeof value !== "function") {
      wrapped[name] = value;
      continue;
    }
    const method = value as (...args: unknown[]) => unknown;
    wrapped[name] = (...given: unknown[]) => {
      // A role's session login (entitlement.session) is the session proxies', not the connector's.
      const args = given.map(withoutSessionLogin);
      const target = args[0];
      if (!isTarget(target)) return method.apply(connector, args);
      return (async () => {
        try {
          await checkAddressHosts(target.address, addressPolicy);
        } catch (error) {
          if (error instanceof AddressRefusedError)
            throw new ConnectorError("refused", `target ${target.name}: ${error.message}`);
          throw error;
        }
        return method.apply(connector, args);
      })();
    };
  }
  return wrapped as unknown as Connector;
}

/** An entitlement, or a grant carrying one, without `session`; anything else as it is. */
function withoutSessionLogin(arg: unknown): unknown {
  if (typeof arg !== "object" || arg === null || Array.isArray(arg)) return arg;
  const record = arg as Record<string, unknown>;
  if ("session" in record && !("address" in record) && !("entitlement" in record)) return withoutRoleSession(record);
  const entitlement = record.entitlement;
  if (typeof entitlement === "object" && entitlement !== null && "session" in entitlement)
    return { ...record, entitlement: withoutRoleSession(entitlement as Record<string, unknown>) };
  return arg;
}

const GUARDED = Object.fromEntries(
  Object.entries(CONNECTORS).map(([kind, connector]) => [kind, guarded(connector)]),
) as Readonly<Record<ConnectorKind, Connector>>;

/** The connector of a kind (guarded by the address policy); null for `internal` targets, which Stint enforces itself. */
export function connectorFor(kind: TargetKind): Connector | null {
  return kind === "internal" ? null : GUARDED[kind];
}

const SCHEMES: Record<ConnectorKind, string[]> = {
  postgres: ["postgres:", "postgresql:"],
  mysql: ["mysql:", "mariadb:"],
  ldap: ["ldap:", "ldaps:"],
  "ssh-host": ["ssh:"],
  webhook: ["https:", "http:"],
};

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|\[::1\]|localhost)$/;

/**
 * Problems with a target's admin address: it must be a URL of the kind's scheme and never carry a
 * password; a connector that knows more about its addresses checks them itself.
 */
export function addressProblems(kind: ConnectorKind, address: string | null): string[] {
  if (address === null) return [`a ${kind} target needs an address`];
  // Literal addresses in any spelling; names are judged when resolved, at connect time.
  const policy = literalAddressProblems(address, addressPolicy);
  const own = CONNECTORS[kind].checkAddress;
  if (own) return [...own(address), ...policy];
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    return [`must be a URL such as ${SCHEMES[kind][0]}//host:port`];
  }
  const problems: string[] = [];
  if (!SCHEMES[kind].includes(url.protocol))
    problems.push(`must start with ${SCHEMES[kind].map((s) => `${s}//`).join(" or ")}`);
  if (url.password !== "")
    problems.push("must not contain a password: declare `credential` and store the password there");
  if (kind === "webhook" && url.protocol === "http:" && !LOOPBACK.test(url.hostname))
    problems.push("must use https (plain http only to a loopback address)");
  if (kind !== "webhook" && url.hostname === "") problems.push("must name a host");
  return [...problems, ...policy];
}

/** Warnings about what a valid target definition weakens (see Connector.securityWarnings). */
export function targetWarnings(target: {
  kind: TargetKind;
  address: string | null;
  options: Record<string, unknown>;
}): string[] {
  return connectorFor(target.kind)?.securityWarnings?.(target.address, target.options) ?? [];
}

export interface TargetProblem {
  field: "address" | "options" | "identity";
  message: string;
}

/** Everything wrong with a target's definition, for its connector. */
export function targetProblems(target: {
  kind: TargetKind;
  address: string | null;
  options: Record<string, unknown>;
  identity: IdentityMapping;
}): TargetProblem[] {
  const connector = connectorFor(target.kind);
  if (!connector) {
    const extra =
      Object.keys(target.options).length > 0
        ? [{ field: "options" as const, message: "an internal target takes no options" }]
        : [];
    return extra;
  }
  const kind = connector.kind;
  return [
    ...addressProblems(kind, target.address).map((message) => ({ field: "address" as const, message })),
    ...connector.checkOptions(target.options).map((message) => ({ field: "options" as const, message })),
    ...templateProblems(target.identity.template).map((message) => ({ field: "identity" as const, message })),
    ...Object.entries(target.identity.map).flatMap(([user, login]) =>
      connector
        .checkLogin(login)
        .map((message) => ({ field: "identity" as const, message: `map.${user}: ${message}` })),
    ),
  ];
}

/** Kinds whose roles may name their own session login (`entitlement.session`) for the session proxies. */
const SESSION_KINDS: readonly TargetKind[] = ["ssh-host", "postgres"];

/** Problems with a role's entitlement for its target's kind. */
export function entitlementProblems(kind: TargetKind, entitlement: Record<string, unknown>): string[] {
  const connector = connectorFor(kind);
  if (!connector) return [];
  if (!SESSION_KINDS.includes(kind)) return connector.checkEntitlement(entitlement);
  return [...connector.checkEntitlement(entitlement), ...roleSessionProblems(entitlement)];
}
