/**
 * Test support: a store with a Kysely plugin on every statement it sends, through `store.db` and through its
 * transactions (testServer's `wrapStore`). A plugin that counts statements, fails one, or holds an answer.
 *
 * The transaction's copy (`tx.withPlugin(…)`) settles with the store's own (`settlesWith`, `src/lib/db.ts`), so
 * after-commit work (the audit sequencer's wake, the outbox's claim on commit) takes its production path.
 */
import type { KyselyPlugin, PluginTransformQueryArgs, RootOperationNode } from "kysely";
import type { AppStore } from "../db/index.js";
import { settlesWith } from "../lib/db.js";

/** A plugin that only looks at (or refuses) each statement before it is sent; results pass unchanged. */
export function onEachQuery(look: (args: PluginTransformQueryArgs) => void): KyselyPlugin {
  return {
    transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
      look(args);
      return args.node;
    },
    transformResult: async (args) => args.result,
  };
}

/** `store` with `plugin` on every statement; `listen` replaced when given (to hear notifications late, say). */
export function withPlugin(
  store: AppStore,
  plugin: KyselyPlugin,
  options: { listen?: AppStore["listen"] } = {},
): AppStore {
  return {
    engine: store.engine,
    db: store.db.withPlugin(plugin),
    transaction: (fn) => store.transaction((tx) => fn(settlesWith(tx.withPlugin(plugin), tx))),
    migrate: (dir) => store.migrate(dir),
    ping: () => store.ping(),
    listen: options.listen ?? ((channel, onMessage, listenOptions) => store.listen(channel, onMessage, listenOptions)),
    close: () => store.close(),
  };
}

/** The first table a statement names (select, update, delete, insert), if any. */
export function tableOf(node: RootOperationNode): string | undefined {
  const n = node as unknown as {
    from?: { froms?: { table?: { identifier?: { name?: string } } }[] };
    table?: { table?: { identifier?: { name?: string } } };
    into?: { table?: { identifier?: { name?: string } } };
  };
  return (n.from?.froms?.[0]?.table ?? n.table?.table ?? n.into?.table)?.identifier?.name;
}
