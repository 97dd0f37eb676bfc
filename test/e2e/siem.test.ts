/**
 * SIEM streaming (issue 16, acceptance 5) against real receivers: Debian's rsyslogd started here on
 * loopback high ports (one TCP listener, one TLS listener with a CA and certificate made by the openssl
 * CLI), and a Splunk HEC receiver (a local HTTP server that checks the token). Events are made through
 * the API of a Stint server on PostgreSQL (background sequencer), which is stopped and started again
 * on the same database mid-stream; the TCP rsyslog is killed with SIGKILL mid-stream and restarted.
 *
 * Needs /usr/sbin/rsyslogd and rsyslog-gnutls (.ci/run installs them), openssl, and PostgreSQL on
 * 127.0.0.1:5432 (STINT_TEST_PG_URL).
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { loadConfig } from "../../src/config/config.js";
import type { SiemDestinationStatus } from "../../src/contract/siem.js";
import { openAppStore } from "../../src/db/index.js";
import { createLogger } from "../../src/lib/logger.js";
import { createServer, type Server } from "../../src/server.js";
import { createPgDatabase } from "../../src/testing/engines.js";
import { TEST_SCRYPT } from "../../src/testing/server.js";
import { hecReceiver, makePki, rsyslog, type HecReceiver, type Rsyslog } from "../../src/testing/siem-receivers.js";
import { freePort } from "./support.js";

const ADMIN_PASSWORD = "siem-root-password-1";
const HEC_TOKEN = "0f6c1c2e-5b7d-4e59-9a0e-hec-token-for-tests";
const CHECKPOINT_EVERY = 25;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

interface Stint {
  server: Server;
  auth: string;
  close(): Promise<void>;
}

describe("SIEM streaming to rsyslog (TCP and TLS) and Splunk HEC", () => {
  let dir: string;
  let database: { url: string; drop: () => Promise<void> };
  let tcp: Rsyslog;
  let tlsSyslog: Rsyslog;
  let hec: HecReceiver;
  let configFile: string;
  const masterKey = randomBytes(32);
  const vaultKey = randomBytes(32);

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "stint-siem-"));
    database = await createPgDatabase();
    const pki = makePki(dir, "rsyslog", { dns: ["siem.test"], ips: [] });
    tcp = rsyslog(dir, "tcp", await freePort());
    tlsSyslog = rsyslog(dir, "tls", await freePort(), pki);
    await tcp.start();
    await tlsSyslog.start();
    hec = await hecReceiver(HEC_TOKEN);
    const tokenFile = path.join(dir, "hec.token");
    await writeFile(tokenFile, `${HEC_TOKEN}\n`, { mode: 0o600 });
    configFile = path.join(dir, "stint.yaml");
    const fast = { batchSize: 20, retryCapMs: 1000, timeoutMs: 5000 };
    await writeFile(
      configFile,
      stringify({
        siem: {
          destinations: [
            {
              name: "tcp",
              kind: "syslog",
              transport: "tcp",
              host: "127.0.0.1",
              port: tcp.port,
              format: "json",
              settleMs: 3000,
              ...fast,
            },
            {
              name: "tls",
              kind: "syslog",
              transport: "tls",
              host: "127.0.0.1",
              port: tlsSyslog.port,
              caFile: pki.caFile,
              serverName: "siem.test",
              format: "cef",
              settleMs: 500,
              ...fast,
            },
            { name: "hec", kind: "hec", url: hec.url, tokenFile, format: "ocsf", ...fast },
          ],
        },
      }),
    );
  }, 60_000);

  afterAll(async () => {
    await tcp?.kill("SIGKILL");
    await tlsSyslog?.kill("SIGKILL");
    await hec?.close();
    await database?.drop().catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function startStint(): Promise<Stint> {
    const parsed = loadConfig(
      {
        STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
        STINT_LOG_LEVEL: "silent",
        STINT_BLOB_DIR: path.join(dir, "blobs"),
        STINT_AUDIT_CHECKPOINT_EVERY: String(CHECKPOINT_EVERY),
        STINT_DATABASE_URL: database.url,
        STINT_DATA_DIR: path.join(dir, "data"),
      },
      configFile,
    );
    if (!parsed.ok) throw new Error(parsed.problems.join("\n"));
    const store = await openAppStore({ databaseUrl: database.url });
    const server = await createServer({
      config: parsed.config,
      logger: createLogger({ level: "silent" }),
      masterKey,
      vaultKey,
      store,
      scrypt: TEST_SCRYPT,
    });
    await server.bootstrap();
    await server.app.ready();
    await server.siem.start();
    const res = await server.app.inject({
      method: "POST",
      url: "/v1/auth/login",
      payload: { username: "admin", password: ADMIN_PASSWORD },
    });
    const auth = `Bearer ${res.json<{ accessToken: string }>().accessToken}`;
    return { server, auth, close: () => server.close() };
  }

  /** Makes audit events through the API: each user created is one (or more) chained events. */
  async function makeEvents(stint: Stint, prefix: string, users: number): Promise<void> {
    for (let i = 0; i < users; i++) {
      const res = await stint.server.app.inject({
        method: "POST",
        url: "/v1/users",
        headers: { authorization: stint.auth },
        payload: { name: `${prefix}-${i}`, password: `#1.2.3.${i}.0123456789-${prefix}`, platformRoles: ["user"] },
      });
      expect(res.statusCode, res.body).toBe(201);
    }
  }

  async function status(stint: Stint): Promise<SiemDestinationStatus[]> {
    const res = await stint.server.app.inject({
      method: "GET",
      url: "/v1/siem/destinations",
      headers: { authorization: stint.auth },
    });
    expect(res.statusCode, res.body).toBe(200);
    return res.json<{ items: SiemDestinationStatus[] }>().items;
  }

  async function lag(stint: Stint, destination: string): Promise<{ events: number; seconds: number }> {
    const res = await stint.server.app.inject({
      method: "GET",
      url: "/metrics",
      headers: { authorization: stint.auth },
    });
    const value = (name: string) =>
      Number(new RegExp(`^${name}\\{destination="${destination}"\\} (\\S+)$`, "m").exec(res.body)?.[1] ?? NaN);
    return { events: value("stint_siem_lag_events"), seconds: value("stint_siem_lag_seconds") };
  }

  /** Each seq once, in order, 1..head, same id wherever it repeats (at least once, deduped by id). */
  function assertComplete(
    name: string,
    records: { type: string; seq: number; id: string | undefined }[],
    headSeq: number,
    idsBySeq: Map<number, string>,
  ) {
    const events = records.filter((r) => r.type === "event");
    const firstSeen: number[] = [];
    const seen = new Set<string>();
    for (const r of events) {
      expect(r.id, `${name}: seq ${r.seq} carries its event id`).toBeDefined();
      const known = idsBySeq.get(r.seq);
      if (known === undefined) idsBySeq.set(r.seq, r.id!);
      else expect(r.id, `${name}: a duplicate of seq ${r.seq} carries the same id`).toBe(known);
      if (seen.has(r.id!)) continue;
      seen.add(r.id!);
      firstSeen.push(r.seq);
    }
    expect(firstSeen, `${name}: every seq, first seen in chain order`).toEqual(
      Array.from({ length: headSeq }, (_, i) => i + 1),
    );
    const checkpoints = new Set(records.filter((r) => r.type === "checkpoint").map((r) => r.seq));
    for (let seq = CHECKPOINT_EVERY; seq <= headSeq; seq += CHECKPOINT_EVERY)
      expect(checkpoints.has(seq), `${name}: the signed checkpoint at ${seq} is in the stream`).toBe(true);
    return events.length - firstSeen.length;
  }

  it("every event arrives in chain order as RFC 5424 (TCP, TLS) and at HEC; rsyslog killed and Stint restarted mid-stream lose nothing; lag moves and returns to 0", async () => {
    let stint = await startStint();
    await makeEvents(stint, "before", 30);
    await until("the TCP rsyslog to have received some events", () => tcp.received().length >= 20 || undefined);
    // Mid-stream: the TCP receiver hangs (SIGSTOP) while events are written to it, then dies (SIGKILL): what
    // sat unread in its socket is lost there, and Stint, which wrote it, must send it again.
    const stoppedAt = Date.now();
    tcp.child.kill("SIGSTOP");
    await makeEvents(stint, "stalled", 3);
    await until("the stalled events to be written to the TCP receiver", async () => {
      const s = (await status(stint)).find((d) => d.name === "tls")!;
      return s.deliveredSeq === s.headSeq || undefined;
    });
    await sleep(300);
    await tcp.kill("SIGKILL");
    const killedAfterMs = Date.now() - stoppedAt;
    const headAtKill = (await status(stint))[0]!.headSeq;
    const receivedBeforeKill = tcp.received();
    // Stint wrote events the receiver never stored: the kill really cut the stream.
    expect(Math.max(...receivedBeforeKill.map((r) => r.seq))).toBeLessThan(headAtKill);
    await makeEvents(stint, "during", 20);
    // The other destinations keep flowing; the dead one's lag shows on /metrics.
    const down = await until("the TCP destination's lag to show", async () => {
      const l = await lag(stint, "tcp");
      return l.events > 0 && l.seconds > 0 ? l : undefined;
    });
    expect(down.events).toBeGreaterThan(0);
    await until("TLS and HEC to catch up while TCP is down", async () => {
      const s = await status(stint);
      const ok = s.filter((d) => d.name !== "tcp").every((d) => d.deliveredSeq === d.headSeq && d.headSeq > 0);
      return ok || undefined;
    });
    const tcpStatus = (await status(stint)).find((d) => d.name === "tcp")!;
    expect(tcpStatus.state).toBe("retrying");
    expect(tcpStatus.lastError).not.toBeNull();
    expect(tcpStatus.endpoint).toBe(`tcp://127.0.0.1:${tcp.port}`);
    const hecStatus = (await status(stint)).find((d) => d.name === "hec")!;
    expect(JSON.stringify(hecStatus)).not.toContain(HEC_TOKEN);

    // Stint itself stops and starts again on the same database: the cursors survive.
    await stint.close();
    await tcp.start();
    stint = await startStint();
    await makeEvents(stint, "after", 10);
    // Everything made is chained before the head is compared (the background sequencer chains within ms).
    await stint.server.audit.catchUp();
    const caughtUp = await until("every destination to reach the head", async () => {
      const s = await status(stint);
      return s.every((d) => d.deliveredSeq === d.headSeq && d.headSeq > 0) ? s : undefined;
    });
    const headSeq = caughtUp[0]!.headSeq;
    await until("the lag metrics to return to 0", async () => {
      for (const name of ["tcp", "tls", "hec"]) {
        const l = await lag(stint, name);
        if (l.events !== 0 || l.seconds !== 0) return undefined;
      }
      return true;
    });

    // rsyslog's own RFC 5424 parser read every record: version 1, MSGID, our structured data.
    const idsBySeq = new Map<number, string>();
    for (const receiver of [tcp, tlsSyslog]) {
      const records = receiver.received();
      for (const r of records) {
        expect(r.version, r.raw).toBe("1");
        expect(r.raw).toMatch(
          /^<\d{1,3}>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z \S+ stint - \S+ \[stint@32473 type="(event|checkpoint)" seq="\d+" /,
        );
        expect(r.msgId).toBe(
          r.type === "checkpoint" ? "audit.checkpoint" : /^<\d+>1 \S+ \S+ \S+ \S+ (\S+) /.exec(r.raw)![1],
        );
      }
      const duplicates = assertComplete(receiver === tcp ? "tcp" : "tls", records, headSeq, idsBySeq);
      console.log(
        `${receiver === tcp ? "tcp" : "tls"}: ${records.length} records for head ${headSeq}, ${duplicates} resent`,
      );
    }
    // The TCP stream was cut within its settle window (3 s) and resent from its cursor.
    console.log(`tcp receiver stopped ${killedAfterMs} ms before it was killed (settleMs 3000)`);
    // The JSON payload is the event as chained; the CEF one carries the id too.
    const sample = tcp.received().find((r) => r.type === "event")!;
    const json = JSON.parse(sample.raw.slice(sample.raw.indexOf("\ufeff") + 1)) as { seq: number; id: string };
    expect([json.seq, json.id]).toEqual([sample.seq, sample.id]);
    const cef = tlsSyslog.received().find((r) => r.type === "event" && r.seq === sample.seq)!;
    expect(cef.raw).toContain(`cs4=${sample.id} cs4Label=eventId`);

    // HEC got the same events (with the token), in order, OCSF, and the checkpoints with their signatures.
    expect(hec.requests.every((r) => r.authorization === `Splunk ${HEC_TOKEN}`)).toBe(true);
    const hecRecords = hec.accepted().map((e) => ({
      type: e.fields.stint_type!,
      seq: Number(e.fields.stint_seq),
      id: e.fields.stint_id,
    }));
    assertComplete("hec", hecRecords, headSeq, idsBySeq);
    const ocsfCheckpoint = hec.accepted().find((e) => e.fields.stint_type === "checkpoint")!.event as {
      unmapped: { anchor: { signature: string; hash: string } };
    };
    expect(ocsfCheckpoint.unmapped.anchor.signature).toMatch(/^[A-Za-z0-9_-]{40,}$/);

    // The signed heads in the SIEM match the chain: an anchor the database cannot rewrite.
    const anchor = tcp.received().find((r) => r.type === "checkpoint")!;
    const body = JSON.parse(anchor.raw.slice(anchor.raw.indexOf("\ufeff") + 1)) as Record<string, unknown>;
    const verify = await stint.server.app.inject({
      method: "POST",
      url: "/v1/audit/verify",
      headers: { authorization: stint.auth },
      payload: { anchor: body },
    });
    expect(verify.json<{ ok: boolean; anchorSeq?: number }>()).toMatchObject({ ok: true, anchorSeq: anchor.seq });
    await stint.close();
  }, 240_000);
});
