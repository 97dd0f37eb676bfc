/**
 * A borrowed login's sessions at its target (security review, finding 49).
 *
 * An exclusive secret that is a login's password at a target, checked out with `rotateOnCheckin`: at the
 * check-in Stint sets a new password there and proves it, since the borrower saw the old one. The borrower's
 * connection opened with the old password went on working after the check-in (a password change ends no
 * session), for as long as they kept it open: the rotation cut nothing. Now the rotation of an exclusive or
 * break-glass secret (a person's credential) also ends the login's sessions at the target (the target's
 * `terminateSessions`, on by default). An application's login (a secret neither exclusive nor break-glass)
 * keeps its connections through a scheduled rotation.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPostgres, type PostgresInstance } from "../../src/testing/postgres-instance.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

let instance: PostgresInstance;
let server: TestServer;
const clients: pg.Client[] = [];

type Reply = { status: number; body: Record<string, unknown> & { error?: { code: string } } };

async function call(method: "GET" | "POST" | "PUT", url: string, payload?: object): Promise<Reply> {
  const res = await server.app.inject({
    method,
    url,
    headers: { authorization: server.adminAuth },
    ...(payload ? { payload } : {}),
  });
  return { status: res.statusCode, body: res.body ? (res.json() as Reply["body"]) : {} };
}

const url = (path: string) => `/v1/secrets/${encodeURIComponent(path)}`;

async function asRoot(statement: string): Promise<void> {
  const client = new pg.Client({
    host: "127.0.0.1",
    port: instance.port,
    user: "postgres",
    password: instance.adminPassword,
    database: "postgres",
  });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

/** A session at the target as `login`, kept open, as a borrower's psql would be. */
async function connectAs(login: string, password: string): Promise<pg.Client> {
  const client = new pg.Client({ host: "127.0.0.1", port: instance.port, user: login, password, database: "postgres" });
  client.on("error", () => undefined); // a terminated session reports here too
  await client.connect();
  clients.push(client);
  return client;
}

const alive = (client: pg.Client) =>
  client.query("select 1").then(
    () => true,
    () => false,
  );

/** A login at the target and the secret that is its password, with the given check-out policy. */
async function loginSecret(path: string, checkout?: object): Promise<{ login: string; original: string }> {
  const login = `dba_${randomBytes(3).toString("hex")}`;
  const original = `orig-${randomBytes(10).toString("hex")}`;
  await asRoot(`create role ${login} login password '${original}'`);
  const put = await call("PUT", url(path), {
    kind: "password",
    value: original,
    platformRoles: ["admin"],
    rotation: { target: "scratch-db", login },
    ...(checkout ? { checkout } : {}),
  });
  expect(put.status, JSON.stringify(put.body)).toBe(200);
  return { login, original };
}

beforeAll(async () => {
  [instance, server] = await Promise.all([startPostgres(), testServer("pglite")]);
  const applied = await call("POST", "/v1/config/apply", {
    yaml: `apiVersion: stint/v1
targets:
  - name: scratch-db
    kind: postgres
    address: ${instance.url}?sslmode=disable
    credential: { secret: targets/scratch-db/admin }
`,
  });
  expect(applied.status, JSON.stringify(applied.body)).toBe(200);
  const set = await call("PUT", "/v1/targets/scratch-db/credential", { secret: instance.adminPassword });
  expect(set.status, JSON.stringify(set.body)).toBe(200);
}, 120_000);

afterAll(async () => {
  for (const client of clients) await client.end().catch(() => undefined);
  await server?.cleanup();
  await instance?.stop();
});

describe("a rotation after a borrower saw the password ends the borrower's sessions", () => {
  it("the check-in's rotation ends the session the borrower opened with the old password", async () => {
    const path = "dba/nightly";
    const { login } = await loginSecret(path, { exclusive: true, maxDuration: "1h", rotateOnCheckin: true });
    const taken = await call("POST", `${url(path)}/checkout`, { reason: "repair the nightly load" });
    expect(taken.status, JSON.stringify(taken.body)).toBe(200);
    const session = await connectAs(login, String(taken.body.value));
    expect(await alive(session)).toBe(true);

    const checkin = await call("POST", `${url(path)}/checkin`);
    expect(checkin.body, JSON.stringify(checkin.body)).toMatchObject({ rotated: true });

    expect(await alive(session)).toBe(false);
  });

  it("an application's login keeps its connections through a rotation", async () => {
    const path = "apps/billing";
    const { login, original } = await loginSecret(path);
    const pool = await connectAs(login, original);
    const rotated = await call("POST", `${url(path)}/rotate`);
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(200);
    expect(await alive(pool)).toBe(true);
  });
});
