/**
 * SSRF through target and webhook addresses (issue 12 regression class; cf. the cloud-metadata SSRFs of
 * Grafana CVE-2020-13379 and GitLab CVE-2021-22214). A `security` user defines targets, and an operator
 * defines notification webhooks; Stint then connects there from inside the network, where the cloud
 * metadata service hands out the host's credentials. Addresses in cloud metadata, link-local,
 * unspecified and similar ranges are refused in every spelling, at apply time (literal addresses) and at
 * connect time (what a name resolves to then), unless STINT_ALLOW_NETWORKS allows them. Loopback stays
 * usable by default (targets beside Stint; these tests themselves) and STINT_DENY_NETWORKS removes it.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/config.js";
import { startWebhookEndpoint, type WebhookEndpoint } from "../../src/testing/webhook-endpoint.js";
import { testServer, type TestServer } from "../../src/testing/server.js";
import { actAs, seedRole, seedUser } from "../../src/testing/pim.js";

const SIGNING_SECRET = "signing-secret-for-the-ssrf-tests-0123456789";
const work = mkdtempSync(path.join(tmpdir(), "stint-ssrf-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let server: TestServer | undefined;
let endpoint: WebhookEndpoint | undefined;
afterEach(async () => {
  await server?.cleanup();
  await endpoint?.close();
  server = endpoint = undefined;
});

async function asSecurity(s: TestServer) {
  const auth = await s.userWithRoles(`sec-${Math.random().toString(36).slice(2, 8)}`, ["security"]);
  return async (method: "GET" | "POST" | "PUT", url: string, payload?: object) => {
    const res = await s.app.inject({ method, url, headers: { authorization: auth }, ...(payload ? { payload } : {}) });
    return { status: res.statusCode, body: res.json<Record<string, unknown>>() };
  };
}

const METADATA_SPELLINGS: [kind: string, address: string][] = [
  ["webhook", "https://169.254.169.254/latest/meta-data/iam/security-credentials/"],
  ["webhook", "https://[fd00:ec2::254]/latest/meta-data/"],
  ["webhook", "https://2852039166/latest/meta-data/"], // decimal
  ["webhook", "https://0xa9fea9fe/latest/meta-data/"], // hex
  ["webhook", "https://0251.0376.0251.0376/"], // octal
  ["webhook", "https://[::ffff:169.254.169.254]/"], // IPv4-mapped IPv6
  ["webhook", "https://[::ffff:a9fe:a9fe]/"],
  ["webhook", "https://169.254.1.1/"], // link-local
  ["webhook", "https://[fe80::1]/"],
  ["webhook", "https://0.0.0.0:8443/"], // reaches the local host on Linux
  ["webhook", "https://100.100.100.200/"], // Alibaba Cloud's metadata
  ["postgres", "postgres://admin@169.254.169.254:5432/app"],
  ["postgres", "postgres://admin@0xa9fea9fe:5432/app"], // non-special scheme: the URL parser does not normalize it
  ["postgres", "postgres://admin@2852039166:5432/app"],
  ["mysql", "mysql://root@[::ffff:169.254.169.254]:3306"],
  ["mysql", "mysql://root@0.0.0.0:3306"],
  ["ldap", "ldap://0251.0376.0251.0376:389"],
];

describe("SSRF through target and webhook addresses", () => {
  it("refuses targets at the cloud metadata service, link-local and 0.0.0.0 in every spelling; nothing is stored", async () => {
    server = await testServer("pglite");
    const security = await asSecurity(server);
    for (const [i, [kind, address]] of METADATA_SPELLINGS.entries()) {
      const name = `evil-${i}`;
      const res = await security("POST", "/v1/targets", {
        name,
        kind,
        address,
        credential: { secret: `targets/${name}/admin` },
      });
      expect(res.status, `${kind} ${address}: ${JSON.stringify(res.body)}`).toBe(400);
      expect(JSON.stringify(res.body), address).toMatch(/STINT_ALLOW_NETWORKS/);
      expect((await security("GET", `/v1/targets/${name}`)).status).toBe(404);
    }
    // The same through `stint apply`.
    const applied = await security("POST", "/v1/config/apply", {
      yaml: `apiVersion: stint/v1\ntargets:\n  - name: evil-yaml\n    kind: postgres\n    address: postgres://admin@[::ffff:a9fe:a9fe]:5432/app\n`,
    });
    expect(applied.status).toBe(400);
    expect((await security("GET", "/v1/targets/evil-yaml")).status).toBe(404);
    // Loopback and private addresses remain usable (the documented default).
    for (const [name, address] of [
      ["local-db", "postgres://admin@127.0.0.1:5432/app"],
      ["lan-db", "postgres://admin@10.20.30.40:5432/app"],
    ]) {
      const ok = await security("POST", "/v1/targets", { name, kind: "postgres", address });
      expect(ok.status, JSON.stringify(ok.body)).toBe(201);
    }
  });

  it("admits a blocked address only when STINT_ALLOW_NETWORKS lists it", async () => {
    server = await testServer("pglite", { env: { STINT_ALLOW_NETWORKS: "169.254.169.254/32" } });
    const security = await asSecurity(server);
    const allowed = await security("POST", "/v1/targets", {
      name: "imds-on-purpose",
      kind: "webhook",
      address: "https://169.254.169.254/hook",
      credential: { secret: "targets/imds-on-purpose/signing" },
    });
    expect(allowed.status, JSON.stringify(allowed.body)).toBe(201);
    const stillRefused = await security("POST", "/v1/targets", {
      name: "other-link-local",
      kind: "webhook",
      address: "https://169.254.1.1/hook",
      credential: { secret: "targets/other-link-local/signing" },
    });
    expect(stillRefused.status).toBe(400);
  });

  it("judges what a name resolves to when connecting (localhost under STINT_DENY_NETWORKS=127.0.0.0/8,::1)", async () => {
    endpoint = await startWebhookEndpoint(SIGNING_SECRET);
    const byName = endpoint.url.replace("127.0.0.1", "localhost");
    const define = async (s: TestServer) => {
      const security = await asSecurity(s);
      const created = await security("POST", "/v1/targets", {
        name: "hooks",
        kind: "webhook",
        address: byName,
        credential: { secret: "targets/hooks/signing" },
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      const admin = async (method: "PUT" | "POST", url: string, payload?: object) =>
        (
          await s.app.inject({
            method,
            url,
            headers: { authorization: s.adminAuth },
            ...(payload ? { payload } : {}),
          })
        ).json<Record<string, unknown>>();
      await admin("PUT", "/v1/targets/hooks/credential", { secret: SIGNING_SECRET });
      return admin("POST", "/v1/targets/hooks/test");
    };

    // Control: by default the name (loopback) is fine and the endpoint is called.
    server = await testServer("pglite");
    expect(await define(server)).toMatchObject({ ok: true });
    const callsByDefault = endpoint.calls.length;
    expect(callsByDefault).toBeGreaterThan(0);
    await server.cleanup();

    // A name is not an IP address, so apply time lets it through; connect time resolves it and refuses.
    server = await testServer("pglite", { env: { STINT_DENY_NETWORKS: "127.0.0.0/8,::1" } });
    const refused = await define(server);
    expect(refused).toMatchObject({ ok: false });
    expect(String(refused.detail)).toMatch(/localhost resolves to (127\.0\.0\.1|::1) is in STINT_DENY_NETWORKS/);
    expect(endpoint.calls.length).toBe(callsByDefault);
  });

  it("refuses notification webhooks at blocked addresses: at start for literal ones, at delivery for names", async () => {
    const literal = path.join(work, "literal.yaml");
    writeFileSync(
      literal,
      `notifications:\n  channels:\n    - { name: ops, kind: webhook, url: "http://[::ffff:169.254.169.254]/hook", secret: "${SIGNING_SECRET}" }\n`,
    );
    const parsed = loadConfig({ STINT_CONFIG_FILE: literal });
    expect(parsed.ok).toBe(false);
    expect(parsed.ok ? [] : parsed.problems).toEqual([
      expect.stringMatching(/notifications\.channels\.0\.url: .*cloud metadata service/),
    ]);

    const received: string[] = [];
    const receiver: Server = createServer((req, res) => {
      req.resume();
      received.push(req.url ?? "");
      res.end("ok");
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    try {
      const port = (receiver.address() as { port: number }).port;
      const byName = path.join(work, "by-name.yaml");
      writeFileSync(
        byName,
        `notifications:\n  channels:\n    - { name: ops, kind: webhook, url: "http://localhost:${port}/hook", secret: "${SIGNING_SECRET}" }\n`,
      );
      server = await testServer("pglite", {
        env: { STINT_CONFIG_FILE: byName, STINT_DENY_NETWORKS: "127.0.0.0/8,::1" },
      });
      await seedUser(server, "carol");
      await seedUser(server, "alice", { manager: "carol" });
      await seedRole(server, {
        name: "db",
        policy: {
          mfa: { required: false, maxAge: "10m" },
          justification: { minLength: 5 },
          approval: { stages: [{ approvers: { manager: true }, count: 1 }] },
        },
        eligibleUsers: ["alice"],
      });
      const submitted = await actAs(server, "alice")("POST", "/v1/activation-requests", {
        role: "db",
        reason: "read the replica lag",
      });
      expect(submitted.status).toBe(201);
      await server.outbox.runOnce();
      await new Promise((r) => setTimeout(r, 200));
      expect(received).toEqual([]);
      const job = await server.store.db
        .selectFrom("outbox")
        .select(["kind", "status", "last_error"])
        .where("kind", "=", "notify.deliver")
        .executeTakeFirstOrThrow();
      expect(job.last_error).toMatch(/refused by the address policy: localhost resolves to/);
    } finally {
      await new Promise((r) => receiver.close(r));
    }
  });
});
