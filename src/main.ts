/**
 * `stint server`: read the configuration, open the store, start listening and
 * the workers, and tell the operator how to sign in the first time.
 */
import { readFile, writeFile, stat } from "node:fs/promises";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { mkdir } from "node:fs/promises";
import { loadConfig } from "./config/config.js";
import { createLogger } from "./lib/logger.js";

export class StartupError extends Error {}

/** Reads the 32-byte master key (base64), creating it with mode 0600 when absent. */
export async function loadOrCreateMasterKey(file: string): Promise<{ key: Buffer; created: boolean }> {
  try {
    const text = (await readFile(file, "utf8")).trim();
    const key = Buffer.from(text, "base64");
    if (key.length !== 32 || key.toString("base64") !== text) {
      throw new StartupError(`${file}: not a master key (expected 32 bytes in base64)`);
    }
    const mode = (await stat(file)).mode & 0o777;
    if (mode & 0o077)
      throw new StartupError(`${file}: readable by others (mode ${mode.toString(8)}); run chmod 600 ${file}`);
    return { key, created: false };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const key = randomBytes(32);
  await writeFile(file, `${key.toString("base64")}\n`, { mode: 0o600, flag: "wx" });
  return { key, created: true };
}

/**
 * While the database opens and migrates (seconds on a first embedded start), the
 * port already answers: /healthz says the process is alive, /readyz and every
 * other route say 503 UNAVAILABLE. It also fails fast when the port is taken.
 */
function listenWhileStarting(host: string, port: number): Promise<HttpServer> {
  const server = createHttpServer((req, res) => {
    const alive = req.url === "/healthz";
    const body = alive
      ? { status: "ok" }
      : req.url === "/readyz"
        ? { status: "not_ready", checks: { database: false, migrations: false, disk: true } }
        : { error: { code: "UNAVAILABLE", message: "Stint is starting: the database is being opened and migrated." } };
    res.writeHead(alive ? 200 : 503, {
      "content-type": "application/json",
      "cache-control": "no-store",
      "retry-after": "1",
    });
    res.end(JSON.stringify(body));
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port }, () => resolve(server));
  });
}

function closeHttp(server: HttpServer): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

export async function runServer(options: { configFile?: string | undefined } = {}): Promise<void> {
  const result = loadConfig(process.env, options.configFile);
  if (!result.ok) {
    for (const problem of result.problems) process.stderr.write(`stint: configuration: ${problem}\n`);
    process.exit(2);
  }
  const config = result.config;
  const logger = createLogger({ level: config.logLevel, format: config.logFormat });

  const host = config.listen.slice(0, config.listen.lastIndexOf(":")).replace(/^\[|\]$/g, "");
  const port = Number(config.listen.slice(config.listen.lastIndexOf(":") + 1));
  let starting: HttpServer;
  try {
    starting = await listenWhileStarting(host, port);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const hint =
      code === "EADDRINUSE"
        ? `the address is in use: another Stint server (or another program) may be running there. ` +
          `Stop it, or pick another port with STINT_LISTEN (e.g. STINT_LISTEN=${host.includes(":") ? `[${host}]` : host}:${port + 1}) ` +
          `or \`listen:\` in the configuration file`
        : code === "EACCES"
          ? `permission denied: ports below 1024 need privileges; pick another port with STINT_LISTEN`
          : (code ?? (error as Error).message);
    process.stderr.write(`stint: cannot listen on ${config.listen}: ${hint}\n`);
    process.exit(1);
  }

  // Loaded after the port is open: these modules take a while to import.
  const { createServer } = await import("./server.js");
  const { MasterKeyMismatchError } = await import("./modules/keys/keys.service.js");
  let server: Awaited<ReturnType<typeof createServer>>;
  try {
    const master = await loadOrCreateMasterKey(config.masterKeyFile);
    if (master.created)
      logger.warn(
        { file: config.masterKeyFile },
        "created a new master key: back it up, it protects every secret in Stint",
      );
    let vaultKey: Buffer;
    if (config.vaultKey) vaultKey = Buffer.from(config.vaultKey, "base64");
    else {
      const loaded = await loadOrCreateMasterKey(config.vaultKeyFile);
      if (loaded.created)
        logger.warn(
          { file: config.vaultKeyFile },
          "created a new vault key: back it up apart from the database, it opens every secret in the vault",
        );
      vaultKey = loaded.key;
    }
    server = await createServer({ config, logger, masterKey: master.key, vaultKey });
  } catch (error) {
    // A held or unwritable data directory is the operator's to settle, like a bad configuration.
    const operatorMustAct =
      error instanceof StartupError ||
      (error instanceof Error && (error.name === "DataDirLockedError" || error.name === "DataDirUnwritableError"));
    const message =
      operatorMustAct || error instanceof MasterKeyMismatchError
        ? (error as Error).message
        : `could not start: ${(error as Error).message}`;
    process.stderr.write(`stint: ${message}\n`);
    process.exit(operatorMustAct ? 2 : 1);
  }

  let boot: Awaited<ReturnType<typeof server.bootstrap>>;
  try {
    boot = await server.bootstrap();
  } catch (error) {
    // A bootstrap password the rules refuse: said plainly, nothing created, the operator fixes the setting.
    process.stderr.write(`stint: ${(error as Error).message}\n`);
    await server.close().catch(() => undefined);
    process.exit(2);
  }
  await server.app.ready();
  await closeHttp(starting);
  await server.app.listen({ host, port });
  const url = `http://${config.listen}`;
  server.outbox.start();
  server.scheduler.start();
  server.reviewsWorker.start();
  server.auditAnchor.start();
  await server.siem.start();
  await server.alerts.start();
  const { startProxies } = await import("./proxies/index.js");
  const { closeConnectorPools } = await import("./modules/connectors/index.js");
  let proxies: Awaited<ReturnType<typeof startProxies>>;
  try {
    proxies = await startProxies({
      config,
      sessions: server.sessions,
      logger,
      registry: server.registry,
      terminals: server.terminals,
    });
  } catch (error) {
    process.stderr.write(`stint: could not start a session proxy: ${(error as Error).message}\n`);
    await server.close().catch(() => undefined);
    process.exit(2);
  }

  const lines = [
    `Stint is listening on ${url} (${config.databaseUrl ? "PostgreSQL" : `embedded database in ${path.resolve(config.dataDir)}`})`,
  ];
  if (proxies.ssh || proxies.postgres || proxies.mysql)
    lines.push(
      `Session proxies: ${[
        proxies.ssh ? `SSH on ${proxies.ssh.host}:${proxies.ssh.port}` : null,
        proxies.postgres ? `PostgreSQL on ${proxies.postgres.host}:${proxies.postgres.port}` : null,
        proxies.mysql ? `MySQL on ${proxies.mysql.host}:${proxies.mysql.port}` : null,
      ]
        .filter(Boolean)
        .join(", ")}`,
    );
  if (boot.created)
    lines.push(
      `First administrator "${boot.created}" created from STINT_BOOTSTRAP_ADMIN_PASSWORD.`,
      `Sign in:  npx stint login --server ${url} --user ${boot.created}`,
    );
  if (boot.setupCode) {
    lines.push(
      "No administrator exists yet. Create the first one with this one-time setup code (valid 24 hours, replaced at each restart until used):",
      `  npx stint setup --server ${url} --code ${boot.setupCode} --user admin`,
    );
  }
  process.stdout.write(`\n${lines.join("\n")}\n\n`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    await proxies.close().catch((error: unknown) => logger.error({ err: error }, "closing the session proxies failed"));
    await server.close().catch((error: unknown) => logger.error({ err: error }, "shutdown failed"));
    // The targets see the pooled admin connections end cleanly rather than drop with the process.
    await closeConnectorPools().catch((error: unknown) =>
      logger.error({ err: error }, "closing the connectors' connections failed"),
    );
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}
