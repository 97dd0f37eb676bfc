/**
 * Starts the session proxies a configuration asks for and tells the sessions module where they
 * listen. A proxy left at its default address that finds the port taken is skipped with a warning (a
 * second Stint on one machine still starts); one configured explicitly must bind or the start fails.
 */
import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import {
  DEFAULT_MYSQL_PROXY_LISTEN,
  DEFAULT_PG_PROXY_LISTEN,
  DEFAULT_SSH_PROXY_LISTEN,
  type Config,
} from "../config/config.js";
import type { Registry } from "prom-client";
import type { Logger } from "../lib/logger.js";
import type { SessionService } from "../modules/sessions/sessions.service.js";
import { createMysqlProxy } from "./mysql/mysql-proxy.js";
import { createPgProxy } from "./pg/pg-proxy.js";
import { createSshProxy, type SshProxy } from "./ssh/ssh-proxy.js";
import type { WebTerminals } from "./ssh/web-terminal.js";

export interface RunningProxies {
  ssh: { host: string; port: number } | null;
  postgres: { host: string; port: number } | null;
  mysql: { host: string; port: number } | null;
  close(): Promise<void>;
}

function split(listen: string): { host: string; port: number } {
  const at = listen.lastIndexOf(":");
  return { host: listen.slice(0, at).replace(/^\[(.*)\]$/, "$1"), port: Number(listen.slice(at + 1)) };
}

function loopbackFor(host: string): string {
  return host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host;
}

/** What clients are told to connect to: the public host when set, else the bound one (0.0.0.0 → this host's loopback). */
function advertised(config: Config, bound: { host: string; port: number }) {
  const host = config.proxyPublicHost ?? (bound.host === "0.0.0.0" || bound.host === "::" ? "127.0.0.1" : bound.host);
  return { host, port: bound.port };
}

export async function startProxies(deps: {
  config: Config;
  sessions: SessionService;
  logger: Logger;
  /** Where the proxies' connection figures go (/metrics). */
  registry?: Registry;
  /** The browser terminals, told how to reach the SSH proxy in memory once it listens (web-terminal.ts). */
  terminals?: Pick<WebTerminals, "attach">;
}): Promise<RunningProxies> {
  const { config, sessions, logger } = deps;
  const closers: (() => Promise<void>)[] = [];
  const result: RunningProxies = {
    ssh: null,
    postgres: null,
    mysql: null,
    close: async () => {
      await Promise.all(closers.map((close) => close().catch(() => undefined)));
    },
  };

  /** The database proxies' own certificates (SHA-256, as "AB:CD:…"): the CLI's tunnel checks the proxy against it. */
  const certificates: Partial<Record<"postgres" | "mysql", string>> = {};
  async function readTls(kind: "postgres" | "mysql", certFile?: string, keyFile?: string) {
    if (!certFile || !keyFile) return undefined;
    const tls = { cert: await readFile(certFile), key: await readFile(keyFile) };
    // The first certificate of the file is the one the proxy shows (a chain follows it).
    certificates[kind] = new X509Certificate(tls.cert).fingerprint256;
    return tls;
  }

  async function start(
    kind: "ssh" | "postgres" | "mysql",
    setting: string | undefined,
    fallback: string,
    make: (address: { host: string; port: number }) => Promise<{
      listen(): Promise<{ host: string; port: number }>;
      close(): Promise<void>;
    }>,
  ) {
    if (setting === "off") return;
    const address = split(setting ?? fallback);
    const proxy = await make(address);
    try {
      const bound = await proxy.listen();
      const shown = advertised(config, bound);
      const certificateSha256 = kind === "ssh" ? undefined : certificates[kind];
      // The SQL console connects to the bound address (0.0.0.0 and :: mean this host's loopback).
      sessions.setProxyAddress(
        kind,
        { ...shown, ...(certificateSha256 ? { certificateSha256 } : {}) },
        {
          ...bound,
          host: loopbackFor(bound.host),
        },
      );
      result[kind] = shown;
      closers.push(() => proxy.close());
      logger.info({ kind, listen: `${bound.host}:${bound.port}` }, "session proxy listening");
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (setting === undefined && code === "EADDRINUSE") {
        logger.warn(
          { kind, listen: fallback },
          `the ${kind} session proxy's default address is taken; it is off (set ${kind === "ssh" ? "STINT_SSH_PROXY_LISTEN" : kind === "mysql" ? "STINT_MYSQL_PROXY_LISTEN" : "STINT_PG_PROXY_LISTEN"})`,
        );
        return;
      }
      await result.close();
      throw error;
    }
  }

  let sshProxy: SshProxy | undefined;
  await start("ssh", config.sshProxyListen, DEFAULT_SSH_PROXY_LISTEN, async (address) => {
    sshProxy = createSshProxy({
      gate: sessions.gate,
      hostKey: await sessions.proxyHostKey(),
      logger,
      ...address,
      handshakeTimeoutMs: config.sshProxyHandshakeTimeout,
      maxConnections: config.sshProxyMaxConnections,
      maxConnectionsPerAddress: config.sshProxyMaxConnectionsPerAddress,
      maxSessions: config.sshProxyMaxSessions,
      maxForwards: config.sshProxyMaxForwards,
      maxAuthTries: config.sshProxyMaxAuthTries,
      ...(deps.registry ? { registry: deps.registry } : {}),
    });
    return sshProxy;
  });
  const listening = result.ssh ? sshProxy : undefined;
  if (listening) deps.terminals?.attach((clientAddress) => listening.connectLocal(clientAddress));
  await start("postgres", config.pgProxyListen, DEFAULT_PG_PROXY_LISTEN, async (address) => {
    const tls = await readTls("postgres", config.pgProxyTlsCert, config.pgProxyTlsKey);
    return createPgProxy({
      gate: sessions.gate,
      logger,
      ...address,
      ...(tls ? { tls } : {}),
      handshakeTimeoutMs: config.pgProxyHandshakeTimeout,
      maxConnections: config.pgProxyMaxConnections,
      maxConnectionsPerAddress: config.pgProxyMaxConnectionsPerAddress,
      ...(deps.registry ? { registry: deps.registry } : {}),
    });
  });
  await start("mysql", config.mysqlProxyListen, DEFAULT_MYSQL_PROXY_LISTEN, async (address) => {
    const tls = await readTls("mysql", config.mysqlProxyTlsCert, config.mysqlProxyTlsKey);
    return createMysqlProxy({
      gate: sessions.gate,
      logger,
      ...address,
      ...(tls ? { tls } : {}),
      handshakeTimeoutMs: config.mysqlProxyHandshakeTimeout,
      maxConnections: config.mysqlProxyMaxConnections,
      maxConnectionsPerAddress: config.mysqlProxyMaxConnectionsPerAddress,
      ...(deps.registry ? { registry: deps.registry } : {}),
    });
  });
  return result;
}
