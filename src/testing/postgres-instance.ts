/**
 * Test support: a throwaway PostgreSQL 15 cluster that checks passwords (scram-sha-256 for TCP),
 * unlike the machine's server at 127.0.0.1:5432, which trusts every local connection. It lives in a
 * temp dir owned by the `postgres` OS user, listens on 127.0.0.1 at a free high port, and its
 * socket is in the temp dir. Needs Debian's postgresql-15 (/usr/lib/postgresql/15/bin) and root.
 *
 *   const instance = await startPostgres();   // instance.url: postgres://postgres@127.0.0.1:<port>/postgres
 *   new pg.Client({ host: "127.0.0.1", port: instance.port, user: "postgres", password: instance.adminPassword })
 *   (not { connectionString, password }: node-postgres lets the URL's empty password win)
 *   await asSuperuser(instance, (c) => c.query(`create role …`)); await signsIn(instance, login, password);
 *   await instance.restart({ downMs: 3000 }); // stopped, down 3 s, started again on the same port and data
 *   await instance.stop();                    // stops the server and removes the dir
 *
 * With `{ tls: true }` the cluster has a server certificate from a CA made for it (instance.tls.ca,
 * for 127.0.0.1 and localhost), `ssl=on`, and pg_hba accepts TCP only over TLS (`hostssl …
 * scram-sha-256`); it also listens on 127.0.0.2, a name its certificate does not carry.
 * `createTestCa()` makes more CAs (an untrusted one, say); both need the `openssl` command.
 */
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { superviseChild } from "./child-server.js";
import { chown, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { freePort } from "./ports.js";

const run = promisify(execFile);
const BIN = process.env.STINT_TEST_PG_BIN ?? "/usr/lib/postgresql/15/bin";

export interface PostgresInstance {
  /** `postgres://postgres@127.0.0.1:<port>/postgres`; the password is `adminPassword`, never in the URL. */
  url: string;
  port: number;
  /** The `postgres` superuser's password, random per instance. */
  adminPassword: string;
  /** With `tls`: the PEM of the CA that issued the server certificate. */
  tls?: { ca: string };
  /**
   * Stops the server (fast shutdown: open sessions are ended), waits `downMs` with nothing listening
   * on the port, and starts it again on the same port and data directory; resolves once it answers.
   */
  restart(options?: { downMs?: number }): Promise<void>;
  /** Stops the server (fast shutdown: open sessions are ended) and removes its directory. */
  stop(): Promise<void>;
}

export interface TestCa {
  /** PEM certificate of the CA. */
  cert: string;
  /** Issues a certificate for `names` (DNS names or IP addresses): PEM cert and key. */
  issue(names: string[]): Promise<{ cert: string; key: string }>;
}

/** A throwaway certificate authority (EC P-256), made with the openssl command in a temp dir. */
export async function createTestCa(commonName = "Stint test CA"): Promise<TestCa> {
  const dir = await mkdtemp(join(tmpdir(), "stint-ca-"));
  try {
    const key = join(dir, "ca.key");
    const cert = join(dir, "ca.crt");
    await run("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key]);
    await run("openssl", [
      ...["req", "-x509", "-new", "-key", key, "-out", cert, "-days", "2", "-subj", `/CN=${commonName}`],
      ...["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
    ]);
    const caKey = await readFile(key, "utf8");
    const caCert = await readFile(cert, "utf8");
    return {
      cert: caCert,
      async issue(names) {
        const work = await mkdtemp(join(tmpdir(), "stint-cert-"));
        try {
          const files = { caKey: join(work, "ca.key"), caCert: join(work, "ca.crt"), key: join(work, "server.key") };
          await writeFile(files.caKey, caKey, { mode: 0o600 });
          await writeFile(files.caCert, caCert);
          const csr = join(work, "server.csr");
          const out = join(work, "server.crt");
          const ext = join(work, "ext.cnf");
          const san = names.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(",");
          await writeFile(ext, `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
          await run("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", files.key]);
          await run("openssl", ["req", "-new", "-key", files.key, "-out", csr, "-subj", `/CN=${names[0] ?? "server"}`]);
          await run("openssl", [
            ...["x509", "-req", "-in", csr, "-CA", files.caCert, "-CAkey", files.caKey, "-CAcreateserial"],
            ...["-out", out, "-days", "2", "-sha256", "-extfile", ext],
          ]);
          return { cert: await readFile(out, "utf8"), key: await readFile(files.key, "utf8") };
        } finally {
          await rm(work, { recursive: true, force: true });
        }
      },
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const [uid, gid] = await Promise.all([run("id", ["-u", "postgres"]), run("id", ["-g", "postgres"])]);
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

export async function startPostgres(options: { tls?: boolean } = {}): Promise<PostgresInstance> {
  const user = await postgresUser();
  const dir = await mkdtemp(join(tmpdir(), "stint-pg-"));
  try {
    await chown(dir, user.uid, user.gid);
    const data = join(dir, "data");
    const adminPassword = randomBytes(12).toString("hex");
    const pwfile = join(dir, "pwfile");
    await writeFile(pwfile, `${adminPassword}\n`, { mode: 0o600 });
    await chown(pwfile, user.uid, user.gid);
    // Spawned with the postgres uid/gid (as `runuser -u postgres` would), so the child is the server itself.
    await run(
      join(BIN, "initdb"),
      [
        "-D",
        data,
        "-U",
        "postgres",
        `--pwfile=${pwfile}`,
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
      ],
      { uid: user.uid, gid: user.gid, cwd: dir, timeout: 60_000 },
    );
    await rm(pwfile);
    let tls: { ca: string } | undefined;
    const tlsSettings: string[] = [];
    if (options.tls) {
      const ca = await createTestCa("Stint test cluster CA");
      const issued = await ca.issue(["127.0.0.1", "localhost"]);
      const certFile = join(dir, "server.crt");
      const keyFile = join(dir, "server.key");
      await writeFile(certFile, issued.cert);
      await writeFile(keyFile, issued.key, { mode: 0o600 });
      await chown(certFile, user.uid, user.gid);
      await chown(keyFile, user.uid, user.gid);
      // TCP only over TLS, passwords only by SCRAM: what a production cluster should look like.
      await writeFile(join(data, "pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.0/8 scram-sha-256\n");
      tlsSettings.push("-c", "ssl=on", "-c", `ssl_cert_file=${certFile}`, "-c", `ssl_key_file=${keyFile}`);
      tls = { ca: ca.cert };
    }

    const listen = options.tls ? "127.0.0.1,127.0.0.2" : "127.0.0.1";
    const launch = (port: number) => {
      const child = spawn(
        join(BIN, "postgres"),
        [
          ...["-D", data, "-p", String(port), "-k", dir, "-c", `listen_addresses=${listen}`],
          ...["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
          ...["-c", "password_encryption=scram-sha-256", ...tlsSettings],
        ],
        { uid: user.uid, gid: user.gid, cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
      );
      // SIGINT is PostgreSQL's fast shutdown.
      return superviseChild(child, { dir, signal: "SIGINT", graceMs: 10_000 });
    };

    // A port can be taken between freePort() and the server's bind; try a few.
    for (let attempt = 1; ; attempt += 1) {
      const port = await freePort();
      let server = launch(port);
      const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
      try {
        await waitForConnection(port, adminPassword, server.running, 30_000, tls?.ca);
      } catch (error) {
        await server.stop();
        if (attempt < 3 && /could not bind|already in use/i.test(server.log())) continue;
        throw new Error(`postgres did not start: ${(error as Error).message}\n${server.log()}`);
      }
      return {
        url,
        port,
        adminPassword,
        ...(tls ? { tls } : {}),
        restart: async ({ downMs = 0 } = {}) => {
          await server.stop();
          await new Promise((resolve) => setTimeout(resolve, downMs));
          // The port was ours a moment ago; a client of the old server in TIME_WAIT does not hold it.
          server = launch(port);
          try {
            await waitForConnection(port, adminPassword, server.running, 30_000, tls?.ca);
          } catch (error) {
            throw new Error(`postgres did not restart: ${(error as Error).message}\n${server.log()}`);
          }
        },
        stop: async () => {
          await server.stop();
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/** Runs `work` with a client connected to `instance` as its `postgres` superuser; the client is ended after. */
export async function asSuperuser<T>(instance: PostgresInstance, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ ...clientOf(instance), user: "postgres", password: instance.adminPassword });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** Whether `login` signs in to `instance` with `password` (the cluster checks passwords). */
export async function signsIn(instance: PostgresInstance, login: string, password: string): Promise<boolean> {
  const client = new pg.Client({ ...clientOf(instance), user: login, password });
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Where a client of `instance` connects (over TLS when the cluster has it), not as whom. */
function clientOf(instance: PostgresInstance): pg.ClientConfig {
  return {
    host: "127.0.0.1",
    port: instance.port,
    database: "postgres",
    ...(instance.tls ? { ssl: { ca: instance.tls.ca } } : {}),
  };
}

async function waitForConnection(
  port: number,
  password: string,
  running: () => boolean,
  ms: number,
  ca?: string,
): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (!running()) throw new Error("the server exited");
    const client = new pg.Client({
      host: "127.0.0.1",
      port,
      user: "postgres",
      database: "postgres",
      password,
      connectionTimeoutMillis: 2_000,
      ...(ca ? { ssl: { ca } } : {}),
    });
    client.on("error", () => {});
    try {
      await client.connect();
      await client.query("SELECT 1");
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
    } finally {
      await client.end().catch(() => {});
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
