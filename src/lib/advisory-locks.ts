/**
 * Every PostgreSQL advisory lock number Stint takes, in one place. Two locks on one number would
 * serialize unrelated work at best and, worse, let one holder believe it excludes the other's
 * writers when it does not; `advisory-locks.test.ts` checks the numbers are distinct and that no
 * other file spells one.
 */
export const ADVISORY_LOCKS = {
  /** Migrations across nodes (`lib/db.ts` `migrate`), held for the session. */
  migration: 0x5717_0001,
  /** Catalog writes (`catalog.store.ts` `lockCatalog`). */
  catalog: 0x5717_0002,
  /** Changes that could leave no active administrator (`identity.store.ts` `lockAdministrators`). */
  administrators: 0x5717_0003,
  /** A start's upgrade steps (`lib/db.ts` `lockUpgrades`). */
  upgrade: 0x5717_0004,
  /** Creating the signing keys on first start (`keys.service.ts` `loadKeyring`). */
  keyring: 0x5717_0005,
  /** Tests only: files that use the machine's one MariaDB server (`testing/mariadb.ts`). */
  mariadbTests: 0x5717_3306,
} as const;
