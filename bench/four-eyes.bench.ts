/**
 * Four-eyes (issue 16): what holding a configuration file costs. On PGlite, a catalog of --roles roles (half of them
 * critical) with --users users each eligible for --per roles; then, as one admin, applies --rounds files that each
 * add one critical eligibility (held: the file is executed, rolled back, and kept with the catalog's fingerprint) and
 * a second admin approves each (the file is re-planned, the fingerprint compared, and applied). Prints CPU time of
 * this process (process.cpuUsage: PGlite runs in it) and wall time per operation, next to a plain apply of the same
 * size with four-eyes off, and the pure part (assessPlan + catalogFingerprint) on the loaded catalog.
 *
 * Measured here (2 shared cores under heavy load, --roles=40 --users=60 --per=4 --rounds=8: 249 eligibility rows):
 * a plain apply of one critical eligibility ~105 ms CPU; held ~73 ms; held + a second admin's approval ~200 ms
 * (the file is planned twice and executed twice, once rolled back); an approval refused as stale ~32 ms;
 * assessPlan + catalogFingerprint ~1.7 ms. Wall times here are 4–8× the CPU times (other work on the machine).
 *
 *   node --import tsx bench/four-eyes.bench.ts [--roles=60] [--users=100] [--per=5] [--rounds=20]
 */
import { performance } from "node:perf_hooks";
import { parseConfig } from "../src/modules/catalog/catalog.config.js";
import { planConfig } from "../src/modules/catalog/catalog.plan.rules.js";
import { assessPlan, catalogFingerprint } from "../src/modules/catalog/change-requests.rules.js";
import type { CatalogState } from "../src/modules/catalog/catalog.types.js";
import { testServer, type TestServer } from "../src/testing/server.js";

const arg = (name: string, fallback: string) =>
  Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? fallback);
const ROLES = arg("roles", "60");
const USERS = arg("users", "100");
const PER = arg("per", "5");
const ROUNDS = arg("rounds", "20");

function catalogFile(extra: string[]): string {
  const lines = [
    "apiVersion: stint/v1",
    "policies:",
    "  - name: standard",
    "    maxDuration: 2h",
    "targets:",
    "  - name: app",
    "    kind: internal",
    "roles:",
  ];
  for (let r = 0; r < ROLES; r += 1)
    lines.push(
      `  - name: role-${r}`,
      "    target: app",
      "    policy: standard",
      `    risk: ${r % 2 ? "critical" : "low"}`,
    );
  lines.push("eligibility:");
  for (let u = 0; u < USERS; u += 1)
    for (let k = 0; k < PER; k += 1) lines.push(`  - role: role-${(u * 7 + k * 13) % ROLES}`, `    users: [u${u}]`);
  return `${lines.join("\n")}\n${extra.join("\n")}${extra.length ? "\n" : ""}`;
}

async function post(server: TestServer, auth: string, url: string, body: unknown) {
  const res = await server.app.inject({
    method: "POST",
    url,
    headers: { authorization: auth },
    payload: body as object,
  });
  if (res.statusCode >= 300) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
  return res.json();
}

async function measure(label: string, n: number, fn: (i: number) => Promise<void>) {
  const cpu = process.cpuUsage();
  const wall = performance.now();
  for (let i = 0; i < n; i += 1) await fn(i);
  const used = process.cpuUsage(cpu);
  const ms = (used.user + used.system) / 1000 / n;
  console.log(
    `${label.padEnd(44)} ${ms.toFixed(1).padStart(8)} ms CPU/op ${((performance.now() - wall) / n).toFixed(1).padStart(8)} ms wall/op`,
  );
}

async function seed(tiers: string): Promise<{ server: TestServer; admin2: string }> {
  const server = await testServer("pglite", { env: { STINT_FOUR_EYES_TIERS: tiers } });
  for (let u = 0; u < USERS; u += 1) await post(server, server.adminAuth, "/v1/users", { name: `u${u}` });
  // Users the rounds make eligible (never in the seeded file).
  for (let x = 0; x < 2 * ROUNDS + 1; x += 1) await post(server, server.adminAuth, "/v1/users", { name: `x${x}` });
  await post(server, server.adminAuth, "/v1/config/apply", { yaml: catalogFile([]) });
  const admin2 = await server.userWithRoles("admin2", ["admin"]);
  return { server, admin2 };
}

console.log(`catalog: ${ROLES} roles, ${USERS} users × ${PER} eligibility; ${ROUNDS} rounds; PGlite`);
{
  const { server } = await seed("none");
  let text = catalogFile([]);
  await measure("apply one critical eligibility (four-eyes off)", ROUNDS, async (i) => {
    text = `${text}  - role: role-${(2 * i + 1) % ROLES}\n    users: [x${i}]\n`;
    const result = await post(server, server.adminAuth, "/v1/config/apply", { yaml: text });
    if (!result.applied) throw new Error("not applied");
  });
  await server.cleanup();
}
{
  const { server, admin2 } = await seed("high,critical");
  let text = catalogFile([]);
  await measure("apply held, then a second admin approves", ROUNDS, async (i) => {
    // Each round's file builds on the last one approved (so it is never stale).
    const next = `${text}  - role: role-${(2 * i + 1) % ROLES}\n    users: [x${i}]\n`;
    const result = await post(server, server.adminAuth, "/v1/config/apply", { yaml: next });
    if (!result.changeRequest) throw new Error("not held");
    text = next;
    await post(server, admin2, `/v1/change-requests/${result.changeRequest.id}/approve`, {});
  });
  // Holds alone: ROUNDS files against the same catalog; then one is approved and the rest are stale.
  const held: string[] = [];
  await measure("apply held as a change request", ROUNDS, async (i) => {
    const next = `${text}  - role: role-${(2 * i + 3) % ROLES}\n    users: [x${ROUNDS + i}]\n`;
    held.push((await post(server, server.adminAuth, "/v1/config/apply", { yaml: next })).changeRequest.id);
  });
  await measure("approve (re-plan, fingerprint, apply)", 1, async () => {
    await post(server, admin2, `/v1/change-requests/${held[0]}/approve`, {});
  });
  let stale = 0;
  await measure("approve refused as stale (re-plan, fingerprint)", held.length - 1, async (i) => {
    const res = await server.app.inject({
      method: "POST",
      url: `/v1/change-requests/${held[i + 1]}/approve`,
      headers: { authorization: admin2 },
      payload: {},
    });
    if (res.json().error?.code === "CHANGE_REQUEST_STALE") stale += 1;
  });
  console.log(`stale refusals: ${stale}/${held.length - 1}`);

  // The pure part on the loaded catalog.
  const exported = (
    await server.app.inject({ method: "GET", url: "/v1/config/export", headers: { authorization: admin2 } })
  ).json().yaml as string;
  const parsed = parseConfig(exported);
  const strip = <T extends object>(items: T[] | undefined) =>
    (items ?? []).map((item) => {
      const { at: _a, refsAt: _r, ...rest } = item as T & { at?: unknown; refsAt?: unknown };
      return rest as T;
    });
  const state: CatalogState = {
    groups: strip(parsed.desired.groups),
    policies: strip(parsed.desired.policies),
    targets: strip(parsed.desired.targets),
    roles: strip(parsed.desired.roles),
    eligibility: strip(parsed.desired.eligibility).map((e) => ({
      ...e,
      from: e.from ?? "2026-01-01T00:00:00.000Z",
      fromChosen: false,
    })),
  };
  const desired = parseConfig(`${exported}  - role: role-1\n    users: [x0]\n`).desired;
  const plan = planConfig(state, desired);
  await measure(`assessPlan + catalogFingerprint (${state.eligibility.length} eligibility)`, 50, async () => {
    assessPlan(state, desired, plan.changes, ["high", "critical"]);
    catalogFingerprint(state);
  });
  await server.cleanup();
}
