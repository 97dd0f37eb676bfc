/**
 * Support for the connector acceptance tests: a Stint test server on a manual
 * clock, a catalog applied from YAML, and activation driven through the API,
 * with the outbox and scheduler run by hand so each step can be checked.
 */
import { expect } from "vitest";
import { manualClock } from "../lib/clock.js";
import { ADMIN_PASSWORD, passwordFor, testServer, type TestServer } from "./server.js";

export interface TargetsHarness {
  server: TestServer;
  clock: ReturnType<typeof manualClock>;
  admin(method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE", url: string, payload?: unknown): Promise<ApiReply>;
  as(user: string, method: "GET" | "POST" | "PUT", url: string, payload?: unknown): Promise<ApiReply>;
  apply(yaml: string): Promise<void>;
  createUser(name: string): Promise<void>;
  /** Submits an activation as `user` and runs the outbox; returns the request as it is then. */
  activate(user: string, role: string, duration?: string): Promise<Record<string, unknown>>;
  /** Moves the clock past every expiry, runs the scheduler, then the outbox. */
  expireAll(): Promise<void>;
  /** Runs the outbox until it claims nothing (at most `passes`). */
  drainOutbox(passes?: number): Promise<void>;
  metric(name: string, labels: Record<string, string>): Promise<number | null>;
}

export interface ApiReply {
  status: number;
  body: Record<string, unknown> & { error?: { code: string; message: string } };
}

export async function targetsHarness(
  options: {
    backoff?: { baseMs: number; capMs: number };
    env?: NodeJS.ProcessEnv;
    /** A clock that follows real time (plus what `advance` adds), for tests of a started runner. */
    realTime?: boolean;
    /** The store's engine (PGlite by default). */
    engine?: "pglite" | "postgres";
  } = {},
): Promise<TargetsHarness> {
  const clock = options.realTime ? realTimeClock() : manualClock(new Date());
  const server = await testServer(options.engine ?? "pglite", {
    clock,
    env: { STINT_RECONCILE_INTERVAL: "0", ...options.env },
    ...(options.backoff ? { outboxBackoff: options.backoff } : {}),
  });
  const inject = async (auth: string, method: string, url: string, payload?: unknown): Promise<ApiReply> => {
    const res = await server.app.inject({
      method: method as "GET",
      url,
      headers: { authorization: auth },
      ...(payload !== undefined ? { payload: payload as object } : {}),
    });
    return { status: res.statusCode, body: res.body ? (res.json() as ApiReply["body"]) : {} };
  };
  const harness: TargetsHarness = {
    server,
    clock,
    // Signs in afresh each time: the manual clock may have moved past a token's life.
    admin: async (method, url, payload) =>
      inject(await server.login(server.config.bootstrapAdminName, ADMIN_PASSWORD), method, url, payload),
    async as(user, method, url, payload) {
      return inject(await server.login(user, passwordFor(user)), method, url, payload);
    },
    async apply(yaml) {
      const res = await harness.admin("POST", "/v1/config/apply", { yaml });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
    },
    async createUser(name) {
      const res = await harness.admin("POST", "/v1/users", { name, password: passwordFor(name) });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
    },
    async activate(user, role, duration = "10m") {
      const res = await harness.as(user, "POST", "/v1/activation-requests", {
        role,
        duration,
        reason: "investigating incident 4242 in production",
      });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      await harness.drainOutbox();
      const now = await harness.admin("GET", `/v1/activation-requests/${String(res.body.id)}`);
      return now.body;
    },
    async expireAll() {
      clock.advance(24 * 3600_000);
      await server.scheduler.runOnce();
      await harness.drainOutbox();
    },
    async drainOutbox(passes = 10) {
      for (let i = 0; i < passes; i++) if ((await server.outbox.runOnce()).claimed === 0) return;
    },
    async metric(name, labels) {
      const text = await server.registry.metrics();
      const want = Object.entries(labels)
        .map(([k, v]) => `${k}="${v}"`)
        .sort();
      for (const line of text.split("\n")) {
        const match = /^([a-z_]+)(?:\{([^}]*)\})? ([0-9.e+-]+)$/.exec(line);
        if (!match || match[1] !== name) continue;
        const have = (match[2] ?? "").split(",").filter(Boolean).sort();
        if (want.every((w) => have.includes(w))) return Number(match[3]);
      }
      return null;
    },
  };
  return harness;
}

/** A policy that lets an eligible user activate alone: no MFA, no approval (the connector is under test). */
export function selfServicePolicy(name: string, drift: "report" | "remove" = "report"): string {
  return `
  - name: ${name}
    mfa: { required: false }
    maxDuration: 8h
    drift: ${drift}`;
}

/**
 * A catalog file of one target and one role on it under a self-service policy named `policy` (`selfServicePolicy`),
 * `users` eligible for it. `target.lines`: the target's entry after its name (YAML lines indented four spaces, each
 * ending with a newline); `moreTargets`: further entries of the `targets:` list.
 */
export function selfServiceCatalog(spec: {
  policy: string;
  target: { name: string; lines: string };
  moreTargets?: string | undefined;
  role: { name: string; entitlement: string; risk: string };
  users: readonly string[];
}): string {
  const { policy, target, role } = spec;
  return `
apiVersion: stint/v1
policies:${selfServicePolicy(policy)}
targets:
  - name: ${target.name}
${target.lines}${spec.moreTargets ?? ""}roles:
  - name: ${role.name}
    target: ${target.name}
    entitlement: ${role.entitlement}
    policy: ${policy}
    risk: ${role.risk}
eligibility:
  - role: ${role.name}
    users: [${spec.users.join(", ")}]
`;
}

/** Real time, moved forward by `advance` (the manual clock's interface, for tests that run the workers live). */
function realTimeClock(): ReturnType<typeof manualClock> {
  let offset = 0;
  return {
    now: () => new Date(Date.now() + offset),
    advance: (ms: number) => {
      offset += ms;
    },
    set: (t: Date) => {
      offset = t.getTime() - Date.now();
    },
  };
}
