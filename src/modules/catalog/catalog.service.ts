/**
 * The catalog: targets, policies, roles and eligibility, by API and as
 * configuration as code. Each call authorizes first; each write takes the
 * catalog lock, then writes its change and its audit event in one transaction.
 * A configuration file is planned and applied inside that one transaction, one
 * audit event per change, and nothing at all when anything is wrong with it.
 */
import { createCatalogContext, type CatalogServiceDeps } from "./catalog.context.js";
import { targetUseCases } from "./catalog.targets.js";
import { policyUseCases } from "./catalog.policies.js";
import { roleUseCases } from "./catalog.roles.js";
import { eligibilityUseCases } from "./catalog.eligibility.js";
import { configUseCases } from "./catalog.config-as-code.js";

export type { CatalogServiceDeps, HeldPlan } from "./catalog.context.js";

/** The catalog's use cases, one file each (targets, policies, roles, eligibility, configuration as code). */
export function createCatalogService(deps: CatalogServiceDeps) {
  const ctx = createCatalogContext(deps);
  return {
    ...targetUseCases(ctx),
    ...policyUseCases(ctx),
    ...roleUseCases(ctx),
    ...eligibilityUseCases(ctx),
    ...configUseCases(ctx),
  };
}

export type CatalogService = ReturnType<typeof createCatalogService>;
