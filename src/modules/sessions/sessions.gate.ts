/**
 * The gate the proxies ask: who may connect where, as which upstream login. A database sign-in is a Stint
 * token bound to its user, role and live activation; an SSH sign-in a certificate bound to its activation
 * and target.
 */
import { StintError } from "../../lib/errors.js";
import { sha256Hex } from "../../lib/security.js";
import type { Actor } from "../authz/authz.types.js";
import * as mysqlRules from "../connectors/mysql/mysql.rules.js";
import * as postgresRules from "../connectors/postgres/postgres.rules.js";
import * as sshHostRules from "../connectors/ssh-host/ssh-host.rules.js";
import { grantCredentialBinding } from "../vault/vault.crypto.js";
import * as sessionStore from "./sessions.store.js";
import {
  SessionRefusedError,
  type SessionGate,
  type SessionKind,
  type SshCertificateLogin,
  type UpstreamMysql,
  type UpstreamPostgres,
  type UpstreamSsh,
} from "./sessions.types.js";
import { publicKeyObject, verifyCertificate } from "./ssh-ca.js";
import type { SessionsCore } from "./sessions.core.js";
import type { OpenSession } from "./sessions.open.js";

export function createGate(core: SessionsCore, openSession: OpenSession): SessionGate {
  const {
    deps,
    store,
    clock,
    awaitedTokens,
    keyCache,
    userActor,
    refuse,
    upstreamAddress,
    principalByName,
    sealedValue,
    heldLive,
    sessionLoginOf,
    configOptions,
  } = core;

  /**
   * A database proxy's sign-in (PostgreSQL and MySQL): `user%role` and a Stint
   * database token bound to that user and role, a live activation it was issued for, `once` tokens used once.
   */
  async function databaseTokenActivation(kind: SessionKind, user: string, password: string, clientAddress: string) {
    const [userName, roleName, ...rest] = user.split("%");
    if (!userName || !roleName || rest.length > 0)
      return refuse(
        kind,
        "BAD_CREDENTIALS",
        `Connect as <user>%<role> with the password \`stint db login ROLE\` prints (not "${user.slice(0, 64)}").`,
        null,
      );
    const bad = `password authentication failed for ${userName}%${roleName}: not a valid Stint database token for that user and role (get one with \`stint db login ${roleName}\`)`;
    const token = await sessionStore.findToken(store.db, sha256Hex(password));
    const now = clock.now();
    if (!token || token.principal_name !== userName || token.role_name !== roleName)
      return refuse(kind, "BAD_CREDENTIALS", bad, {
        actor: { kind: "anonymous" },
        clientAddress,
        details: { user: userName, role: roleName },
      });
    const who = {
      actor: userActor(token.principal_id, token.principal_name),
      clientAddress,
      details: { role: roleName },
    };
    if (token.principal_status !== "active")
      return refuse(kind, "BAD_CREDENTIALS", `The account ${userName} is disabled.`, who);
    const activation = heldLive(token.request_id)
      ? (await sessionStore.activeActivations(store.db, token.principal_id, now)).find(
          (a) => a.request_id === token.request_id,
        )
      : undefined;
    if (!activation || new Date(token.expires_at).getTime() <= now.getTime())
      return refuse(
        kind,
        "NOT_ACTIVE",
        `Your activation of ${roleName} has ended, and its database tokens with it: activate the role again, then run \`stint db login ${roleName}\`.`,
        who,
      );
    if (token.once && !(await sessionStore.useOnceToken(store.db, token.id, now)))
      return refuse(kind, "BAD_CREDENTIALS", `This single-use token (--once) was already used.`, who);
    return { token, activation, who };
  }

  /** The upstream login of a database session: the grant's minted one (dynamic), else the vaulted session login. */
  async function databaseLogin(
    kind: SessionKind,
    activation: sessionStore.ActivationRow,
    who: { actor: Actor; clientAddress: string | null; details: Record<string, unknown> },
  ): Promise<{ user: string; password: string; credential: string }> {
    const roleName = activation.role_name;
    const entitlement = activation.entitlement as { dynamic?: unknown };
    if (entitlement.dynamic === true) {
      const stored = activation.grant_id
        ? await store.db
            .selectFrom("grant_credentials")
            .selectAll()
            .where("grant_id", "=", activation.grant_id)
            .executeTakeFirst()
        : undefined;
      if (!stored || activation.grant_state !== "active")
        return refuse(kind, "NO_CREDENTIAL", `The database login of ${roleName} is still being made.`, who);
      try {
        const password = await deps.vault.openValue(grantCredentialBinding(stored), {
          ciphertext: stored.ciphertext,
          wrappedKey: stored.wrapped_key,
          kekVersion: stored.kek_version,
        });
        return { user: stored.login, password, credential: "dynamic" };
      } catch (error) {
        if (error instanceof StintError)
          return refuse(kind, "NO_CREDENTIAL", `The session credential cannot be read: ${error.message}`, who);
        throw error;
      }
    }
    const options = sessionLoginOf(activation);
    if (!options)
      return refuse(
        kind,
        "NO_CREDENTIAL",
        `The target ${activation.target_name} has no session credential (options.session) and ${roleName} is not dynamic.`,
        who,
      );
    const password = (await sealedValue(kind, options.secret, activation, who)).value;
    return { user: options.login, password, credential: options.secret };
  }

  const gate: SessionGate = {
    async openPostgres({ user, password, database, clientAddress }) {
      const kind = "postgres";
      const { token, activation, who } = await databaseTokenActivation(kind, user, password, clientAddress);
      const roleName = token.role_name;
      const tokenHash = sha256Hex(password);
      if (activation.target_kind !== "postgres")
        return refuse(kind, "TARGET_UNSUPPORTED", `${roleName}'s target is not a PostgreSQL database.`, who);
      const address = postgresRules.parseAddress(activation.address ?? "");
      // The database is the target's, or one its options.databases lists: the client does not choose.
      // libpq asks for a database named like the user when none is given: that means "the default".
      const asked = database !== null && database !== "" && database !== user ? database : null;
      const databases = (configOptions(activation).databases as string[] | undefined) ?? [];
      const pinned = asked ?? address.database;
      if (pinned !== address.database && !databases.includes(pinned))
        return refuse(
          kind,
          "TARGET_UNSUPPORTED",
          `${roleName} reaches only the database ${address.database}${databases.length > 0 ? ` (or ${databases.join(", ")})` : ""} on ${activation.target_name}, not ${pinned.slice(0, 63)}.`,
          who,
        );
      const connectTo = await upstreamAddress(kind, address.host, activation.target_name, who);
      const login = await databaseLogin(kind, activation, who);
      const targetOptions = configOptions(activation);
      const security = postgresRules.upstreamSecurity(address, targetOptions);
      const upstream: UpstreamPostgres = {
        kind: "postgres",
        host: address.host,
        address: connectTo,
        port: address.port,
        database: pinned,
        user: login.user,
        password: login.password,
        tls: security.tls,
        allowAuth: security.allow,
      };
      const session = await openSession({
        kind,
        principal: { id: token.principal_id, name: token.principal_name },
        activation,
        clientAddress,
        upstream,
        credential: login.credential,
      });
      awaitedTokens.get(tokenHash)?.({ id: session.id, target: session.target });
      return session;
    },

    async openMysql({ user, password, database, clientAddress }) {
      const kind = "mysql";
      const { token, activation, who } = await databaseTokenActivation(kind, user, password, clientAddress);
      if (activation.target_kind !== "mysql")
        return refuse(
          kind,
          "TARGET_UNSUPPORTED",
          `${activation.role_name}'s target is not a MySQL or MariaDB database.`,
          who,
        );
      const address = mysqlRules.parseAddress(activation.address ?? "");
      if ("problems" in address)
        return refuse(kind, "TARGET_UNSUPPORTED", `The address of ${activation.target_name} is not valid.`, who);
      if (database !== null && (database.length > 64 || database.includes("\0")))
        return refuse(kind, "TARGET_UNSUPPORTED", "That is not a database name MySQL accepts.", who);
      const connectTo = await upstreamAddress(kind, address.host, activation.target_name, who);
      const login = await databaseLogin(kind, activation, who);
      const upstream: UpstreamMysql = {
        kind: "mysql",
        host: address.host,
        address: connectTo,
        port: address.port,
        database,
        user: login.user,
        password: login.password,
        tls: mysqlRules.upstreamTls(address, configOptions(activation)),
      };
      return openSession({
        kind,
        principal: { id: token.principal_id, name: token.principal_name },
        activation,
        clientAddress,
        upstream,
        credential: login.credential,
      });
    },

    checkSshCertificate({ username, algorithm, key }) {
      const ca = keyCache.get("user-ca");
      const [userName, targetName, ...rest] = username.split("%");
      if (!userName || !targetName || rest.length > 0)
        throw new SessionRefusedError("BAD_CREDENTIALS", "Log in as <user>%<target>, e.g. ssh alice%prod-web@stint.");
      if (!ca || !algorithm.endsWith("-cert-v01@openssh.com"))
        throw new SessionRefusedError("BAD_CREDENTIALS", "Only Stint certificates are accepted (stint ssh login).");
      const line = `${algorithm} ${key.toString("base64")}`;
      // The principal is the whole login, user and target: a certificate names the one target it is for.
      const verdict = verifyCertificate(line, ca.publicKey, clock.now(), { principal: username });
      if (!verdict.ok)
        throw new SessionRefusedError("BAD_CREDENTIALS", `The certificate is not valid: ${verdict.reason}`);
      return {
        user: userName,
        target: targetName,
        publicKey: publicKeyObject(verdict.certificate.publicKey),
        serial: verdict.certificate.serial.toString(),
        keyId: verdict.certificate.keyId,
      };
    },

    async openSsh(login: SshCertificateLogin, { clientAddress }) {
      const kind = "ssh";
      const principal = await principalByName(login.user);
      if (!principal || principal.status !== "active")
        return refuse(kind, "BAD_CREDENTIALS", `The account ${login.user} is disabled.`, null);
      const who = {
        actor: userActor(principal.id, principal.name),
        clientAddress,
        details: { target: login.target, certificate: { serial: login.serial, keyId: login.keyId } },
      };
      // The certificate is bound to the activation and target it was issued for: only that activation,
      // while it lasts, opens a session (not another one of the same user, not another target).
      const issued = await sessionStore.findSshCertificate(store.db, login.serial);
      if (
        !issued ||
        issued.principal_id !== principal.id ||
        issued.key_id !== login.keyId ||
        issued.principal !== `${login.user}%${login.target}` ||
        issued.target_name !== login.target
      )
        return refuse(
          kind,
          "BAD_CREDENTIALS",
          `This certificate was not issued for ${login.target}: run stint ssh login for it.`,
          who,
        );
      const activation = heldLive(issued.request_id)
        ? (await sessionStore.activeActivations(store.db, principal.id, clock.now())).find(
            (a) => a.request_id === issued.request_id && a.target_name === login.target,
          )
        : undefined;
      if (!activation)
        return refuse(
          kind,
          "NOT_ACTIVE",
          `The activation this certificate was issued for (${issued.request_id}) has ended: activate again (stint activate ROLE), then run stint ssh login.`,
          who,
        );
      if (activation.target_kind !== "ssh-host")
        return refuse(kind, "TARGET_UNSUPPORTED", `${login.target} is not an SSH host.`, who);
      const options = configOptions(activation);
      const session = sessionLoginOf(activation);
      const address = sshHostRules.parseAddress(activation.address ?? "");
      if (!session || "problem" in address)
        return refuse(
          kind,
          "NO_CREDENTIAL",
          `The target ${login.target} has no session credential (options.session), so Stint cannot open it.`,
          who,
        );
      const connectTo = await upstreamAddress(kind, address.host, login.target, who);
      const secret = await sealedValue(kind, session.secret, activation, who);
      const upstream: UpstreamSsh = {
        kind: "ssh",
        host: address.host,
        address: connectTo,
        port: address.port,
        username: session.login,
        hostKey: sshHostRules.parseOptions(options).hostKey,
        ...(secret.kind === "ssh-key" ? { privateKey: secret.value } : { password: secret.value }),
      };
      return openSession({
        kind,
        principal,
        activation,
        clientAddress,
        upstream,
        credential: session.secret,
        certificate: { serial: login.serial, keyId: login.keyId },
      });
    },
  };

  return gate;
}
