/**
 * Test support for SIEM streaming: a real rsyslog (Debian's rsyslogd) on a loopback port with a TCP or TLS
 * listener, writing what it parsed (protocol version, MSGID, structured data) and the raw message to a
 * file; a test CA and server certificate made with the openssl CLI; a Splunk HEC receiver.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import path from "node:path";

export const RSYSLOGD = "/usr/sbin/rsyslogd";

export interface TestPki {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** A CA and a server certificate for `names` (DNS names and IPs), signed by it (ECDSA P-256, one day). */
export function makePki(dir: string, prefix: string, names: { dns: string[]; ips: string[] }): TestPki {
  const file = (name: string) => path.join(dir, `${prefix}-${name}`);
  const openssl = (args: string[]) => execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    file("ca.key"),
    "-out",
    file("ca.pem"),
    "-days",
    "1",
    "-subj",
    `/CN=${prefix} test CA`,
  ]);
  openssl([
    "req",
    ...ec,
    "-keyout",
    file("server.key"),
    "-out",
    file("server.csr"),
    "-subj",
    `/CN=${names.dns[0] ?? "server"}`,
  ]);
  const san = [...names.dns.map((d) => `DNS:${d}`), ...names.ips.map((ip) => `IP:${ip}`)].join(",");
  writeFileSync(file("ext.cnf"), `subjectAltName=${san}\n`);
  openssl([
    "x509",
    "-req",
    "-in",
    file("server.csr"),
    "-CA",
    file("ca.pem"),
    "-CAkey",
    file("ca.key"),
    "-CAcreateserial",
    "-out",
    file("server.pem"),
    "-days",
    "1",
    "-extfile",
    file("ext.cnf"),
  ]);
  return { caFile: file("ca.pem"), certFile: file("server.pem"), keyFile: file("server.key") };
}

export async function waitForPort(port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: "127.0.0.1", port });
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface ReceivedSyslog {
  /** As rsyslog's RFC 5424 parser saw it. */
  version: string;
  msgId: string;
  structuredData: string;
  raw: string;
  type: string;
  seq: number;
  id: string | undefined;
}

export interface Rsyslog {
  port: number;
  outFile: string;
  child: ChildProcess;
  /** Starts it (again) on the same port, appending to the same file. */
  start(): Promise<void>;
  kill(signal: NodeJS.Signals): Promise<void>;
  received(): ReceivedSyslog[];
}

/** One rsyslogd of its own (config, work directory, pid file, output file under `dir`). */
export function rsyslog(dir: string, name: string, port: number, tls?: TestPki): Rsyslog {
  const work = path.join(dir, `${name}-work`);
  execFileSync("mkdir", ["-p", work]);
  const outFile = path.join(dir, `${name}.out`);
  const conf = path.join(dir, `${name}.conf`);
  const lines = [
    `global(workDirectory="${work}" maxMessageSize="64k"${
      tls
        ? ` defaultNetstreamDriverCAFile="${tls.caFile}" defaultNetstreamDriverCertFile="${tls.certFile}" defaultNetstreamDriverKeyFile="${tls.keyFile}"`
        : ""
    })`,
    tls
      ? `module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")`
      : `module(load="imtcp")`,
    `input(type="imtcp" port="${port}" address="127.0.0.1")`,
    `template(name="raw" type="string" string="%protocol-version%\\t%msgid%\\t%structured-data%\\t%rawmsg%\\n")`,
    `action(type="omfile" file="${outFile}" template="raw")`,
  ];
  writeFileSync(conf, `${lines.join("\n")}\n`);
  const self: Rsyslog = {
    port,
    outFile,
    child: undefined as unknown as ChildProcess,
    async start() {
      const child = spawn(RSYSLOGD, ["-n", "-f", conf, "-i", path.join(work, "pid")], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let output = "";
      child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
      child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
      self.child = child;
      try {
        await waitForPort(port);
      } catch (error) {
        child.kill("SIGKILL");
        throw new Error(`rsyslogd did not start: ${(error as Error).message}\n${output}`);
      }
    },
    async kill(signal) {
      const child = self.child;
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill(signal);
      await exited;
    },
    received() {
      if (!existsSync(outFile)) return [];
      return readFileSync(outFile, "utf8")
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => {
          const [version, msgId, structuredData, ...rest] = line.split("\t");
          const sd = structuredData ?? "";
          return {
            version: version ?? "",
            msgId: msgId ?? "",
            structuredData: sd,
            raw: rest.join("\t"),
            type: /type="(\w+)"/.exec(sd)?.[1] ?? "",
            seq: Number(/ seq="(\d+)"/.exec(sd)?.[1] ?? NaN),
            id: / id="([^"]+)"/.exec(sd)?.[1],
          };
        });
    },
  };
  return self;
}

export interface HecRequestLog {
  status: number;
  authorization: string | undefined;
  events: { fields: Record<string, string>; event: unknown; sourcetype: string }[];
}

export interface HecReceiver {
  port: number;
  url: string;
  requests: HecRequestLog[];
  /** Queries of `/services/collector/ack` (indexer acknowledgement). */
  ackRequests: { channel: string | string[] | undefined; ids: number[] }[];
  /** Events of the requests answered 200, in arrival order. */
  accepted(): HecRequestLog["events"];
  /** Decides each request's fate: answer now, answer after a delay, or with another status. */
  behave(fn: ((n: number) => { status: number; delayMs?: number }) | undefined): void;
  close(): Promise<void>;
}

/** A Splunk HEC event endpoint: checks `Authorization: Splunk <token>`, answers `{"text":"Success","code":0}`. */
export async function hecReceiver(token: string, tls?: { certFile: string; keyFile: string }): Promise<HecReceiver> {
  const requests: HecRequestLog[] = [];
  let behaviour: ((n: number) => { status: number; delayMs?: number }) | undefined;
  let count = 0;
  const ackQueries = new Map<number, number>();
  const ackRequests: { channel: string | string[] | undefined; ids: number[] }[] = [];
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const authorization = req.headers.authorization;
      const body = Buffer.concat(chunks).toString("utf8");
      if (req.url?.endsWith("/ack")) {
        // Indexer acknowledgement: an id is "indexed" from its second query on (so a client must poll).
        const ids = (JSON.parse(body) as { acks: number[] }).acks;
        const acks = Object.fromEntries(ids.map((id) => [String(id), (ackQueries.get(id) ?? 0) > 0]));
        for (const id of ids) ackQueries.set(id, (ackQueries.get(id) ?? 0) + 1);
        ackRequests.push({ channel: req.headers["x-splunk-request-channel"], ids });
        res.writeHead(authorization === `Splunk ${token}` ? 200 : 401, { "content-type": "application/json" });
        res.end(JSON.stringify({ acks }));
        return;
      }
      const n = count++;
      const decided = behaviour?.(n) ?? { status: 200 };
      let status = decided.status;
      if (authorization !== `Splunk ${token}`) status = 401;
      const events = body
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as HecRequestLog["events"][number]);
      const answer = () => {
        requests.push({ status, authorization, events });
        res.writeHead(status, { "content-type": "application/json" });
        res.end(
          status === 200
            ? req.headers["x-splunk-request-channel"]
              ? `{"text":"Success","code":0,"ackId":${n}}`
              : '{"text":"Success","code":0}'
            : status === 401
              ? '{"text":"Invalid token","code":4}'
              : '{"text":"Internal Error","code":8}',
        );
      };
      if (decided.delayMs) setTimeout(answer, decided.delayMs);
      else answer();
    });
  };
  const server = tls
    ? https.createServer({ cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) }, handler)
    : http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `${tls ? "https" : "http"}://127.0.0.1:${port}/services/collector/event`,
    requests,
    ackRequests,
    accepted: () => requests.filter((r) => r.status === 200).flatMap((r) => r.events),
    behave: (fn) => (behaviour = fn),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
