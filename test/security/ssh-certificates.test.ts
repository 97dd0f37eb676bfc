/**
 * SSH certificates (issue 12, finding 5, and the class "certificate accepted as CA or with empty
 * principals"): a real Stint server with its CA, the real SSH proxy, real sshd hosts (one that the proxy
 * reaches, one that trusts Stint's CA directly with AuthorizedPrincipalsFile and RevokedKeys) and the
 * OpenSSH client. A certificate is good for the one target and the one activation it was issued for;
 * when that activation ends the proxy refuses it and the published KRL lists it.
 */
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliContext } from "../../src/cli/context.js";
import { runCli } from "../../src/cli/program.js";
import { deriveKey, open } from "../../src/lib/security.js";
import { generateCa } from "../../src/modules/sessions/ssh-ca.js";
import { createUser, deleteUser, startSshd, type Sshd } from "../../src/testing/sshd.js";
import { sshSessionsHarness, type SshSessionsHarness } from "../../src/testing/ssh-sessions.js";

const run = promisify(execFile);
let h: SshSessionsHarness;
let ann: string;
let hostB: Sshd;
let krlFile: string;
let caPublicKey: string;
let caPrivateKeyFile: string;
let apiUrl: string;

async function refreshKrl() {
  const res = await h.server.app.inject({ method: "GET", url: "/v1/ssh/krl" });
  expect(res.statusCode).toBe(200);
  expect(res.headers["content-type"]).toBe("application/octet-stream");
  writeFileSync(krlFile, res.rawPayload);
}

/** ssh straight to host B (no proxy), as root, with a certificate. */
function direct(key: string) {
  return h.sshDirect(key, hostB, "root", ["echo direct-ok"]);
}

async function revoke(requestId: string) {
  const res = await h.admin("POST", `/v1/activation-requests/${requestId}/revoke`, { reason: "access review: revoke" });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

async function liveSessionCount(): Promise<number> {
  return h.server.sessions.liveSessions();
}

/** The real CLI program against the server (listening on 127.0.0.1), with no credentials. */
async function stint(argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const stdin = new PassThrough();
  stdin.end("");
  const ctx: CliContext = {
    stdin,
    stdout: { write: (chunk) => out.push(String(chunk)) > 0 },
    stderr: { write: (chunk) => err.push(String(chunk)) > 0 },
    env: { STINT_CONFIG_DIR: join(h.dir, "cli"), HOME: join(h.dir, "cli"), STINT_SERVER: apiUrl, STINT_TOKEN: "" },
    fetch: globalThis.fetch,
    now: () => Date.now(),
    version: "0.0.0-test",
  };
  const code = await runCli(argv, ctx);
  return { code, stdout: out.join(""), stderr: err.join("") };
}

beforeAll(async () => {
  h = await sshSessionsHarness({ extraTargets: ["hostb"] });
  await h.server.app.listen({ port: 0, host: "127.0.0.1" });
  apiUrl = `http://127.0.0.1:${(h.server.app.server.address() as AddressInfo).port}`;
  ann = h.users[0]!;
  const info = (await h.server.app.inject({ method: "GET", url: "/v1/ssh/ca" })).json<{ caPublicKey: string }>();
  caPublicKey = info.caPublicKey;
  const caFile = join(h.dir, "stint-ca.pub");
  writeFileSync(caFile, `${caPublicKey}\n`, { mode: 0o644 });
  const principals = join(h.dir, "principals");
  writeFileSync(principals, `${ann}%hostb\n`, { mode: 0o644 });
  krlFile = join(h.dir, "stint.krl");
  await refreshKrl();
  hostB = await startSshd({
    extraConfig: [`TrustedUserCAKeys ${caFile}`, `AuthorizedPrincipalsFile ${principals}`, `RevokedKeys ${krlFile}`],
  });
  // The CA's private key as only Stint holds it (sealed with the master key): to forge what a broken CA would sign.
  const row = await h.server.store.db
    .selectFrom("ssh_keys")
    .selectAll()
    .where("purpose", "=", "user-ca")
    .executeTakeFirstOrThrow();
  caPrivateKeyFile = join(h.dir, "stint-ca");
  writeFileSync(
    caPrivateKeyFile,
    open(deriveKey(h.masterKey, "ssh-keys"), row.sealed_private_key, "ssh-key:user-ca").toString("utf8"),
    { mode: 0o600 },
  );
}, 120_000);

afterAll(async () => {
  await hostB?.stop();
  await h?.cleanup();
}, 60_000);

describe("SSH certificates are bound to a target and an activation, and revocable (finding 5)", () => {
  let webRequest: string;
  let hostbRequest: string;

  it("a certificate names its one target (principal user%target) and its activation (key id)", async () => {
    webRequest = await h.activate(ann, "web-shell");
    const cert = await h.certify(ann, "web-shell");
    expect(cert.principals).toEqual([`${ann}%web`]);
    expect(cert.keyId).toContain(webRequest);
    const { stdout } = await run("ssh-keygen", ["-L", "-f", `${cert.key}-cert.pub`]);
    expect(stdout).toMatch(new RegExp(`Principals:\\s*\\n\\s*${ann}%web\\s*\\n\\s*Critical`));
  }, 60_000);

  it("a certificate for one target is refused at another host that trusts the CA (sshd AuthorizedPrincipalsFile)", async () => {
    hostbRequest = await h.activate(ann, "hostb-shell");
    const forWeb = await h.certify(ann, "web-shell");
    const forHostB = await h.certify(ann, "hostb-shell");
    const refused = await direct(forWeb.key);
    expect(refused.code).toBe(255);
    expect(refused.stdout).not.toContain("direct-ok");
    expect(await direct(forHostB.key)).toMatchObject({ code: 0, stdout: "direct-ok\n" });
  }, 60_000);

  it("at the proxy, a certificate for one target does not open another target of the same user", async () => {
    const forWeb = await h.certify(ann, "web-shell");
    expect(await h.ssh(forWeb.key, `${ann}%web`, ["echo via-proxy"])).toMatchObject({ code: 0, stdout: "via-proxy\n" });
    const other = await h.ssh(forWeb.key, `${ann}%hostb`, ["echo via-proxy"]);
    expect(other.code).toBe(255);
    expect(other.stdout).toBe("");
  }, 60_000);

  it("a certificate of an ended activation is refused by the proxy, even while a newer activation is active", async () => {
    const old = await h.certify(ann, "web-shell");
    await revoke(webRequest);
    webRequest = await h.activate(ann, "web-shell");
    const refused = await h.ssh(old.key, `${ann}%web`, ["echo via-proxy"]);
    expect(refused.code).toBe(255);
    expect(refused.stderr).toContain("has ended");
    const fresh = await h.certify(ann, "web-shell");
    expect(await h.ssh(fresh.key, `${ann}%web`, ["echo via-proxy"])).toMatchObject({ code: 0, stdout: "via-proxy\n" });
  }, 60_000);

  it("revoked: the certificate is in the published KRL, and sshd with RevokedKeys refuses it", async () => {
    const cert = await h.certify(ann, "hostb-shell");
    expect(await direct(cert.key)).toMatchObject({ code: 0, stdout: "direct-ok\n" });
    await revoke(hostbRequest);
    // As a host's timer does it: `stint ssh krl -o FILE`, without any Stint sign-in.
    const written = await stint(["ssh", "krl", "-o", krlFile]);
    expect(written.code, written.stderr).toBe(0);
    const query = await run("ssh-keygen", ["-Q", "-f", krlFile, `${cert.key}-cert.pub`]).then(
      (r) => r.stdout,
      (e: { stdout: string }) => e.stdout,
    );
    expect(query).toContain("REVOKED");
    const refused = await direct(cert.key);
    expect(refused.code).toBe(255);
    expect(refused.stdout).not.toContain("direct-ok");
    // And the proxy refuses it too.
    expect((await h.ssh(cert.key, `${ann}%hostb`, ["true"])).code).toBe(255);
    // A certificate of a live activation is not in the list.
    const live = await h.certify(ann, "web-shell");
    const notRevoked = await run("ssh-keygen", ["-Q", "-f", krlFile, `${live.key}-cert.pub`]);
    expect(notRevoked.stdout).toContain("ok");
  }, 60_000);
});

describe("certificate accepted as CA or with empty principals (Teleport CVE-2025-49825, Vault CVE-2024-7594)", () => {
  let key: string;

  beforeAll(async () => {
    // A real activation, so that only the certificate can be the reason for a refusal.
    key = (await h.certify(ann, "web-shell")).key;
  });

  /** A certificate signed by `signer` with ssh-keygen's own options, for the key at `keyPath`. */
  async function forge(name: string, signer: string, keyPath: string, options: string[]) {
    const copy = join(h.dir, name);
    writeFileSync(copy, readFileSync(keyPath), { mode: 0o600 });
    writeFileSync(`${copy}.pub`, readFileSync(`${keyPath}.pub`), { mode: 0o644 });
    await run("ssh-keygen", [
      "-q",
      "-s",
      signer,
      "-I",
      `stint:${ann}:forged`,
      "-V",
      "-5m:+1h",
      ...options,
      `${copy}.pub`,
    ]);
    return copy;
  }

  async function refusedAtProxy(identity: string) {
    const before = await liveSessionCount();
    const result = await h.ssh(identity, `${ann}%web`, ["echo let-in"]);
    expect(result.code).toBe(255);
    expect(result.stdout).toBe("");
    expect(await liveSessionCount()).toBe(before);
  }

  it("a certificate with no principals (valid for anyone to sshd) is refused by the proxy", async () => {
    await refusedAtProxy(await forge("no-principals", caPrivateKeyFile, key, []));
  }, 60_000);

  it("a certificate whose certified key is the CA itself is refused by the proxy", async () => {
    const caPub = join(h.dir, "ca-as-user");
    writeFileSync(caPub, readFileSync(caPrivateKeyFile), { mode: 0o600 });
    writeFileSync(`${caPub}.pub`, `${caPublicKey}\n`);
    await refusedAtProxy(await forge("ca-key", caPrivateKeyFile, caPub, ["-n", `${ann}%web`]));
  }, 60_000);

  it("a host certificate is refused by the proxy", async () => {
    await refusedAtProxy(await forge("host-cert", caPrivateKeyFile, key, ["-h", "-n", `${ann}%web`]));
  }, 60_000);

  it("a certificate signed by another CA is refused by the proxy", async () => {
    const other = generateCa();
    const otherFile = join(h.dir, "other-ca");
    writeFileSync(otherFile, other.privateKey, { mode: 0o600 });
    await refusedAtProxy(await forge("other-ca", otherFile, key, ["-n", `${ann}%web`]));
  }, 60_000);

  it("a correctly signed certificate the API never issued is refused by the proxy", async () => {
    await refusedAtProxy(await forge("unissued", caPrivateKeyFile, key, ["-n", `${ann}%web`]));
  }, 60_000);

  it("the API certifies neither the CA's key, nor the proxy's host key, nor a certificate", async () => {
    const info = (await h.server.app.inject({ method: "GET", url: "/v1/ssh/ca" })).json<{
      proxy: { hostKey: string };
    }>();
    const certificate = readFileSync(`${key}-cert.pub`, "utf8").trim();
    for (const publicKey of [caPublicKey, info.proxy.hostKey, certificate]) {
      const res = await h.as(ann, "POST", "/v1/ssh/certificates", { publicKey, role: "web-shell" });
      expect(res.status, publicKey).toBe(400);
      expect(res.body).not.toHaveProperty("certificate");
    }
  }, 60_000);
});

describe("a session login per role (finding 5): a low-risk role does not get a critical role's upstream login", () => {
  const lowLogin = `stlow${Math.floor(Math.random() * 1e6)}`;

  beforeAll(async () => {
    await createUser(lowLogin, { sshLogin: true });
    const catalog = h.catalog
      .replace(
        "roles:\n",
        `roles:
  - name: web-read
    target: web
    entitlement: { group: ${h.group}, session: { login: ${lowLogin}, secret: targets/web/read-only } }
    policy: ssh-self
    risk: low
`,
      )
      .replace("eligibility:\n", `eligibility:\n  - role: web-read\n    users: [${ann}]\n`);
    const applied = await h.admin("POST", "/v1/config/apply", { yaml: catalog });
    expect(applied.status, JSON.stringify(applied.body)).toBe(200);
    const put = await h.admin("PUT", `/v1/secrets/${encodeURIComponent("targets/web/read-only")}`, {
      kind: "ssh-key",
      value: h.sshd.adminPrivateKey,
    });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
  }, 60_000);

  afterAll(async () => {
    await deleteUser(lowLogin);
  });

  it("a role's entitlement.session is checked at apply time", async () => {
    const bad = h.catalog.replace(
      "roles:\n",
      `roles:
  - name: web-bad
    target: web
    entitlement: { group: ${h.group}, session: { login: "bad login", secret: x } }
    policy: ssh-self
    risk: low
`,
    );
    const res = await h.admin("POST", "/v1/config/apply", { yaml: bad });
    expect(res.status).toBe(400);
    expect(JSON.stringify(res.body)).toContain("entitlement.session.login");
  });

  it("the low-risk role's sessions log in as its own login, the critical role's as the target's", async () => {
    // Until an admin allows the role's secret for the target, the vault does not release it.
    await h.activate(ann, "web-read");
    const cert = await h.certify(ann, "web-read");
    const before = await h.ssh(cert.key, `${ann}%web`, ["id -un"]);
    expect(before.code).toBe(255);
    const allowed = await h.admin("PUT", `/v1/secrets/${encodeURIComponent("targets/web/read-only")}/targets/web`);
    expect(allowed.status, JSON.stringify(allowed.body)).toBe(200);
    expect(await h.ssh(cert.key, `${ann}%web`, ["id -un"])).toMatchObject({ code: 0, stdout: `${lowLogin}\n` });

    // Active already when the whole file runs; activated here when this test runs alone.
    await h.activate(ann, "web-shell").catch(() => undefined);
    const critical = await h.certify(ann, "web-shell");
    expect(await h.ssh(critical.key, `${ann}%web`, ["id -un"])).toMatchObject({ code: 0, stdout: "root\n" });
  }, 60_000);
});
