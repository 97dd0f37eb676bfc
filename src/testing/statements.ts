/**
 * Test support: counts the SQL statements (and transactions) a call sends to the store. Wrap the store with
 * `wrap` (testServer's `wrapStore`), then `measure(() => call())`: only the statements of the call itself are
 * counted (AsyncLocalStorage marks them), so background work (the audit sequencer, heartbeats, a started
 * outbox runner) is not. BEGIN and COMMIT are not statements here; transactions are counted apart.
 *
 * A counted transaction behaves as the store's own for after-commit hooks (`whenSettled`, `src/lib/db.ts`): the
 * audit sequencer's wake and the outbox's claim-on-commit (`runAfterCommit`) take their production path. What the
 * hooks start (a job handed to this node's runner) is background work and is not counted.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { KyselyPlugin, PluginTransformQueryArgs, PluginTransformResultArgs, RootOperationNode } from "kysely";
import type { AppStore } from "../db/index.js";
import { settlesWith } from "../lib/db.js";
import { tableOf } from "./plugged-store.js";

/** A statement's kind and first table, e.g. `update activation_requests`, `raw` for sql`…`. */
export function describeNode(node: RootOperationNode): string {
  const kind = node.kind.replace(/QueryNode$|Node$/, "").toLowerCase();
  const table = tableOf(node);
  return table ? `${kind} ${table}` : kind;
}

/**
 * Whether `node` inserts into `table`: an INSERT built with Kysely's builder, or raw SQL whose text is that
 * INSERT (a constant statement: `lib/constant-sql.ts`, such as the audit log's pending events).
 */
export function insertsInto(node: RootOperationNode, table: string): boolean {
  const n = node as unknown as { kind: string; into?: { table?: { identifier?: { name?: string } } } };
  if (n.kind === "InsertQueryNode") return n.into?.table?.identifier?.name === table;
  if (n.kind !== "RawNode") return false;
  return new RegExp(`^(\\s|/\\*.*?\\*/)*insert into ${table}\\b`, "i").test(rawText(node));
}

/** The text of raw SQL, the raw pieces in it (`sql.raw`, nested sql) written in, `$` for each value. */
function rawText(node: unknown): string {
  const { sqlFragments, parameters } = node as {
    sqlFragments: readonly string[];
    parameters: readonly { kind: string }[];
  };
  let text = sqlFragments[0] ?? "";
  for (let i = 0; i < parameters.length; i++)
    text += (parameters[i]!.kind === "RawNode" ? rawText(parameters[i]) : "$") + (sqlFragments[i + 1] ?? "");
  return text;
}

export interface Measured<T> {
  result: T;
  statements: string[];
  transactions: number;
}

export function statementCounter() {
  const scope = new AsyncLocalStorage<{ statements: string[]; transactions: number }>();
  // A statement counts when its result comes back: a subquery built on its own passes transformQuery too.
  const described = new WeakMap<object, string>();
  const plugin: KyselyPlugin = {
    transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
      described.set(args.queryId, describeNode(args.node));
      return args.node;
    },
    transformResult: async (args: PluginTransformResultArgs) => {
      scope.getStore()?.statements.push(described.get(args.queryId) ?? "?");
      return args.result;
    },
  };
  const wrap = (store: AppStore): AppStore => ({
    engine: store.engine,
    db: store.db.withPlugin(plugin),
    transaction: (fn) => {
      const counted = scope.getStore();
      // The counting copy of `tx` settles with it: hooks registered on it run after the COMMIT, as in production.
      const begin = () =>
        store.transaction((tx) => {
          const copy = settlesWith(tx.withPlugin(plugin), tx);
          return counted ? scope.run(counted, () => fn(copy)) : fn(copy);
        });
      if (!counted) return begin();
      counted.transactions++;
      // Begun outside the count, so the hooks (which run in the context that began it) are background work, not
      // counted: a job handed to this node's runner at commit runs after the call returns in production too.
      return scope.exit(begin);
    },
    migrate: (dir) => store.migrate(dir),
    ping: () => store.ping(),
    listen: (channel, onMessage, options) => store.listen(channel, onMessage, options),
    close: () => store.close(),
  });
  /** Runs `call` and returns what it sent to the store. */
  const measure = async <T>(call: () => Promise<T>): Promise<Measured<T>> => {
    const counted = { statements: [] as string[], transactions: 0 };
    const result = await scope.run(counted, call);
    return { result, ...counted };
  };
  return { wrap, measure };
}
