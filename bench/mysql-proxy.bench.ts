/**
 * MariaDB/MySQL proxy benchmark (issue 18): what relaying costs the proxy's process, in CPU time (the
 * machine is shared: wall time says little). The `mariadb` client runs as a child process, so this
 * process's CPU is the proxy's alone: following every packet of the answer, counting rows, writing the
 * query log. Two loads, each straight to the machine's MariaDB and through the proxy:
 *   - big: `--big` times a 100,000-row result (~4 MB) read by `mariadb -B`;
 *   - small: `--small` one-row queries on one session (the per-statement cost: one log entry each).
 * The same loads also go through a plain TCP pipe in this process (socket.pipe both ways: no parsing,
 * no log), the floor any relay in Node pays. Prints wall time, the proxy's CPU per MB and per
 * statement next to the pipe's, and PASS when the proxy relays at least 50 MB per CPU-second and its
 * CPU per small statement is at most twice the pipe's. This process's CPU while the same load runs
 * directly (spawning the client, nothing relayed) is measured too and taken off; one run of each load
 * through each relay goes first (modules loaded, JIT warm).
 *
 *   node --import tsx bench/mysql-proxy.bench.ts [--big=5] [--small=5000]
 *
 * The gate is a stand-in (one user, upstream root on 127.0.0.1:3306): the sessions module's decision
 * is made once per connection and is not what this measures.
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { connect, createServer, type AddressInfo } from "node:net";
import { cpus, loadavg } from "node:os";
import { createLogger } from "../src/lib/logger.js";
import { createMysqlProxy } from "../src/proxies/mysql/mysql-proxy.js";
import type { BrokeredSession, QueryLogEntry, UpstreamMysql } from "../src/modules/sessions/sessions.types.js";

const TARGET_MB_PER_CPU_SECOND = 50;
/** The proxy's CPU per small statement, at most this many times a plain pipe's. */
const TARGET_STATEMENT_VS_PIPE = 2;
const BIG = "select seq, md5(seq) as h from seq_1_to_100000";

function flag(name: string, fallback: number): number {
  const found = process.argv.find((a) => a.startsWith(`--${name}=`));
  return found ? Number(found.split("=")[1]) : fallback;
}

function mariadb(port: number, user: string, password: string, sql: string, input?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    const child = spawn(
      "mariadb",
      [
        "--no-defaults",
        "-h",
        "127.0.0.1",
        "-P",
        String(port),
        "-u",
        user,
        ...(password ? [`-p${password}`] : []),
        "-B",
        "-N",
        "test",
        ...(sql ? ["-e", sql] : []),
      ],
      { stdio: [input === undefined ? "ignore" : "pipe", "pipe", "inherit"] },
    );
    child.stdout!.on("data", (c: Buffer) => (bytes += c.length));
    if (input !== undefined) child.stdin!.end(input);
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(bytes) : reject(new Error(`mariadb exited ${code}`))));
  });
}

async function main() {
  const big = flag("big", 5);
  const small = flag("small", 5000);
  const token = `bench-${randomUUID()}`;
  let relayed = 0;
  let logged = 0;
  const proxy = createMysqlProxy({
    logger: createLogger({ level: "silent" }),
    port: 0,
    gate: {
      openMysql: async (input) => {
        if (input.password !== token) throw new Error("bad token");
        const session: BrokeredSession<UpstreamMysql> = {
          id: randomUUID(),
          user: "bench",
          role: "bench",
          target: "mariadb",
          policy: { recording: "optional", portForwarding: false, queryParameters: false },
          upstream: {
            kind: "mysql",
            host: "127.0.0.1",
            address: "127.0.0.1",
            port: 3306,
            database: input.database,
            user: "root",
            password: "",
            // The machine's MariaDB has SSL off: plain TCP, said explicitly (the targets' default is verify-full).
            tls: null,
          },
          recorder: {
            output: () => {},
            input: () => {},
            resize: () => {},
            event: () => {},
            query: (entry: QueryLogEntry) => {
              logged += JSON.stringify(entry).length > 0 ? 1 : 0;
            },
          },
          signal: new AbortController().signal,
          countBytes: (_direction, n) => {
            relayed += n;
          },
          end: async () => {},
        };
        return session;
      },
    },
  });
  const { port } = await proxy.listen();
  const user = "bench%mysql";
  const lines: string[] = [];
  const say = (line: string) => {
    lines.push(line);
    process.stdout.write(`${line}\n`);
  };
  say(
    `mysql-proxy bench: ${big} × 100k-row result, ${small} small statements; ${cpus().length} cores, load ${loadavg()[0]!.toFixed(1)}`,
  );

  const cpuOf = async (work: () => Promise<unknown>) => {
    const before = process.cpuUsage();
    const t = Date.now();
    await work();
    const used = process.cpuUsage(before);
    return { cpuS: (used.user + used.system) / 1e6, ms: Date.now() - t };
  };
  const script = Array.from({ length: small }, (_, i) => `select ${i};`).join("\n");
  const pipe = createServer((client) => {
    const upstream = connect({ host: "127.0.0.1", port: 3306 });
    client.pipe(upstream).pipe(client);
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  await new Promise<void>((resolve) => pipe.listen(0, "127.0.0.1", resolve));
  const pipePort = (pipe.address() as AddressInfo).port;
  // Warm-up: one run of each load through each relay.
  await mariadb(port, user, token, BIG);
  await mariadb(port, user, token, "", script);
  await mariadb(pipePort, "root", "", BIG);
  await mariadb(pipePort, "root", "", "", script);

  // Big results.
  const directBig = await cpuOf(async () => {
    for (let i = 0; i < big; i++) await mariadb(3306, "root", "", BIG);
  });
  relayed = 0;
  const proxyBig = await cpuOf(async () => {
    for (let i = 0; i < big; i++) await mariadb(port, user, token, BIG);
  });
  await new Promise((r) => setTimeout(r, 300)); // the byte counts arrive in sums, at most 250 ms late
  const pipeBig = await cpuOf(async () => {
    for (let i = 0; i < big; i++) await mariadb(pipePort, "root", "", BIG);
  });
  const bigCpuS = Math.max(1e-6, proxyBig.cpuS - directBig.cpuS);
  const pipeBigCpuS = Math.max(1e-6, pipeBig.cpuS - directBig.cpuS);
  const mb = relayed / 1e6;
  const mbPerCpuS = mb / bigCpuS;
  say(
    `big:   direct ${directBig.ms} ms, through the proxy ${proxyBig.ms} ms, a plain pipe ${pipeBig.ms} ms (${(mb / pipeBigCpuS).toFixed(0)} MB per CPU-second); ${mb.toFixed(1)} MB relayed for ${(bigCpuS * 1000).toFixed(0)} ms of proxy CPU (${(proxyBig.cpuS * 1000).toFixed(0)} − ${(directBig.cpuS * 1000).toFixed(0)} ms of this process with the client spawns) = ${mbPerCpuS.toFixed(0)} MB per CPU-second, ${((bigCpuS * 1e6) / (big * 100_000)).toFixed(2)} µs per row`,
  );

  // Small statements on one session.
  const directSmall = await cpuOf(() => mariadb(3306, "root", "", "", script));
  logged = 0;
  const proxySmall = await cpuOf(() => mariadb(port, user, token, "", script));
  const perStatementUs = (Math.max(0, proxySmall.cpuS - directSmall.cpuS) * 1e6) / Math.max(1, logged);
  const pipeSmall = await cpuOf(() => mariadb(pipePort, "root", "", "", script));
  const pipePerStatementUs = (Math.max(0, pipeSmall.cpuS - directSmall.cpuS) * 1e6) / small;
  say(
    `small: direct ${directSmall.ms} ms, through the proxy ${proxySmall.ms} ms; ${logged} statements logged, ${perStatementUs.toFixed(1)} µs of proxy CPU each; a plain pipe ${pipeSmall.ms} ms, ${pipePerStatementUs.toFixed(1)} µs each`,
  );

  const statementRatio = perStatementUs / Math.max(1, pipePerStatementUs);
  const pass = mbPerCpuS >= TARGET_MB_PER_CPU_SECOND && statementRatio <= TARGET_STATEMENT_VS_PIPE && logged === small;
  say(
    `${pass ? "PASS" : "FAIL"}: ≥ ${TARGET_MB_PER_CPU_SECOND} MB per CPU-second (${mbPerCpuS.toFixed(0)}), ≤ ${TARGET_STATEMENT_VS_PIPE}× a plain pipe's CPU per statement (${statementRatio.toFixed(2)}×), every statement logged (${logged}/${small})`,
  );
  await proxy.close();
  await new Promise((resolve) => pipe.close(resolve));
  process.exitCode = pass ? 0 : 1;
}

await main();
