/**
 * Recordings readable without authorization (JumpServer CVE-2023-42442: session replays downloadable
 * by anyone) and live sessions listed without an admin check (Warpgate CVE-2026-63330). Over a real
 * socket: the session list (live or not), a session and its recording answer only admins and auditors;
 * to users, security and approvers, and to the unauthenticated, they answer exactly as for a session
 * that does not exist, so ids cannot be probed either; session ids are random UUIDs, not counters.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBlobStore } from "../../src/lib/blob-store.js";
import { newId } from "../../src/lib/ids.js";
import { testServer, type TestServer } from "../../src/testing/server.js";
import { actAs, seedRole, seedUser } from "../../src/testing/pim.js";

const RECORDING = '{"version":2,"width":80,"height":24}\n[0.1,"o","root@db:~# cat /etc/shadow\\r\\n"]\n';
let server: TestServer;
let url: string;
const auth: Record<string, string | undefined> = {};
const ids: { ended: string; live: string } = { ended: "", live: "" };

beforeAll(async () => {
  server = await testServer("pglite");
  url = await server.app.listen({ host: "127.0.0.1", port: 0 });
  // alice holds an active role; carol approves for it; the others hold platform roles.
  await seedUser(server, "carol");
  await seedUser(server, "alice", { manager: "carol" });
  const roleId = await seedRole(server, {
    name: "shell",
    policy: {
      mfa: { required: false, maxAge: "10m" },
      justification: { minLength: 5 },
      approval: { stages: [{ approvers: { manager: true }, count: 1 }] },
    },
    eligibleUsers: ["alice"],
  });
  const requestId = (
    await actAs(server, "alice")("POST", "/v1/activation-requests", { role: "shell", reason: "rotate the logs" })
  ).body.id as string;
  await actAs(server, "carol")("POST", `/v1/activation-requests/${requestId}/approvals`, {});
  // Two sessions of alice's, seeded as the proxies record them (setup; the proxies have their own tests).
  const blobs = createBlobStore(server.config.blobDir);
  const writer = await blobs.create(`recordings/test/${newId()}.cast`);
  writer.write(RECORDING);
  const blob = await writer.finish();
  const db = server.store.db;
  const principal = await db
    .selectFrom("principals")
    .select("id")
    .where("name", "=", "alice")
    .executeTakeFirstOrThrow();
  const target = await db.selectFrom("roles").select("target_id").where("id", "=", roleId).executeTakeFirstOrThrow();
  ids.ended = newId();
  ids.live = newId();
  const base = {
    kind: "ssh" as const,
    principal_id: principal.id,
    request_id: requestId,
    role_id: roleId,
    target_id: target.target_id,
    login: "alice",
    client_address: "127.0.0.1",
    node: "test-node",
  };
  await db
    .insertInto("sessions")
    .values([
      {
        ...base,
        id: ids.ended,
        started_at: new Date(Date.now() - 60_000),
        ended_at: new Date(),
        end_reason: "client",
        recording_key: blob.key,
        recording_sha256: blob.sha256,
        recording_bytes: blob.bytes,
      },
      { ...base, id: ids.live, started_at: new Date(), seen_at: new Date() },
    ])
    .execute();
  auth.anonymous = undefined;
  auth.requester = await server.login("alice");
  auth.approver = await server.login("carol");
  auth.user = await server.userWithRoles("rec-user", ["user"]);
  auth.security = await server.userWithRoles("rec-security", ["security"]);
  auth.auditor = await server.userWithRoles("rec-auditor", ["auditor"]);
  auth.admin = server.adminAuth;
});
afterAll(async () => server?.cleanup());

const get = (path: string, authorization: string | undefined) =>
  fetch(`${url}${path}`, { headers: authorization ? { authorization } : {} });

describe("recordings and live sessions (JumpServer CVE-2023-42442, Warpgate CVE-2026-63330)", () => {
  const paths = () => [
    "/v1/sessions",
    "/v1/sessions?live=true",
    `/v1/sessions/${ids.live}`,
    `/v1/sessions/${ids.ended}`,
    `/v1/sessions/${ids.ended}/recording`,
  ];

  it("refuses the unauthenticated: 401 everywhere, no recording bytes", async () => {
    for (const path of paths()) {
      const res = await get(path, undefined);
      expect(res.status, path).toBe(401);
      expect(await res.text()).not.toContain("/etc/shadow");
    }
  });

  it("refuses the requester herself, an approver, a plain user and security, as if nothing existed", async () => {
    for (const who of ["requester", "approver", "user", "security"]) {
      for (const path of paths()) {
        const res = await get(path, auth[who]);
        const body = await res.text();
        expect(res.status, `${who} ${path}`).toBe(404);
        expect(body, `${who} ${path}`).not.toContain("/etc/shadow");
      }
      // An existing id and a made-up one get the same answer: no probing for ids.
      const existing = await (await get(`/v1/sessions/${ids.ended}/recording`, auth[who])).json();
      const madeUp = newId();
      const missing = await (await get(`/v1/sessions/${madeUp}/recording`, auth[who])).json();
      expect(JSON.stringify(existing).replace(ids.ended, "ID")).toBe(JSON.stringify(missing).replace(madeUp, "ID"));
    }
  });

  it("lets admins and auditors list live sessions and replay a recording, and audits the replay", async () => {
    for (const who of ["admin", "auditor"]) {
      const live = await (await get("/v1/sessions?live=true", auth[who])).json();
      expect(
        (live as { items: { id: string }[] }).items.map((s) => s.id),
        who,
      ).toContain(ids.live);
      const recording = await get(`/v1/sessions/${ids.ended}/recording`, auth[who]);
      expect(recording.status, who).toBe(200);
      expect(await recording.text()).toBe(RECORDING);
    }
    const reads = await server.store.db
      .selectFrom("audit_events")
      .select("action")
      .where("action", "=", "session.recording_read")
      .execute();
    expect(reads).toHaveLength(2);
  });

  it("names sessions by random UUIDs, not counters", () => {
    for (const id of [ids.ended, ids.live])
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    // 74 random bits per UUIDv7: two ids made in the same millisecond differ far from the end.
    const [a, b] = [newId(), newId()];
    expect(a.slice(19)).not.toBe(b.slice(19));
  });
});
