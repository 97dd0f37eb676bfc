/**
 * The connectors bench's view of the statements this process sends (node-postgres `Client.prototype.query`,
 * observed, not changed): counted by database, and, while an issuance is traced, each one's start and end on a
 * timeline with the connection it went on, beside the requester's and the server's milestones. `stepsOf` reads
 * the steps of one issuance off that timeline: submit → committed → the job's first statement → the connector's
 * statement sent → CREATE ROLE done → the job done and audited → active seen → credentials → signed in → works.
 * Also the CPU the bench reads per issuance: this process's threads and PostgreSQL's backends (schedstat).
 */
import { readdirSync, readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import pg from "pg";

export const WATCHER_APP = "stint bench watcher";
/** The requester saw its request active (`--poll` only: otherwise its credentials read waits for that). */
export const SEEN_ACTIVE = "requester: saw the request active";
/** The minted login's SELECT answered: the login works (the end of the timed path). */
export const ANSWERED = "requester: the login's SELECT answered";
/** The requester's last milestone, after the timed path: the minted login's connection ended. */
export const ENDED = "requester: its connection ended";

interface Entry {
  at: number;
  what: string;
  took?: number;
  /** The connection a statement went on (0: a milestone). */
  client: number;
  /** A statement's longer start, to tell statements apart (cut before any PASSWORD too; not printed). */
  text?: string;
}

/** Which databases are the store's and the target's; what was sent to each; the timeline being written (or null). */
export const observed = {
  storeDatabase: "",
  targetDatabase: "",
  statements: { store: 0, target: 0, other: 0 },
  timeline: null as Entry[] | null,
  start: 0,
};

const clients = new WeakMap<object, number>();
let clientCount = 0;
const originalQuery = pg.Client.prototype.query;
pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
  const { database, user, connectionParameters } = this as unknown as {
    database?: string;
    user?: string;
    connectionParameters?: { application_name?: string };
  };
  const where =
    database === observed.targetDatabase ? "target" : database === observed.storeDatabase ? "store" : "other";
  observed.statements[where] += 1;
  if (!observed.timeline) return (originalQuery as (...a: unknown[]) => unknown).apply(this, args);
  if (!clients.has(this)) clients.set(this, ++clientCount);
  const client = clients.get(this)!;
  const who =
    where === "target" && user !== "postgres"
      ? "login"
      : connectionParameters?.application_name === WATCHER_APP
        ? "watcher"
        : where;
  const what = `${who}#${client} ${statementText(args[0], 72)}`;
  const text = statementText(args[0], 300);
  const started = mark(`${what} …`, undefined, client, text);
  const finish = () => mark(`${what} ✓`, started, client, text);
  const last = args.at(-1);
  if (typeof last === "function")
    args[args.length - 1] = (...r: unknown[]) => {
      finish();
      return (last as (...a: unknown[]) => unknown)(...r);
    };
  const result = (originalQuery as (...a: unknown[]) => unknown).apply(this, args);
  if (result && typeof (result as Promise<unknown>).then === "function")
    (result as Promise<unknown>).then(finish, finish);
  return result;
} as typeof pg.Client.prototype.query;

export const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

/** One line of a scenario's figures: n, p50, p95, p99 and max (ms), then `extra`. */
export function summary(label: string, samples: number[], extra = "") {
  const sorted = [...samples].sort((a, b) => a - b);
  const ms = (q: number) => quantile(sorted, q).toFixed(1).padStart(6);
  console.log(
    `${label.padEnd(46)} n=${String(sorted.length).padStart(4)}  p50 ${ms(0.5)}  p95 ${ms(0.95)}  p99 ${ms(0.99)}` +
      `  max ${sorted.at(-1)!.toFixed(1).padStart(6)} ms${extra}`,
  );
}

/** Puts a milestone on the timeline being written (if any); returns its time, for `since` of a later one. */
export function mark(what: string, since?: number, client = 0, text?: string): number {
  const at = performance.now();
  observed.timeline?.push({
    at: at - observed.start,
    what,
    client,
    ...(text === undefined ? {} : { text }),
    ...(since === undefined ? {} : { took: at - since }),
  });
  return at;
}

/** A statement's first words, never what follows a PASSWORD (a SCRAM secret is in createLogin's statement). */
function statementText(query: unknown, length: number): string {
  const text = typeof query === "string" ? query : String((query as { text?: unknown } | null)?.text ?? "(prepared)");
  const words = text
    .replace(/\s+/g, " ")
    .trim()
    .split(/\s*(?:PASSWORD|password)\b/)[0]!;
  return words.length > length ? `${words.slice(0, length)}…` : words;
}

export function printTimeline(label: string, timeline: Entry[]) {
  console.log(`  ${label}`);
  for (const { at, what, took } of timeline) {
    console.log(`    ${at.toFixed(2).padStart(7)}  ${took === undefined ? "" : `(${took.toFixed(2)}) `}${what}`);
    // What follows (the insideOf query, the deactivation and the drop) is not on the timed path.
    if (what === ENDED) break;
  }
}

/** The steps of one issuance, each the ms from the step before (all from the submit's start for the first). */
export const STEPS = [
  ["committed", "HTTP submit received → request, grant and job committed (the job written claimed: visible, claimed)"],
  ["claimed", "→ claimed by a runner's statement (0 when handed over at commit)"],
  ["jobStarted", "→ the job's first statement sent (the provisioning handler runs)"],
  ["connectorSent", "→ the connector's statement sent to the target"],
  ["roleCreated", "→ CREATE ROLE done (the target answered)"],
  ["jobDone", "→ the job marked done and audited (the activation's commit)"],
  ["activeSeen", "→ the requester saw the request active (its look; 0 when its read waits: ?wait=)"],
  ["credentials", "→ GET credentials answered (an audited read; with ?wait= woken by the activation)"],
  ["signedIn", "→ a new connection as the minted login signed in"],
  ["answered", "→ the login's SELECT answered: the login works (the end of the timed path)"],
  ["ended", "→ its connection ended (after the timed path: not in the total)"],
] as const;

export type Steps = Record<(typeof STEPS)[number][0], number>;

/**
 * Reads the steps off an issuance's timeline, or null when one is missing (another shape of run). Statements are
 * told apart by their first words and the connection they went on: the submit's job insert and that
 * connection's next COMMIT; a claim (`update outbox set status = 'running'`) before the job's first statement
 * (its read of the grant: `select "grants"."id"…`); the target admin's statement; then the next statement on
 * the request (`"activation_requests"`) and its connection's COMMIT.
 */
export function stepsOf(timeline: Entry[]): Steps | null {
  const find = (from: number, test: (e: Entry) => boolean) => {
    for (let i = Math.max(from, 0); i < timeline.length; i++) if (test(timeline[i]!)) return i;
    return -1;
  };
  const isStore = (e: Entry) => e.what.startsWith("store#");
  const at = (i: number) => timeline[i]?.at ?? NaN;
  // The job's INSERT carries the grant's login (a CTE before it); a pre-created login's hand-out is four CTEs,
  // which push the INSERT past the text kept.
  const jobInsert = find(
    0,
    (e) =>
      isStore(e) &&
      (e.text?.includes('insert into "outbox"') === true || e.text?.startsWith('with "alongside" as') === true) &&
      e.what.endsWith("…"),
  );
  const submitClient = timeline[jobInsert]?.client;
  const committed = find(jobInsert, (e) => e.client === submitClient && /^store#\d+ commit ✓$/.test(e.what));
  const sent = find(committed, (e) => e.what.startsWith("target#") && e.what.endsWith("…"));
  const isJobRead = (e: Entry) => isStore(e) && e.text?.includes('"grants"."id"') === true && e.what.endsWith("…");
  const claim = find(
    committed,
    (e) => isStore(e) && e.text?.startsWith("update outbox set status = 'running'") === true,
  );
  const firstJob = find(committed, isJobRead);
  const claimed =
    claim >= 0 && claim < firstJob ? find(claim, (e) => e.what === `${timeline[claim]!.what.slice(0, -1)}✓`) : -1;
  const jobStarted = claimed >= 0 ? find(claimed, isJobRead) : firstJob;
  const created = find(sent, (e) => e.client === timeline[sent]?.client && e.what.endsWith("✓"));
  // On PostgreSQL the activation's statement is sent beside the target's (it commits after the target answered).
  const activating = find(
    sent,
    (e) => isStore(e) && e.text?.includes('"activation_requests"') === true && e.what.endsWith("…"),
  );
  const done = find(
    Math.max(activating, created),
    (e) => e.client === timeline[activating]?.client && /^store#\d+ commit ✓$/.test(e.what),
  );
  const milestone = (what: string) => find(done, (e) => e.what === what);
  // A read that waits (?wait=) has no look of its own: the activation's commit is when it was seen.
  const seen = milestone(SEEN_ACTIVE);
  const marks = [
    committed,
    claimed >= 0 ? claimed : committed,
    jobStarted,
    sent,
    created,
    done,
    seen >= 0 ? seen : done,
    milestone("requester: credentials answered 200"),
    milestone("requester: signed in as the minted login"),
    milestone(ANSWERED),
    milestone(ENDED),
  ];
  if ([jobInsert, ...marks].some((i) => i < 0)) return null;
  const times = marks.map(at);
  return Object.fromEntries(STEPS.map(([key], i) => [key, times[i]! - (i === 0 ? 0 : times[i - 1]!)])) as Steps;
}

/** The p50 (and p99) of each step over the issuances whose steps were read, and the sum of the p50s. */
export function printSteps(label: string, samples: Steps[]) {
  if (samples.length === 0) {
    console.log(`  ${label}: no issuance's steps could be read off its timeline`);
    return;
  }
  console.log(`  ${label}, the steps of an issuance (n=${samples.length}; p50 / p99 of each step, ms):`);
  let sum = 0;
  for (const [key, text] of STEPS) {
    const values = samples.map((s) => s[key]).sort((a, b) => a - b);
    if (key !== "ended") sum += quantile(values, 0.5);
    console.log(
      `    ${quantile(values, 0.5).toFixed(2).padStart(6)} / ${quantile(values, 0.99).toFixed(2).padStart(6)}  ${text}`,
    );
  }
  console.log(`    ${sum.toFixed(2).padStart(6)}           the sum of the p50s on the timed path`);
}

/** A process's time on CPU so far, ns (`/proc/<pid>/schedstat`: exact, unlike utime's clock ticks); 0 once it exited. */
export function cpuNs(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, "utf8").split(" ")[0]);
  } catch {
    return 0;
  }
}

/**
 * PostgreSQL's CPU by backend kind (the server's store connections, the watcher's, the target's admin pool), ns:
 * the backends of this run's databases, found by pid in pg_stat_activity (PostgreSQL on this host only).
 */
export async function backendCpu(root: pg.Pool, store: string, target: string): Promise<Map<number, [string, number]>> {
  const { rows } = await root.query<{ pid: number; datname: string; application_name: string }>(
    "select pid, datname, application_name from pg_stat_activity where datname = any($1)",
    [[store, target]],
  );
  return new Map(
    rows.map((r) => [
      r.pid,
      [
        r.datname === target ? "target admin" : r.application_name === WATCHER_APP ? "bench watcher" : "store",
        cpuNs(r.pid),
      ],
    ]),
  );
}

/** CPU used between two snapshots, ms by kind (a backend started in between counts from its start). */
export function cpuBetween(before: Map<number, [string, number]>, after: Map<number, [string, number]>) {
  const used = new Map<string, number>();
  for (const [pid, [kind, ns]] of after)
    used.set(kind, (used.get(kind) ?? 0) + (ns - (before.get(pid)?.[1] ?? 0)) / 1e6);
  return used;
}

/** This process's CPU so far, ns: its main thread's and its other threads' (V8's GC and compiler, libuv's pool). */
export function threadCpu(): { main: number; others: number } {
  const used = { main: 0, others: 0 };
  for (const tid of readdirSync("/proc/self/task")) {
    const ns = cpuNs(Number(tid));
    if (Number(tid) === process.pid) used.main += ns;
    else used.others += ns;
  }
  return used;
}
