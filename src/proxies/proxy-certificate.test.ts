/**
 * The certificate the server names for its PostgreSQL proxy (what `stint db proxy` checks the proxy
 * against, test/security/cli-tunnel-proxy-cert.test.ts) is the one the proxy shows.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { once } from "node:events";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { connect as tlsConnect } from "node:tls";
import { describe, expect, it } from "vitest";
import type { Config } from "../config/config.js";
import { encodeSslRequest } from "../lib/pg-wire.js";
import { createLogger } from "../lib/logger.js";
import type { ProxyAddress, SessionService } from "../modules/sessions/sessions.service.js";
import { createTestCa } from "../testing/postgres-instance.js";
import { startProxies } from "./index.js";

describe("the PostgreSQL proxy's certificate, as the server names it", () => {
  it("is the SHA-256 of the certificate the proxy shows; none without TLS", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "stint-proxy-cert-"));
    const issued = await (await createTestCa()).issue(["127.0.0.1"]);
    await writeFile(path.join(dir, "cert.pem"), issued.cert);
    await writeFile(path.join(dir, "key.pem"), issued.key);
    const named: Partial<Record<string, ProxyAddress>> = {};
    const sessions = {
      gate: {},
      setProxyAddress: (kind: string, address: ProxyAddress) => (named[kind] = address),
    } as unknown as SessionService;
    const base = { sshProxyListen: "off", mysqlProxyListen: "off", pgProxyListen: "127.0.0.1:0" };
    const logger = createLogger({ level: "silent" });
    const secure = await startProxies({
      config: {
        ...base,
        pgProxyTlsCert: path.join(dir, "cert.pem"),
        pgProxyTlsKey: path.join(dir, "key.pem"),
      } as unknown as Config,
      sessions,
      logger,
    });
    try {
      const { port } = secure.postgres!;
      const socket = connect({ host: "127.0.0.1", port });
      await once(socket, "connect");
      socket.write(encodeSslRequest());
      await once(socket, "data");
      const tls = tlsConnect({ socket, rejectUnauthorized: false });
      await once(tls, "secureConnect");
      expect(named.postgres?.certificateSha256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
      expect(named.postgres?.certificateSha256).toBe(tls.getPeerCertificate().fingerprint256);
      tls.destroy();
    } finally {
      await secure.close();
      await rm(dir, { recursive: true, force: true });
    }
    const plain = await startProxies({ config: base as unknown as Config, sessions, logger });
    await plain.close();
    expect(named.postgres).toBeDefined();
    expect(named.postgres?.certificateSha256).toBeUndefined();
  }, 60_000);
});
