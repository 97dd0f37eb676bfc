/**
 * Property-based tests of activation requests (fast-check): random sequences of
 * submit / approve / deny / cancel / extend / deactivate / revoke, clock moves
 * with scheduler passes, and changes of group membership, driven through the
 * HTTP API of one in-process server. After every step the invariants are
 * checked against the DATABASE and the AUDIT LOG, not against the answers:
 *
 *  1. no decision is ever recorded by the request's own requester;
 *  2. every recorded decision was accepted by the test's own oracle (the user
 *     named by the stage at that moment, from the test's model of managers and
 *     group membership); every call the oracle refuses is refused;
 *  3. after a scheduler pass at clock t no request is active with expires_at <= t;
 *     a grant is active exactly while its request is; the check API never says
 *     allowed past expires_at, even before the scheduler ran; an activation seen
 *     past its expiry never comes back (its expiry does not move again);
 *  4. an activation ends at most once: at most one request.expired / revoked /
 *     deactivated event per request, exactly one for an ended request, and
 *     ended_at is set for ended requests and never for open ones;
 *  5. the audit chain verifies.
 *
 * One server is shared by all runs (starting one costs seconds); each run gets
 * its own users, group and roles (names with a run suffix), so runs are
 * independent. The clock only moves forward across runs. STINT_PROPERTY_RUNS
 * sets the number of runs (25); STINT_PROPERTY_SHRINK=1 shrinks a failure to a
 * short sequence (slow). Each step's trace is in the failure message. The bugs
 * the property found are kept below as plain examples.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../lib/clock.js";
import type { PolicySpec } from "../../contract/catalog.js";
import { policySpec } from "../../contract/catalog.js";
import { ADMIN_PASSWORD, passwordFor, testServer, type TestServer } from "../../testing/server.js";
import { removeGroupMember, seedGroupMember, seedRole } from "../../testing/pim.js";
import type { Stage } from "./requests.types.js";

const NUM_RUNS = Number(process.env.STINT_PROPERTY_RUNS ?? 25);
const MAX_STEPS = 25;

const USERS = ["alice", "bob", "carol", "dave", "erin"] as const;
type User = (typeof USERS)[number];
/** The directory's managers (fixed); carol and erin have none. */
const MANAGER: Partial<Record<User, User>> = { alice: "carol", bob: "carol", dave: "erin" };
const INITIAL_LEADS: readonly User[] = ["dave", "erin"];

const ROLES = ["open", "mgr", "grp", "esc", "tdeny", "two", "auto"] as const;
type Role = (typeof ROLES)[number];

const ENDINGS = ["request.expired", "request.revoked", "request.deactivated"] as const;
const ENDED = new Set(["expired", "revoked", "deactivated"]);
const OPEN = new Set(["pending", "approved", "provisioning", "active"]);

/** The roles' policies for a run whose approver group is `leads` and whose bob is `bob`. */
function policies(leads: string, bob: string): Record<Role, { risk: "low" | "medium" | "high"; policy: PolicySpec }> {
  const base = {
    defaultDuration: "1h",
    maxDuration: "2h",
    mfa: { required: false, maxAge: "10m" },
    justification: { minLength: 5 },
  };
  const spec = (extra: Record<string, unknown>) => policySpec.parse({ ...base, ...extra });
  return {
    open: { risk: "medium", policy: spec({ maxExtensions: 1 }) },
    mgr: {
      risk: "high",
      policy: spec({ approval: { stages: [{ approvers: { manager: true }, count: 1 }] }, maxExtensions: 1 }),
    },
    grp: { risk: "high", policy: spec({ approval: { stages: [{ approvers: { groups: [leads] }, count: 2 }] } }) },
    esc: {
      risk: "high",
      policy: spec({
        approval: {
          stages: [
            {
              approvers: { manager: true },
              timeout: "30m",
              onTimeout: "escalate",
              escalateTo: { groups: [leads] },
            },
          ],
        },
      }),
    },
    tdeny: {
      risk: "medium",
      policy: spec({
        approval: { stages: [{ approvers: { users: [bob], manager: true }, timeout: "15m", onTimeout: "deny" }] },
      }),
    },
    two: {
      risk: "high",
      policy: spec({
        approval: { stages: [{ approvers: { manager: true } }, { approvers: { groups: [leads] } }] },
        maxExtensions: 1,
      }),
    },
    auto: {
      risk: "low",
      policy: spec({
        approval: { stages: [{ approvers: { groups: [leads] }, timeout: "20m", onTimeout: "approve" }] },
      }),
    },
  };
}

// ---------------------------------------------------------------------------
// Operations

/**
 * A request is referred to by a number, resolved when the step runs: among the run's requests
 * in the state the operation needs (pending to decide, active to end…), or among all of them
 * when `any` is set (to reach the refusals too).
 */
interface Ref {
  n: number;
  any: boolean;
}
/**
 * Who acts on a request: its requester, the requester's manager, a current lead, someone the
 * oracle says may decide now (to reach the approvals), or anyone.
 */
interface Who {
  as: "requester" | "manager" | "lead" | "approver" | "user";
  n: number;
}

type Op =
  | { kind: "submit"; user: User; role: Role; duration: string | undefined }
  | { kind: "approve" | "deny"; ref: Ref; who: Who }
  | { kind: "cancel"; ref: Ref; who: Who }
  | { kind: "extend"; ref: Ref; who: Who; by: string }
  | { kind: "deactivate"; ref: Ref; who: Who }
  | { kind: "revoke"; ref: Ref }
  | { kind: "advance"; ms: number; scheduler: boolean }
  | { kind: "toExpiry"; ref: Ref; offsetMs: number }
  | { kind: "race"; ref: Ref }
  | { kind: "join" | "leave"; user: User };

const user = fc.constantFrom(...USERS);
const role = fc.constantFrom(...ROLES);
const ref: fc.Arbitrary<Ref> = fc.record({
  n: fc.nat({ max: 50 }),
  any: fc.oneof({ weight: 4, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
});
const who = (weights: Record<Who["as"], number>): fc.Arbitrary<Who> =>
  fc.record({
    as: fc.oneof(
      ...Object.entries(weights)
        .filter(([, weight]) => weight > 0)
        .map(([as, weight]) => ({ weight, arbitrary: fc.constant(as as Who["as"]) })),
    ),
    n: fc.nat({ max: 20 }),
  });
const decider = who({ requester: 1, manager: 2, lead: 2, approver: 3, user: 2 });
const holder = who({ requester: 5, manager: 0, lead: 0, approver: 0, user: 1 });
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant("submit" as const),
      user,
      role,
      duration: fc.constantFrom(undefined, "1m", "5m", "30m", "2h", "3h"),
    }),
  },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("approve" as const), ref, who: decider }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("deny" as const), ref, who: decider }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("cancel" as const), ref, who: holder }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("extend" as const),
      ref,
      who: holder,
      by: fc.constantFrom("1m", "30m", "2h", "3h"),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("deactivate" as const), ref, who: holder }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("revoke" as const), ref }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("advance" as const),
      ms: fc.constantFrom(1, 30_000, 60_000, 5 * 60_000, 15 * 60_000, 20 * 60_000, 30 * 60_000, 60 * 60_000),
      scheduler: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant("toExpiry" as const), ref, offsetMs: fc.constantFrom(-1, 0, 1) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("race" as const), ref }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("join" as const), user }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("leave" as const), user }) },
);

// ---------------------------------------------------------------------------

interface Reply {
  status: number;
  body: Record<string, unknown> & { error?: { code: string; message: string } };
}

interface Run {
  sfx: string;
  name: Record<User, string>;
  short: Map<string, User>;
  id: Record<User, string>;
  roleName: Record<Role, string>;
  roleOf: Map<string, Role>;
  specs: ReturnType<typeof policies>;
  leads: string;
  /** The test's own model of the leads group, changed only by the test. */
  leadMembers: Set<User>;
  /** Requests of this run, in the order they were created. */
  requests: string[];
  /** Decisions the oracle allowed and the service accepted: `${request}|${approverId}|${stage}|${decision}`. */
  allowed: Set<string>;
  /** Activations seen still active at or after their expiry (before a scheduler pass), with that expiry. */
  overdue: Map<string, number>;
  trace: string[];
}

describe("activation requests: random operation sequences keep the invariants", () => {
  const clock = manualClock("2026-03-02T10:00:00Z");
  let server: TestServer;
  let runNo = 0;
  const tokens = new Map<string, { auth: string; at: number }>();
  const stats = { steps: 0, skipped: 0, decisions: 0, expired: 0, ended: 0, races: 0 };

  beforeAll(async () => {
    server = await testServer("pglite", { clock });
  });
  afterAll(async () => {
    await server?.cleanup();
  });

  /** A bearer token for `who`, signed in again once the (manual) clock has moved a few minutes. */
  async function auth(who: string, password = passwordFor(who)): Promise<string> {
    const cached = tokens.get(who);
    if (cached && clock.now().getTime() - cached.at < 5 * 60_000 && clock.now().getTime() >= cached.at)
      return cached.auth;
    const value = await server.login(who, password);
    tokens.set(who, { auth: value, at: clock.now().getTime() });
    return value;
  }

  async function call(who: string, method: "GET" | "POST", url: string, payload?: unknown): Promise<Reply> {
    const authorization = await auth(who, who === "admin" ? ADMIN_PASSWORD : undefined);
    const res = await server.app.inject({
      method,
      url,
      headers: { authorization },
      ...(payload !== undefined ? { payload: payload as object } : {}),
    });
    const reply = { status: res.statusCode, body: res.json() as Reply["body"] };
    // Never a server error, whatever the sequence.
    if (reply.status >= 500) throw new Error(`${method} ${url} as ${who}: HTTP ${reply.status} ${res.body}`);
    return reply;
  }

  async function setupRun(): Promise<Run> {
    const sfx = `r${++runNo}`;
    const name = Object.fromEntries(USERS.map((u) => [u, `${u}-${sfx}`])) as Record<User, string>;
    const short = new Map(USERS.map((u) => [name[u], u] as const));
    const leads = `leads-${sfx}`;
    // Managers first, so the others can name them.
    for (const u of ["carol", "erin", "alice", "bob", "dave"] as const) {
      const manager = MANAGER[u];
      const res = await call("admin", "POST", "/v1/users", {
        name: name[u],
        password: passwordFor(name[u]),
        ...(manager ? { manager: name[manager] } : {}),
      });
      if (res.status !== 201) throw new Error(`create ${name[u]}: ${JSON.stringify(res.body)}`);
    }
    for (const u of INITIAL_LEADS) await seedGroupMember(server, leads, name[u]);
    const ids = await server.store.db
      .selectFrom("principals")
      .select(["id", "name"])
      .where("name", "in", Object.values(name))
      .execute();
    const id = Object.fromEntries(ids.map((p) => [short.get(p.name)!, p.id])) as Record<User, string>;
    const specs = policies(leads, name.bob);
    const roleName = Object.fromEntries(ROLES.map((r) => [r, `${r}-${sfx}`])) as Record<Role, string>;
    for (const r of ROLES) {
      await seedRole(server, {
        name: roleName[r],
        risk: specs[r].risk,
        policy: specs[r].policy,
        eligibleUsers: Object.values(name),
      });
    }
    return {
      sfx,
      name,
      short,
      id,
      roleName,
      roleOf: new Map(ROLES.map((r) => [roleName[r], r] as const)),
      specs,
      leads,
      leadMembers: new Set(INITIAL_LEADS),
      requests: [],
      allowed: new Set(),
      overdue: new Map(),
      trace: [],
    };
  }

  function loadRequest(requestId: string) {
    return server.store.db
      .selectFrom("activation_requests as r")
      .innerJoin("principals as p", "p.id", "r.requester_id")
      .innerJoin("roles as ro", "ro.id", "r.role_id")
      .select([
        "r.id",
        "r.state",
        "r.stages",
        "r.stage_index",
        "r.requester_id",
        "r.extends_request_id",
        "r.expires_at",
        "r.ended_at",
        "r.activated_at",
        "p.name as requester",
        "ro.name as role",
      ])
      .where("r.id", "=", requestId)
      .executeTakeFirstOrThrow();
  }

  /**
   * The oracle: may `who` decide on the request now? Computed from the test's own policies,
   * managers and group membership; only the stage index and its escalation come from the row.
   */
  async function mayDecide(
    run: Run,
    who: User,
    requestId: string,
    kind: "approve" | "deny" = "deny",
  ): Promise<{ allowed: boolean; stage: number }> {
    const row = await loadRequest(requestId);
    if (row.state !== "pending") return { allowed: false, stage: row.stage_index };
    const requester = run.short.get(row.requester)!;
    if (requester === who) return { allowed: false, stage: row.stage_index };
    const spec = run.specs[run.roleOf.get(row.role)!].policy;
    const stage = spec.approval.stages[row.stage_index];
    if (!stage) throw new Error(`request ${requestId} is pending at stage ${row.stage_index}, which its policy lacks`);
    const escalated = !!(row.stages as unknown as Stage[])[row.stage_index]?.escalated;
    const set = escalated && stage.escalateTo ? stage.escalateTo : stage.approvers;
    const named =
      set.users.includes(run.name[who]) ||
      (set.manager && MANAGER[requester] === who) ||
      (set.groups.includes(run.leads) && run.leadMembers.has(who));
    if (!named) return { allowed: false, stage: row.stage_index };
    const already = await server.store.db
      .selectFrom("request_decisions")
      .select("id")
      .where("request_id", "=", requestId)
      .where("stage_index", "=", row.stage_index)
      .where("approver_id", "=", run.id[who])
      .executeTakeFirst();
    // Whoever approved an earlier stage does not approve another (the policies here keep the default).
    const approvedEarlier =
      kind === "approve" &&
      (await server.store.db
        .selectFrom("request_decisions")
        .select("id")
        .where("request_id", "=", requestId)
        .where("stage_index", "<", row.stage_index)
        .where("approver_id", "=", run.id[who])
        .where("decision", "=", "approve")
        .executeTakeFirst()) !== undefined;
    return { allowed: already === undefined && !approvedEarlier, stage: row.stage_index };
  }

  /** The request `ref` points at: among the run's requests in `states`, or among all with `ref.any`. */
  async function pick(run: Run, r: Ref, states: readonly string[]): Promise<string | undefined> {
    if (run.requests.length === 0) return undefined;
    if (r.any) return run.requests[r.n % run.requests.length];
    const rows = await server.store.db
      .selectFrom("activation_requests")
      .select(["id", "state"])
      .where("id", "in", run.requests)
      .execute();
    const wanted = run.requests.filter((id) => states.includes(rows.find((row) => row.id === id)!.state));
    return wanted.length ? wanted[r.n % wanted.length] : undefined;
  }

  /** The user `w` stands for, on a request by `requester`. */
  function resolve(run: Run, w: Who, requester: User): User {
    const anyone = USERS[w.n % USERS.length]!;
    if (w.as === "requester") return requester;
    if (w.as === "manager") return MANAGER[requester] ?? anyone;
    if (w.as === "lead") {
      const leads = USERS.filter((u) => run.leadMembers.has(u));
      return leads.length ? leads[w.n % leads.length]! : anyone;
    }
    return anyone;
  }

  const label = (run: Run, id: string) => `#${run.requests.indexOf(id)}`;
  const outcome = (res: Reply) => `${res.status} ${res.body.error?.code ?? String(res.body.state)}`;

  async function step(run: Run, o: Op): Promise<{ scheduled: boolean }> {
    const now = () => clock.now().getTime();
    const why = () => run.trace.join("\n");
    switch (o.kind) {
      case "submit": {
        const roleName = run.roleName[o.role];
        const open = await server.store.db
          .selectFrom("activation_requests as r")
          .innerJoin("roles as ro", "ro.id", "r.role_id")
          .select("r.id")
          .where("r.requester_id", "=", run.id[o.user])
          .where("ro.name", "=", roleName)
          .where("r.extends_request_id", "is", null)
          .where("r.state", "in", ["pending", "approved", "provisioning", "active"])
          .executeTakeFirst();
        const res = await call(run.name[o.user], "POST", "/v1/activation-requests", {
          role: roleName,
          reason: "rotate the replica credentials",
          ...(o.duration ? { duration: o.duration } : {}),
        });
        if (res.status === 201) run.requests.push(res.body.id as string);
        run.trace.push(`submit ${o.user} ${o.role} ${o.duration ?? "default"} -> ${outcome(res)}`);
        // Never a second open request (and so never a second grant) for one user and role.
        if (o.duration === "3h") expect(res.body.error?.code, why()).toBe("DURATION_TOO_LONG");
        else if (open) expect([res.status, res.body.error?.code], why()).toEqual([409, "REQUEST_ALREADY_OPEN"]);
        else expect(res.status, why()).toBe(201);
        return { scheduled: false };
      }
      case "approve":
      case "deny": {
        const requestId = await pick(run, o.ref, ["pending"]);
        if (!requestId) return { scheduled: false };
        const row = await loadRequest(requestId);
        let actor = resolve(run, o.who, run.short.get(row.requester)!);
        if (o.who.as === "approver") {
          // Someone the oracle says may decide now, if there is anyone.
          const named: User[] = [];
          for (const u of USERS) if ((await mayDecide(run, u, requestId, o.kind)).allowed) named.push(u);
          if (named.length) actor = named[o.who.n % named.length]!;
        }
        const oracle = await mayDecide(run, actor, requestId, o.kind);
        const before = await decisionCount(requestId, run.id[actor]);
        const path = o.kind === "approve" ? "approvals" : "denials";
        const res = await call(run.name[actor], "POST", `/v1/activation-requests/${requestId}/${path}`, {
          reason: `${o.kind} in the property test`,
        });
        run.trace.push(
          `${o.kind} ${label(run, requestId)} (${row.state}, stage ${oracle.stage + 1}) by ${actor} ` +
            `[oracle: ${oracle.allowed ? "may" : "may not"}] -> ${outcome(res)}`,
        );
        if (oracle.allowed) {
          expect(res.status, why()).toBe(200);
          run.allowed.add(`${requestId}|${run.id[actor]}|${oracle.stage}|${o.kind}`);
          stats.decisions++;
        } else {
          expect([403, 404, 409], why()).toContain(res.status);
          expect(await decisionCount(requestId, run.id[actor]), why()).toBe(before);
        }
        return { scheduled: false };
      }
      case "cancel": {
        const requestId = await pick(run, o.ref, ["pending", "approved"]);
        if (!requestId) return { scheduled: false };
        const row = await loadRequest(requestId);
        const actor = resolve(run, o.who, run.short.get(row.requester)!);
        const res = await call(run.name[actor], "POST", `/v1/activation-requests/${requestId}/cancel`);
        const kind = row.extends_request_id ? "extension" : "request";
        run.trace.push(`cancel ${kind} ${label(run, requestId)} (${row.state}) by ${actor} -> ${outcome(res)}`);
        const mine = row.requester === run.name[actor];
        // An approved extension has already moved its activation's expiry: there is nothing left to cancel.
        const cancellable = row.state === "pending" || (row.state === "approved" && !row.extends_request_id);
        expect(res.status, why()).toBe(mine && cancellable ? 200 : mine ? 409 : 404);
        return { scheduled: false };
      }
      case "extend":
      case "deactivate": {
        const requestId = await pick(run, o.ref, ["active"]);
        if (!requestId) return { scheduled: false };
        const row = await loadRequest(requestId);
        const actor = resolve(run, o.who, run.short.get(row.requester)!);
        // Extensions and deactivations go by role: they act on the caller's own active activation of the role
        // picked, whoever holds the request that was picked.
        const active = await server.store.db
          .selectFrom("activation_requests as r")
          .innerJoin("roles as ro", "ro.id", "r.role_id")
          .select("r.id")
          .where("r.requester_id", "=", run.id[actor])
          .where("ro.name", "=", row.role)
          .where("r.state", "=", "active")
          .executeTakeFirst();
        if (o.kind === "extend") {
          const res = await call(run.name[actor], "POST", `/v1/me/roles/${row.role}/extensions`, {
            by: o.by,
            reason: "the migration is still running",
          });
          if (res.status === 201) run.requests.push(res.body.id as string);
          run.trace.push(
            `extend ${label(run, requestId)} (${row.state}) by ${actor} for ${o.by} -> ${outcome(res)}` +
              (res.status === 201 ? ` as ${label(run, res.body.id as string)}` : ""),
          );
          if (!active) expect(res.status, why()).not.toBe(201);
        } else {
          const res = await call(run.name[actor], "POST", `/v1/me/roles/${row.role}/deactivate`);
          run.trace.push(`deactivate ${label(run, requestId)} (${row.state}) by ${actor} -> ${outcome(res)}`);
          expect(res.status, why()).toBe(active ? 200 : 409);
        }
        return { scheduled: false };
      }
      case "revoke": {
        const requestId = await pick(run, o.ref, ["active"]);
        if (!requestId) return { scheduled: false };
        const row = await loadRequest(requestId);
        const res = await call("admin", "POST", `/v1/activation-requests/${requestId}/revoke`, {
          reason: "revoked by the property test",
        });
        run.trace.push(`revoke ${label(run, requestId)} (${row.state}) -> ${outcome(res)}`);
        expect(res.status, why()).toBe(row.state === "active" ? 200 : 409);
        return { scheduled: false };
      }
      case "advance": {
        clock.advance(o.ms);
        const r = o.scheduler ? await server.scheduler.runOnce() : undefined;
        run.trace.push(
          `advance ${o.ms} ms` + (r ? ` + scheduler -> expired ${r.expired}, timed out ${r.timedOut}` : ""),
        );
        stats.expired += r?.expired ?? 0;
        return { scheduled: o.scheduler };
      }
      case "toExpiry": {
        const requestId = await pick(run, o.ref, ["active"]);
        if (!requestId) return { scheduled: false };
        const row = await loadRequest(requestId);
        if (row.state !== "active" || !row.expires_at) return { scheduled: false };
        const target = new Date(row.expires_at).getTime() + o.offsetMs;
        if (target > now()) clock.set(new Date(target));
        // Before the pass: the check API already refuses at and after expires_at.
        await checkApi(run);
        const r = await server.scheduler.runOnce();
        stats.expired += r.expired;
        run.trace.push(`to expiry of ${label(run, requestId)} ${o.offsetMs} ms + scheduler -> expired ${r.expired}`);
        return { scheduled: true };
      }
      case "race": {
        // Deactivate, revoke and two scheduler passes at the very moment of expiry, all at once.
        const requestId = await pick(run, o.ref, ["active"]);
        if (!requestId) return { scheduled: false };
        const row = await loadRequest(requestId);
        if (row.state !== "active" || !row.expires_at || row.extends_request_id) return { scheduled: false };
        stats.races++;
        const target = new Date(row.expires_at).getTime();
        if (target > now()) clock.set(new Date(target));
        await auth(row.requester);
        await auth("admin", ADMIN_PASSWORD);
        const [off, revoke, a, b] = await Promise.all([
          call(row.requester, "POST", `/v1/me/roles/${row.role}/deactivate`),
          call("admin", "POST", `/v1/activation-requests/${requestId}/revoke`, { reason: "race in the test" }),
          server.scheduler.runOnce(),
          server.scheduler.runOnce(),
        ]);
        run.trace.push(
          `race on ${label(run, requestId)} -> deactivate ${outcome(off)}, revoke ${outcome(revoke)}, ` +
            `expired ${a.expired}+${b.expired}`,
        );
        // The scheduler may end other overdue activations too; the invariants check this one ended once.
        expect(Number(off.status === 200) + Number(revoke.status === 200), why()).toBeLessThanOrEqual(1);
        return { scheduled: true };
      }
      case "join":
      case "leave": {
        const member = run.leadMembers.has(o.user);
        if (o.kind === "join" && !member) {
          await seedGroupMember(server, run.leads, run.name[o.user]);
          run.leadMembers.add(o.user);
        } else if (o.kind === "leave" && member) {
          await removeGroupMember(server, run.leads, run.name[o.user]);
          run.leadMembers.delete(o.user);
        }
        run.trace.push(`${o.kind} ${o.user} -> leads [${USERS.filter((u) => run.leadMembers.has(u)).join(", ")}]`);
        return { scheduled: false };
      }
    }
  }

  async function decisionCount(requestId: string, approverId: string): Promise<number> {
    const rows = await server.store.db
      .selectFrom("request_decisions")
      .select("id")
      .where("request_id", "=", requestId)
      .where("approver_id", "=", approverId)
      .execute();
    return rows.length;
  }

  /** The check API says allowed exactly for activations that are active and not past expires_at. */
  async function checkApi(run: Run) {
    if (run.requests.length === 0) return;
    const now = clock.now().getTime();
    const rows = await server.store.db
      .selectFrom("activation_requests as r")
      .innerJoin("principals as p", "p.id", "r.requester_id")
      .innerJoin("roles as ro", "ro.id", "r.role_id")
      .select(["p.name as requester", "ro.name as role", "r.state", "r.expires_at"])
      .where("r.id", "in", run.requests)
      .where("r.extends_request_id", "is", null)
      .execute();
    const pairs = new Map<string, boolean>();
    for (const row of rows) {
      const key = `${row.requester}|${row.role}`;
      const live = row.state === "active" && !!row.expires_at && new Date(row.expires_at).getTime() > now;
      pairs.set(key, (pairs.get(key) ?? false) || live);
    }
    for (const [key, live] of pairs) {
      const [principal, roleName] = key.split("|") as [string, string];
      const res = await call("admin", "GET", `/v1/check?principal=${principal}&role=${roleName}`);
      expect(res.body.allowed, `check ${key} at ${clock.now().toISOString()}\n${run.trace.join("\n")}`).toBe(live);
      if (live) expect(new Date(res.body.expiresAt as string).getTime()).toBeGreaterThan(now);
    }
  }

  async function checkInvariants(run: Run, afterScheduler: boolean) {
    const db = server.store.db;
    const why = () => run.trace.join("\n");
    const now = clock.now();

    // (1) never a self-approval (or self-denial), anywhere in the database.
    const self = await db
      .selectFrom("request_decisions as d")
      .innerJoin("activation_requests as r", "r.id", "d.request_id")
      .select(["d.request_id", "d.decision"])
      .whereRef("d.approver_id", "=", "r.requester_id")
      .execute();
    expect(self, why()).toEqual([]);

    // (2) every decision of this run was one the oracle allowed (named by the stage at that time).
    if (run.requests.length > 0) {
      const decisions = await db
        .selectFrom("request_decisions")
        .select(["request_id", "approver_id", "stage_index", "decision"])
        .where("request_id", "in", run.requests)
        .execute();
      const unexplained = decisions
        .map((d) => `${d.request_id}|${d.approver_id}|${d.stage_index}|${d.decision}`)
        .filter((key) => !run.allowed.has(key));
      expect(unexplained, why()).toEqual([]);
    }

    // (3) nothing active past its expiry once the scheduler has run; grants follow their request;
    // an activation seen past its expiry never comes back: its expiry does not move and it ends as expired.
    if (run.requests.length > 0) {
      const active = await db
        .selectFrom("activation_requests")
        .select(["id", "state", "expires_at"])
        .where("id", "in", run.requests)
        .where("expires_at", "is not", null)
        .execute();
      for (const row of active) {
        const expiresAt = new Date(row.expires_at!).getTime();
        const seen = run.overdue.get(row.id);
        if (seen !== undefined) {
          expect(expiresAt, `expiry of ${run.requests.indexOf(row.id)} moved after it passed\n${why()}`).toBe(seen);
          expect(row.state === "active" || ENDED.has(row.state), why()).toBe(true);
        } else if (row.state === "active" && expiresAt <= now.getTime()) run.overdue.set(row.id, expiresAt);
      }
    }
    if (afterScheduler) {
      const overdue = await db
        .selectFrom("activation_requests")
        .select(["id", "expires_at"])
        .where("state", "=", "active")
        .where("expires_at", "<=", now)
        .execute();
      expect(overdue, why()).toEqual([]);
    }
    const strayGrants = await db
      .selectFrom("grants as g")
      .innerJoin("activation_requests as r", "r.id", "g.request_id")
      .select(["g.id", "g.state as grant", "r.state as request"])
      .where((eb) =>
        eb.or([
          eb.and([eb("g.state", "=", "active"), eb("r.state", "<>", "active")]),
          eb.and([eb("g.state", "<>", "active"), eb("r.state", "=", "active")]),
        ]),
      )
      .execute();
    expect(strayGrants, why()).toEqual([]);

    if (run.requests.length === 0) return;
    const rows = await db
      .selectFrom("activation_requests")
      .leftJoin("grants", "grants.request_id", "activation_requests.id")
      .select([
        "activation_requests.id",
        "activation_requests.state",
        "activation_requests.ended_at",
        "activation_requests.activated_at",
        "activation_requests.extends_request_id",
        "grants.state as grant",
      ])
      .where("activation_requests.id", "in", run.requests)
      .execute();
    const events = await db
      .selectFrom("audit_events")
      .select(["subject", "action", "details"])
      .where("action", "in", [...ENDINGS, "request.activated"])
      .where("outcome", "=", "success")
      .where(
        "subject",
        "in",
        run.requests.map((r) => `request:${r}`),
      )
      .execute();
    for (const row of rows) {
      const mine = events.filter((e) => e.subject === `request:${row.id}`);
      const endings = mine.filter((e) => (ENDINGS as readonly string[]).includes(e.action));
      const activations = mine.filter((e) => e.action === "request.activated");
      const label = `request ${run.requests.indexOf(row.id)} (${row.state})\n${why()}`;
      // (4) at most one ending per activation, exactly one once it ended, and ended_at with it.
      expect(endings.length, label).toBeLessThanOrEqual(1);
      expect(activations.length, label).toBe(row.activated_at ? 1 : 0);
      if (ENDED.has(row.state)) {
        expect(
          endings.map((e) => e.action),
          label,
        ).toEqual([`request.${row.state}`]);
        expect(row.ended_at, label).not.toBeNull();
        expect((endings[0]!.details as { endedAt?: string }).endedAt, label).toBe(
          new Date(row.ended_at!).toISOString(),
        );
        if (row.activated_at === null) {
          // Expired undecided (its requestTtl passed while pending): never started, so nothing to revoke.
          expect(row.state, label).toBe("expired");
          expect((endings[0]!.details as { pending?: boolean }).pending, label).toBe(true);
          expect(row.grant, label).toBeNull();
        } else expect(row.grant, label).toBe("revoked");
      } else {
        expect(endings, label).toEqual([]);
      }
      if (OPEN.has(row.state)) expect(row.ended_at, label).toBeNull();
      if (row.state === "active") expect(row.grant, label).toBe("active");
      if (row.extends_request_id) expect(row.grant, label).toBeNull();
    }
  }

  // Found by the property test; kept as examples so they fail on their own if they come back.
  describe("examples the property test found", () => {
    const reason = "the migration is still running";

    async function activeOn(run: Run, r: Role): Promise<string> {
      const res = await call(run.name.alice, "POST", "/v1/activation-requests", {
        role: run.roleName[r],
        duration: "1h",
        reason: "rotate the replica credentials",
      });
      if (r === "mgr") {
        const approved = await call(
          run.name.carol,
          "POST",
          `/v1/activation-requests/${res.body.id as string}/approvals`,
          {},
        );
        expect(approved.body.state).toBe("active");
      } else expect(res.body.state).toBe("active");
      return res.body.id as string;
    }
    const extend = (run: Run, r: Role) =>
      call(run.name.alice, "POST", `/v1/me/roles/${run.roleName[r]}/extensions`, { by: "30m", reason });

    it("refuses to cancel an extension that was already applied", async () => {
      const run = await setupRun();
      const id = await activeOn(run, "open");
      const ext = await extend(run, "open");
      expect([ext.status, ext.body.state]).toEqual([201, "approved"]);
      const cancel = await call(run.name.alice, "POST", `/v1/activation-requests/${ext.body.id as string}/cancel`);
      expect([cancel.status, cancel.body.error?.code]).toEqual([409, "REQUEST_NOT_PENDING"]);
      const parent = await loadRequest(id);
      expect(new Date(parent.expires_at!).getTime() - clock.now().getTime()).toBe(90 * 60_000);
    });

    it("answers a second extension while one waits for approval with 409, not 500", async () => {
      const run = await setupRun();
      await activeOn(run, "mgr");
      const first = await extend(run, "mgr");
      expect([first.status, first.body.state]).toEqual([201, "pending"]);
      const second = await extend(run, "mgr");
      expect([second.status, second.body.error?.code]).toEqual([409, "REQUEST_ALREADY_OPEN"]);
    });

    it("never extends an activation past its expiry, even before the scheduler has ended it", async () => {
      const run = await setupRun();
      const open = await activeOn(run, "open");
      const mgr = await activeOn(run, "mgr");
      const pending = await extend(run, "mgr");
      expect(pending.body.state).toBe("pending");
      clock.advance(60 * 60_000); // exactly at the expiry, before any scheduler pass
      const late = await extend(run, "open");
      expect([late.status, late.body.error?.code]).toEqual([409, "NOT_ACTIVE"]);
      const approval = await call(
        run.name.carol,
        "POST",
        `/v1/activation-requests/${pending.body.id as string}/approvals`,
        {},
      );
      expect(approval.body.state).toBe("cancelled");
      for (const id of [open, mgr]) {
        const row = await loadRequest(id);
        expect(new Date(row.expires_at!).getTime()).toBe(clock.now().getTime());
        const check = await call("admin", "GET", `/v1/check?principal=${run.name.alice}&role=${row.role}`);
        expect(check.body.allowed).toBe(false);
      }
      expect((await server.scheduler.runOnce()).expired).toBeGreaterThanOrEqual(2);
      expect((await loadRequest(open)).state).toBe("expired");
      expect((await loadRequest(mgr)).state).toBe("expired");
    });
  });

  it(`keeps every invariant over ${NUM_RUNS} runs of up to ${MAX_STEPS} steps`, { timeout: 600_000 }, async () => {
    const started = Date.now();
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 8, maxLength: MAX_STEPS, size: "max" }), async (ops) => {
        const run = await setupRun();
        for (const o of ops) {
          stats.steps++;
          const traced = run.trace.length;
          const { scheduled } = await step(run, o);
          if (run.trace.length === traced) stats.skipped++; // nothing to act on (no such request yet)
          await checkInvariants(run, scheduled);
          if (o.kind === "advance" && !o.scheduler) await checkApi(run);
        }
        // Finally let the scheduler catch up far in the future: everything still active ends, once.
        clock.advance(24 * 60 * 60_000);
        stats.expired += (await server.scheduler.runOnce()).expired;
        await checkInvariants(run, true);
        await checkApi(run);
        // (5) the chain verifies.
        const verified = await server.audit.verify();
        expect(verified, run.trace.join("\n")).toMatchObject({ ok: true });
        if (run.requests.length > 0) {
          const states = await server.store.db
            .selectFrom("activation_requests")
            .select("state")
            .where("id", "in", run.requests)
            .execute();
          stats.ended += states.filter((s) => ENDED.has(s.state)).length;
        }
      }),
      // Shrinking replays runs (seconds each); ask for it with STINT_PROPERTY_SHRINK=1 when hunting a failure.
      { numRuns: NUM_RUNS, endOnFailure: process.env.STINT_PROPERTY_SHRINK !== "1" },
    );
    const tally = await server.store.db
      .selectFrom("audit_events")
      .select(["action", "outcome"])
      .where("action", "like", "request.%")
      .execute();
    const counts: Record<string, number> = {};
    for (const e of tally) counts[`${e.action}:${e.outcome}`] = (counts[`${e.action}:${e.outcome}`] ?? 0) + 1;
    console.info(
      `[property] ${NUM_RUNS} runs, ${stats.steps} steps (${stats.skipped} with nothing to act on), ${stats.decisions} accepted decisions, ` +
        `${stats.ended} ended activations, ${stats.races} races, ${Date.now() - started} ms\n` +
        Object.entries(counts)
          .sort()
          .map(([k, v]) => `  ${k} ${v}`)
          .join("\n"),
    );
  });
});
