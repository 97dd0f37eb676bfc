/**
 * `stint server`: read the configuration, open the store, start listening and
 * the workers, and tell the operator how to sign in the first time.
 */
import { readFile, writeFile, stat } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { mkdir } from "node:fs/promises";
import { loadConfig } from "./config/config.js";
import { createLogger } from "./lib/logger.js";
import { createServer } from "./server.js";
import { MasterKeyMismatchError } from "./modules/keys/keys.service.js";

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

export async function runServer(options: { configFile?: string | undefined } = {}): Promise<void> {
  const result = loadConfig(process.env, options.configFile);
  if (!result.ok) {
    for (const problem of result.problems) process.stderr.write(`stint: configuration: ${problem}\n`);
    process.exit(2);
  }
  const config = result.config;
  const logger = createLogger({ level: config.logLevel });

  let server: Awaited<ReturnType<typeof createServer>>;
  try {
    const master = await loadOrCreateMasterKey(config.masterKeyFile);
    if (master.created)
      logger.warn(
        { file: config.masterKeyFile },
        "created a new master key: back it up, it protects every secret in Stint",
      );
    server = await createServer({ config, logger, masterKey: master.key });
  } catch (error) {
    const message =
      error instanceof StartupError || error instanceof MasterKeyMismatchError
        ? error.message
        : `could not start: ${(error as Error).message}`;
    process.stderr.write(`stint: ${message}\n`);
    process.exit(error instanceof StartupError ? 2 : 1);
  }

  const boot = await server.bootstrap();
  const [host, port] = [
    config.listen.slice(0, config.listen.lastIndexOf(":")).replace(/^\[|\]$/g, ""),
    Number(config.listen.slice(config.listen.lastIndexOf(":") + 1)),
  ];
  await server.app.listen({ host, port });
  const url = `http://${config.listen}`;
  server.outbox.start();

  const lines = [
    `Stint is listening on ${url} (${config.databaseUrl ? "PostgreSQL" : `embedded database in ${path.resolve(config.dataDir)}`})`,
  ];
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
    await server.close().catch((error: unknown) => logger.error({ err: error }, "shutdown failed"));
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}
