/**
 * The first administrator: made from the bootstrap password, or claimed with a one-time setup code (which
 * can be checked without being used). Only while no active administrator exists.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import { constantTimeEqual, randomToken, sha256Hex } from "../../lib/security.js";
import { ANONYMOUS, SYSTEM, type Actor, type CallContext } from "../authz/authz.types.js";
import type { IdentityContext } from "./identity.context.js";
import { passwordProblem } from "./identity.rules.js";
import * as identityStore from "./identity.store.js";
import type { Principal } from "./identity.types.js";
import { toPrincipal } from "./principal.mapper.js";
import { signInGuard } from "./sign-in-guard.js";

/** The call context of what the server does for itself at start-up. */
const BOOTSTRAP: CallContext = { correlationId: "bootstrap", sourceIp: null, userAgent: null };

export function createSetupUseCases(deps: IdentityContext) {
  const { store, audit, clock, tellPrincipal, hash } = deps;
  const { deny } = signInGuard(deps);

  /** Makes the first administrator in the caller's transaction (the lock on administrators held), audited. */
  async function createFirstAdministrator(
    tx: Kysely<Database>,
    name: string,
    passwordHash: string,
    now: Date,
    audited: { actor: Actor; context: CallContext; reason: string },
  ): Promise<string> {
    const id = newId();
    await tx
      .insertInto("principals")
      .values({ id, kind: "user", name, platform_roles: ["admin", "user"], created_at: now, updated_at: now })
      .execute();
    await identityStore.setPasswordHash(tx, id, passwordHash, now);
    await tellPrincipal(tx, id);
    await audit.append(tx, audited.actor, audited.context, {
      action: "user.create",
      outcome: "success",
      subject: `user:${name}`,
      reason: audited.reason,
      details: { platformRoles: ["admin", "user"] },
    });
    return id;
  }

  return {
    /**
     * Makes sure an administrator can exist: creates one from the bootstrap
     * password, or issues a one-time setup code (returned to be printed once).
     */
    async bootstrap(options: {
      adminName: string;
      adminPassword?: string | undefined;
    }): Promise<{ created?: string; setupCode?: string }> {
      const passwordHash = options.adminPassword ? await hash(options.adminPassword) : undefined;
      return store.transaction(async (tx) => {
        await identityStore.lockAdministrators(tx);
        if ((await identityStore.countActiveAdmins(tx)) > 0) return {};
        const now = clock.now();
        if (passwordHash) {
          const existing = await identityStore.findPrincipalByName(tx, options.adminName);
          if (existing) return {};
          // The first administrator meets the rules everyone else's password meets.
          const problem = passwordProblem(options.adminPassword!, options.adminName);
          if (problem)
            throw new StintError(
              "WEAK_PASSWORD",
              `STINT_BOOTSTRAP_ADMIN_PASSWORD ${problem} (the rules every password meets: at least 12 characters, not containing the user name, more than a few distinct characters).`,
            );
          await createFirstAdministrator(tx, options.adminName, passwordHash, now, {
            actor: SYSTEM,
            context: BOOTSTRAP,
            reason: "first administrator from STINT_BOOTSTRAP_ADMIN_PASSWORD",
          });
          return { created: options.adminName };
        }
        const code = randomToken(20);
        await tx.updateTable("setup_codes").set({ used_at: now }).where("used_at", "is", null).execute();
        await tx
          .insertInto("setup_codes")
          .values({
            id: newId(),
            code_hash: sha256Hex(code),
            created_at: now,
            expires_at: new Date(now.getTime() + 86_400_000),
          })
          .execute();
        await audit.append(tx, SYSTEM, BOOTSTRAP, {
          action: "setup.code_issued",
          outcome: "success",
          reason: "no administrator exists yet",
        });
        return { setupCode: code };
      });
    },

    /** Claims the one-time setup code: creates the first administrator. */
    async setup(input: { code: string; username: string; password: string }, context: CallContext): Promise<Principal> {
      const problem = passwordProblem(input.password, input.username);
      if (problem) throw new StintError("WEAK_PASSWORD", `The password ${problem}.`);
      const passwordHash = await hash(input.password);
      const outcome = await store.transaction(async (tx) => {
        await identityStore.lockAdministrators(tx);
        const now = clock.now();
        if ((await identityStore.countActiveAdmins(tx)) > 0) return { error: new StintError("SETUP_ALREADY_DONE") };
        const codes = await tx
          .selectFrom("setup_codes")
          .selectAll()
          .where("used_at", "is", null)
          .where("expires_at", ">", now)
          .execute();
        const match = codes.find((c) => constantTimeEqual(c.code_hash, sha256Hex(input.code)));
        if (!match) return { error: new StintError("SETUP_CODE_INVALID") };
        if (await identityStore.findPrincipalByName(tx, input.username))
          return { error: new StintError("ALREADY_EXISTS") };
        await tx.updateTable("setup_codes").set({ used_at: now }).where("id", "=", match.id).execute();
        const id = await createFirstAdministrator(tx, input.username, passwordHash, now, {
          actor: ANONYMOUS,
          context,
          reason: "first administrator from the setup code",
        });
        return { principal: await toPrincipal(tx, (await identityStore.findPrincipalById(tx, id))!) };
      });
      if ("error" in outcome && outcome.error) {
        return deny(context, "setup.claim", `user:${input.username}`, outcome.error.message, outcome.error);
      }
      return (outcome as { principal: Principal }).principal;
    },

    /**
     * Whether a setup code would be accepted, without using it: `stint setup` asks before it prompts for a
     * password (twice), so a mistyped code is said first. A refusal is audited like a failed claim; the code
     * (160 random bits) is no easier to guess here than through the claim itself.
     */
    async checkSetupCode(code: string, context: CallContext): Promise<{ valid: true }> {
      const now = clock.now();
      const error =
        (await identityStore.countActiveAdmins(store.db)) > 0
          ? new StintError("SETUP_ALREADY_DONE")
          : (
                await store.db
                  .selectFrom("setup_codes")
                  .select("code_hash")
                  .where("used_at", "is", null)
                  .where("expires_at", ">", now)
                  .execute()
              ).some((c) => constantTimeEqual(c.code_hash, sha256Hex(code)))
            ? undefined
            : new StintError("SETUP_CODE_INVALID");
      if (error) return deny(context, "setup.check", "setup", error.message, error);
      return { valid: true };
    },
  };
}
