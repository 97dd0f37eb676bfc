/**
 * `stint db creds ROLE`: the database login Stint minted for your active activation of a role
 * with `dynamic: true`. The password is printed only here (stdout), never logged by Stint.
 * `stint db login ROLE`: a token for Stint's PostgreSQL or MySQL proxy (you never see the database's own
 * credential), with the psql or mariadb command line that uses it (`--defaults-file` writes a MySQL option
 * file, mode 0600); `stint db proxy ROLE --port N`: a local tunnel (PostgreSQL) that asks local clients for a
 * password of its own, drawn per run (loopback is shared by every user of the machine), never the Stint token.
 */
import type { Command } from "commander";
import { dbCredentials } from "../../contract/grants.js";
import { dbToken } from "../../contract/sessions.js";
import { randomToken } from "../../lib/security.js";
import { createLocalTunnel } from "../../proxies/pg/local-tunnel.js";
import { segment } from "../client.js";
import { writePrivateFile } from "../credentials.js";
import { globalOptions, type CliContext } from "../context.js";
import { emit, note, terminalText, warn } from "../output.js";
import { CliError } from "../exit-codes.js";
import { checkName, clientFor, integerIn } from "./shared.js";

/** A value in a MySQL option file or on a shell command line, single-quoted. */
function quoted(value: string | number): string {
  return `'${String(value).replace(/'/g, "'\\''")}'`;
}

/** A MySQL option file's [client] group: what `mariadb --defaults-file=…` and `mysql` read. */
export function mysqlOptionFile(login: { host: string; port: number; user: string; password: string }): string {
  // Quoted, with the escapes option files know: a value can neither end early nor start another line.
  const value = (v: string | number) =>
    `"${String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n").replace(/\r/g, "\\r")}"`;
  return [
    "# Written by stint db login: a Stint database token, valid until your activation ends.",
    "[client]",
    `host=${value(login.host)}`,
    `port=${login.port}`,
    `user=${value(login.user)}`,
    `password=${value(login.password)}`,
    "",
  ].join("\n");
}

/** A libpq keyword/value string for psql ("host=… port=… user=… dbname=…"), values quoted as libpq wants. */
function conninfo(parts: Record<string, string | number>): string {
  return Object.entries(parts)
    .map(([key, value]) => `${key}='${String(value).replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`)
    .join(" ");
}

/**
 * What the tunnel checks the proxy against: the certificate the server names (its answer came over the
 * API's HTTPS). A server before that field names none: refused unless `--insecure-proxy` (the token would go
 * to whoever answers for the proxy's address); a proxy without TLS (null) sends the token in clear anyway.
 */
function proxyCertificate(ctx: CliContext, sha256: string | null | undefined, insecure: boolean): string | null {
  if (typeof sha256 === "string") return sha256;
  if (sha256 === null) {
    warn(
      ctx,
      "the Stint proxy has no TLS certificate (STINT_PG_PROXY_TLS_CERT): the token crosses the network in clear.",
    );
    return null;
  }
  if (!insecure)
    throw new CliError(
      "PROXY_UNVERIFIABLE",
      "The Stint server names no certificate for its PostgreSQL proxy (it predates the check), so the tunnel cannot tell the proxy from someone answering for it; upgrade the server, or pass --insecure-proxy to connect unchecked.",
    );
  warn(ctx, "--insecure-proxy: the Stint proxy's certificate is not checked; whoever answers for it gets the token.");
  return null;
}

export function registerDbCommands(program: Command, ctx: CliContext): void {
  const db = program.command("db").description("databases reached through Stint");
  db.command("creds")
    .description("the login minted for your active activation of a role with dynamic credentials")
    .argument("<role>", "the role you activated")
    .addHelpText(
      "after",
      "\nThe login exists until the activation ends; then it is dropped and its sessions end.\n" +
        '\nExamples:\n  stint db creds app-db-reader\n  eval "$(stint db creds app-db-reader --json | jq -r \'"export PGUSER=\\(.user) PGPASSWORD=\\(.password)"\')"\n',
    )
    .action(async (roleName: string, _options: unknown, command: Command) => {
      const { json } = globalOptions(command);
      const role = checkName("role", roleName);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("GET", `/v1/me/roles/${segment(role)}/credentials`, {
        schema: dbCredentials,
      });
      emit(ctx, json, raw, () =>
        [
          `host:     ${data.host}`,
          `port:     ${data.port}`,
          ...(data.database ? [`database: ${data.database}`] : []),
          `user:     ${data.user}`,
          `password: ${data.password}`,
          `expires:  ${data.expiresAt}`,
          "",
        ].join("\n"),
      );
      if (!json) note(ctx, "The login is dropped when the activation ends; do not store the password.");
    });

  db.command("login")
    .description("a password for Stint's PostgreSQL or MySQL proxy, valid while your activation of ROLE lasts")
    .argument("<role>", "the role you activated")
    .option("--once", "a token that opens a single connection")
    .option("--defaults-file <path>", "MySQL targets: write a [client] option file (mode 0600) for mariadb/mysql")
    .addHelpText(
      "after",
      "\nThe token works for many connections (pools, reconnects) until the activation ends; with --once\n" +
        "it opens exactly one. Sessions through the proxy are recorded as a query log. MySQL clients send\n" +
        "the token in clear (mysql_clear_password), so the proxy takes it only over TLS or from its own machine.\n" +
        '\nExamples:\n  stint db login app-db\n  psql "$(stint db login app-db --json | jq -r \'"host=\\(.host) port=\\(.port) user=\\(.user) password=\\(.password) dbname=\\(.database)"\')"\n' +
        "  stint db login app-maria --defaults-file ~/.stint-maria.cnf && mariadb --defaults-file=~/.stint-maria.cnf shop\n",
    )
    .action(async (roleName: string, options: { once?: boolean; defaultsFile?: string }, command: Command) => {
      const { json } = globalOptions(command);
      const role = checkName("role", roleName);
      const client = await clientFor(ctx, command);
      const { data, raw } = await client.request("POST", "/v1/db/tokens", {
        body: { role, once: options.once === true },
        schema: dbToken,
      });
      if (data.kind === "mysql") {
        if (options.defaultsFile !== undefined) {
          // A new file born 0600, renamed over the path: never one that was there (held open, or a link's target).
          await writePrivateFile(options.defaultsFile, mysqlOptionFile(data));
        }
        emit(ctx, json, raw, () =>
          [
            `host:     ${data.host}`,
            `port:     ${data.port}`,
            `user:     ${data.user}`,
            `password: ${data.password}`,
            `expires:  ${data.expiresAt}`,
            "",
            options.defaultsFile !== undefined
              ? `mariadb --defaults-file=${quoted(options.defaultsFile)} [database]`
              : `mariadb --host=${quoted(data.host)} --port=${data.port} --user=${quoted(data.user)} --password [database]  (password above)`,
            "",
          ].join("\n"),
        );
        if (!json)
          note(
            ctx,
            "The token dies with the activation; your session is recorded. Drivers must allow mysql_clear_password (mysql2: authPlugins).",
          );
        return;
      }
      if (options.defaultsFile !== undefined)
        throw new CliError("USAGE", `--defaults-file is for MySQL targets; ${role} is on a PostgreSQL database.`);
      emit(ctx, json, raw, () =>
        [
          `host:     ${data.host}`,
          `port:     ${data.port}`,
          `database: ${data.database}`,
          `user:     ${data.user}`,
          `password: ${data.password}`,
          `expires:  ${data.expiresAt}`,
          "",
          `psql "${conninfo({ host: data.host, port: data.port, user: data.user, dbname: data.database })}"  (password above)`,
          "",
        ].join("\n"),
      );
      if (!json) note(ctx, "The token dies with the activation; your session is recorded.");
    });

  db.command("proxy")
    .description("a local tunnel to Stint's PostgreSQL proxy, with a password of its own for this run")
    .argument("<role>", "the role you activated")
    .requiredOption("--port <n>", "the local port to listen on (127.0.0.1)", integerIn(1, 65535))
    .option("--insecure-proxy", "a server that names no proxy certificate (older): connect without checking it")
    .addHelpText(
      "after",
      "\nRuns until interrupted (Ctrl-C). Local clients connect with the password it prints (drawn for this run:\n" +
        "other users of the machine reach 127.0.0.1 too, and get nothing without it). The proxy must show the\n" +
        "certificate the Stint server names, or it gets nothing (PROXY_CERT_MISMATCH):\n" +
        "\nExamples:\n  stint db proxy app-db --port 15432\n  PGPASSWORD='…printed…' psql -h 127.0.0.1 -p 15432 -d app\n",
    )
    .action(async (roleName: string, options: { port: number; insecureProxy?: boolean }, command: Command) => {
      const { json } = globalOptions(command);
      const role = checkName("role", roleName);
      const client = await clientFor(ctx, command);
      const { data } = await client.request("POST", "/v1/db/tokens", { body: { role, once: false }, schema: dbToken });
      if (data.kind === "mysql")
        throw new CliError(
          "USAGE",
          `stint db proxy is for PostgreSQL targets; ${role} is on a MySQL database: use stint db login ${role} --defaults-file FILE.`,
        );
      const pinned = proxyCertificate(ctx, data.proxyCertificateSha256, options.insecureProxy === true);
      const localPassword = randomToken(24);
      const tunnel = createLocalTunnel({
        listenHost: "127.0.0.1",
        listenPort: options.port,
        proxyHost: data.host,
        proxyPort: data.port,
        user: data.user,
        password: () => Promise.resolve(data.password),
        localPassword,
        ...(pinned ? { proxyCertificateSha256: pinned } : {}),
        onProxyRefused: (message) => ctx.stderr.write(`error: ${terminalText(message)}\n`),
      });
      const { port } = await tunnel.listen();
      const local = { host: "127.0.0.1", port, database: data.database, password: localPassword };
      emit(ctx, json, { ...local, role, expiresAt: data.expiresAt }, () =>
        [
          `host:     127.0.0.1`,
          `port:     ${port}`,
          `database: ${data.database}`,
          `password: ${localPassword}  (this tunnel's, for this run)`,
          `expires:  ${data.expiresAt}`,
          "",
          `PGPASSWORD=${quoted(localPassword)} psql ${quoted(conninfo({ host: "127.0.0.1", port, dbname: data.database }))}`,
          "",
        ].join("\n"),
      );
      note(ctx, `Listening on 127.0.0.1:${port} for ${role} until ${data.expiresAt} (Ctrl-C ends it).`);
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
      await tunnel.close();
    });
}
