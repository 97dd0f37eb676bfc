/**
 * Test support: PGlite instances used again instead of cloned anew. A clone of the migrated template costs ~1–2 s
 * of CPU on the 2-core machine (the data directory unpacked into memory, PostgreSQL started); putting a used
 * instance back as the template left it costs ~0.1 s. A test process (and a `src` worker, whose modules live
 * across files) keeps a few idle instances.
 *
 * An instance goes back to the pool only if it is the template again in every way a test can see: its session new
 * (DISCARD ALL: settings, prepared statements, temporary tables, advisory locks, LISTEN; PGlite's own session
 * settings set again), the JavaScript listeners its stores left removed, then its schema and contents as
 * template-reset.ts says (an instance whose schema a test changed is closed, never reused).
 * An instance whose reset fails or hangs is closed. `freshStore` hands out pooled instances on PGlite only.
 */
import type { PGlite } from "@electric-sql/pglite";
import { readPristine, restoreScript, schemaFingerprint, type Pristine, type Query } from "./template-reset.js";

const IDLE_LIMIT = 2;
const RESET_DEADLINE_MS = 30_000;

/** How this process's instances came (tests of the pool read it). */
export const counts = { cloned: 0, reused: 0, discarded: 0 };

const idle: PGlite[] = [];
/** Instances being reset right now (a store closed twice gives its instance back once). */
const returning = new Set<PGlite>();
let pristine: Promise<Pristine> | undefined;
/** The listeners a pooled instance's stores registered and have not removed, by instance. */
const subscriptions = new WeakMap<PGlite, Set<() => Promise<void>>>();

/** PGlite's query in the shape the reset wants. */
function queryOf(pglite: PGlite): Query {
  return (text, parameters) => pglite.query(text, parameters);
}

/** Puts `pglite` back as the template left it; false if it cannot be (its schema changed). */
async function reset(pglite: PGlite, template: Pristine): Promise<boolean> {
  for (const unsubscribe of [...(subscriptions.get(pglite) ?? [])]) await unsubscribe();
  await pglite.exec("rollback");
  await pglite.exec("discard all");
  for (const { name, setting } of template.settings)
    await pglite.query("select set_config($1, $2, false)", [name, setting]);
  if ((await schemaFingerprint(queryOf(pglite), true)) !== template.schema) return false;
  await pglite.exec(restoreScript(template, "truncate"));
  return true;
}

/** Counts the listeners the stores over `pglite` registered, so that a reset can remove those left behind. */
function tracked(pglite: PGlite): PGlite {
  const live = new Set<() => Promise<void>>();
  subscriptions.set(pglite, live);
  const listen = pglite.listen.bind(pglite);
  pglite.listen = async (...args: Parameters<PGlite["listen"]>) => {
    const unsubscribe = await listen(...args);
    const once = async () => {
      if (!live.delete(once)) return;
      if (!pglite.closed) await unsubscribe();
    };
    live.add(once);
    return once;
  };
  return pglite;
}

/** An instance as the template left it: an idle one reset earlier, or a new clone. */
export async function takePglite(clone: () => Promise<PGlite>): Promise<PGlite> {
  const reused = idle.pop();
  if (reused) {
    counts.reused++;
    return reused;
  }
  counts.cloned++;
  const pglite = tracked(await clone());
  pristine ??= readPristine(queryOf(pglite), true);
  await pristine;
  return pglite;
}

/** Gives `pglite` back: reset and kept if the pool has room and the reset succeeds, closed otherwise. */
export async function givePglite(pglite: PGlite): Promise<void> {
  if (pglite.closed || returning.has(pglite) || idle.includes(pglite)) return;
  returning.add(pglite);
  try {
    const template = pristine ? await pristine : undefined;
    if (!template || idle.length >= IDLE_LIMIT) return await pglite.close();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), RESET_DEADLINE_MS)));
    const outcome = await Promise.race([reset(pglite, template).catch(() => false), deadline]);
    clearTimeout(timer);
    if (outcome === true) {
      idle.push(pglite);
      return;
    }
    counts.discarded++;
    // A reset still running holds the instance's queue: closing would wait for it. Leave that one to be collected.
    if (outcome === false) await pglite.close();
  } catch {
    // Closing a broken instance may fail too: it is dropped either way.
  } finally {
    returning.delete(pglite);
  }
}
