/** What a user takes to a proxy: an SSH certificate for an activation, a database token; and the CA's public parts. */
import { randomBytes } from "node:crypto";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import { randomToken, sha256Hex } from "../../lib/security.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import * as postgresRules from "../connectors/postgres/postgres.rules.js";
import * as sessionStore from "./sessions.store.js";
import { parseCertificate, signUserCertificate, type CertExtension } from "./ssh-ca.js";
import { encodeKrl } from "./ssh-krl.js";
import type { SessionsCore } from "./sessions.core.js";

/** How far a client's clock may be behind ours and its certificate still be valid. */
const CERT_BACKDATE_MS = 60_000;

export function createCredentials(core: SessionsCore) {
  const { store, audit, clock, proxies, sshKey, policyOf } = core;

  return {
    /** The CA's public key and where the SSH proxy listens (public: hosts may trust the CA directly). */
    async sshInfo() {
      const [ca, host] = await Promise.all([sshKey("user-ca"), sshKey("proxy-host")]);
      return {
        caPublicKey: ca.publicKey,
        proxy: proxies.ssh ? { ...proxies.ssh, hostKey: host.publicKey } : null,
      };
    },

    /**
     * The OpenSSH KRL for hosts that trust the CA directly (sshd RevokedKeys): every certificate not yet
     * expired whose activation ended. Built from the database at each call, so always current.
     */
    async sshKrl(): Promise<Buffer> {
      const ca = await sshKey("user-ca");
      const now = clock.now();
      const serials = await sessionStore.revokedSshSerials(store.db, now);
      return encodeKrl({
        caPublicKey: ca.publicKey,
        serials: serials.map((serial) => BigInt(serial)),
        version: BigInt(now.getTime()),
        generatedAt: now,
        comment: "Stint: certificates of ended activations",
      });
    },

    /** Signs the caller's public key for as long as their activation of an SSH host role lasts. */
    async issueSshCertificate(actor: Actor, ctx: CallContext, input: { publicKey: string; role?: string | undefined }) {
      if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
      const now = clock.now();
      const activations = (await sessionStore.activeActivations(store.db, actor.id, now)).filter(
        (a) => a.target_kind === "ssh-host" && (input.role === undefined || a.role_name === input.role),
      );
      const activation = activations[0];
      if (!activation)
        throw new StintError(
          "NOT_ACTIVE",
          input.role
            ? `You have no active activation of ${input.role} on an SSH host.`
            : "You have no active role on an SSH host: activate one first.",
        );
      const [ca, proxyHost] = await Promise.all([sshKey("user-ca"), sshKey("proxy-host")]);
      const offered = input.publicKey.trim().split(/\s+/).slice(0, 2).join(" ");
      // Never certify Stint's own keys: a certificate for the CA key is a CA that logs in as a user.
      for (const own of [ca.publicKey, proxyHost.publicKey])
        if (offered === own.trim().split(/\s+/).slice(0, 2).join(" "))
          throw new StintError("VALIDATION_FAILED", "That key is one of Stint's own keys; certify your own key.");
      const policy = policyOf(activation);
      const serial = BigInt(`0x${randomBytes(8).toString("hex")}`) & ((1n << 63n) - 1n);
      const validBefore = new Date(activation.expires_at!);
      // What the certificate is for, in the certificate: the one target (principal user%target, which
      // hosts trusting the CA list in AuthorizedPrincipalsFile) and the activation (key id).
      const keyId = `stint:${actor.name}:${activation.request_id}`;
      const principal = `${actor.name}%${activation.target_name}`;
      const extensions: CertExtension[] = ["permit-pty"];
      if (policy.portForwarding) extensions.push("permit-port-forwarding");
      let certificate: string;
      try {
        certificate = signUserCertificate({
          caPrivateKey: ca.privateKey,
          userPublicKey: input.publicKey,
          keyId,
          principals: [principal],
          validAfter: new Date(now.getTime() - CERT_BACKDATE_MS),
          validBefore,
          serial,
          extensions,
        });
      } catch (error) {
        throw new StintError(
          "VALIDATION_FAILED",
          `That is not a public key Stint can certify (ssh-ed25519 or ssh-rsa): ${(error as Error).message}`,
        );
      }
      const cert = parseCertificate(certificate);
      await store.transaction(async (tx) => {
        await sessionStore.insertSshCertificate(tx, {
          serial: serial.toString(),
          principalId: actor.id,
          requestId: activation.request_id,
          targetId: activation.target_id,
          principal,
          keyId,
          now,
          validBefore,
        });
        await audit.append(tx, actor, ctx, {
          action: "ssh.certificate_issued",
          outcome: "success",
          subject: `request:${activation.request_id}`,
          details: {
            role: activation.role_name,
            target: activation.target_name,
            principal,
            serial: serial.toString(),
            keyId,
            validBefore: validBefore.toISOString(),
          },
        });
      });
      return {
        certificate,
        keyId,
        serial: serial.toString(),
        principals: cert.principals,
        validBefore: validBefore.toISOString(),
        role: activation.role_name,
        target: activation.target_name,
      };
    },

    /** A password for the PostgreSQL or MySQL proxy, bound to the caller, the role and this activation. */
    async issueDatabaseToken(actor: Actor, ctx: CallContext, input: { role: string; once: boolean }) {
      if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
      const now = clock.now();
      const activation = (await sessionStore.activeActivations(store.db, actor.id, now)).find(
        (a) => a.role_name === input.role,
      );
      if (!activation) throw new StintError("NOT_ACTIVE", `You have no active activation of ${input.role}.`);
      if (activation.target_kind !== "postgres" && activation.target_kind !== "mysql")
        throw new StintError("VALIDATION_FAILED", `${input.role}'s target is not a PostgreSQL or MySQL database.`);
      const kind = activation.target_kind;
      const proxy = proxies[kind];
      if (!proxy)
        throw new StintError(
          "UNAVAILABLE",
          `The ${kind === "mysql" ? "MySQL" : "PostgreSQL"} proxy is not running on this server.`,
        );
      const token = `stint_${randomToken(32)}`;
      const expiresAt = new Date(activation.expires_at!);
      await store.transaction(async (tx) => {
        await sessionStore.insertToken(tx, {
          id: newId(),
          tokenHash: sha256Hex(token),
          principalId: actor.id,
          requestId: activation.request_id,
          roleId: activation.role_id,
          once: input.once,
          now,
          expiresAt,
        });
        await audit.append(tx, actor, ctx, {
          action: "session.token_issued",
          outcome: "success",
          subject: `request:${activation.request_id}`,
          details: {
            role: input.role,
            target: activation.target_name,
            once: input.once,
            expiresAt: expiresAt.toISOString(),
          },
        });
      });
      return {
        kind,
        host: proxy.host,
        port: proxy.port,
        // MySQL: the client names a database (or none); the login's privileges decide.
        database: kind === "postgres" ? postgresRules.parseAddress(activation.address ?? "").database : "",
        user: `${actor.name}%${input.role}`,
        password: token,
        expiresAt: expiresAt.toISOString(),
        // What the CLI checks the proxy's certificate against before the token leaves it (null: no TLS).
        proxyCertificateSha256: proxy.certificateSha256 ?? null,
      };
    },
  };
}
