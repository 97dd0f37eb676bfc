/**
 * The LDAP connector alone against a real slapd (src/testing/slapd.ts): rounds of provision, observe, revoke,
 * observe (a group membership added, read, removed, read), on the target's pool of bound admin connections and,
 * when the connector pools, also with the pool emptied before each operation (a new connection, StartTLS where
 * set, and a bind per operation, as every call was before pooling), interleaved so that both see the same host.
 * Prints per operation: wall time, this process's CPU (main thread and other threads) and slapd's CPU (all its
 * threads, /proc/<pid>/task/<tid>/schedstat), with the count of binds slapd's monitor backend saw.
 *
 *   node --import tsx bench/connectors.ldap.ts [--rounds=200]
 *
 * Run from a worktree of an older commit (this file and src/testing/slapd.ts copied in) for the figures before.
 */
import { readdirSync } from "node:fs";
import os from "node:os";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import * as ldap from "../src/modules/connectors/ldap/ldap.connector.js";
import type { ConnectorTarget } from "../src/modules/connectors/index.js";
import { addGroup, addPerson, serviceAccountAcl, slapdCounts, startSlapd } from "../src/testing/slapd.js";
import { cpuNs, summary, threadCpu } from "./connectors.timeline.js";

/** CPU of every thread of a process so far, ns. */
function processCpu(pid: number): number {
  return readdirSync(`/proc/${pid}/task`).reduce((sum, tid) => sum + cpuNs(Number(tid)), 0);
}

interface Mode {
  label: string;
  times: number[];
  main: number;
  others: number;
  slapd: number;
  binds: number;
}

export async function benchLdap(options: { rounds: number }) {
  const { ldapConnector: connector } = ldap;
  const pools = (ldap as { ldapPools?: { closeAll(): Promise<void> } }).ldapPools;
  const slapd = await startSlapd({ access: serviceAccountAcl("stint-svc") });
  try {
    const password = "bench-service-password";
    const service = await addPerson(slapd, "stint-svc", { password });
    const login = await addPerson(slapd, "dana");
    const group = await addGroup(slapd, "dba", []);
    const target: ConnectorTarget = {
      name: "bench-ldap",
      address: slapd.url,
      options: { bindDn: service },
      credential: password,
    };
    const operations = [
      () => connector.provision(target, { login, entitlement: { group } }),
      () => connector.observe(target, { group }),
      () => connector.revoke(target, { login, entitlement: { group } }),
      () => connector.observe(target, { group }),
    ];
    const mode = (label: string): Mode => ({ label, times: [], main: 0, others: 0, slapd: 0, binds: 0 });
    const pooled = mode("pooled connection");
    const fresh = mode("new connection per operation");
    const round = async (into: Mode, measured: boolean) => {
      const binds = (await slapdCounts(slapd)).binds;
      for (const operation of operations) {
        if (into === fresh) await pools?.closeAll();
        const cpu = threadCpu();
        const server = processCpu(slapd.pid);
        const started = performance.now();
        await operation();
        const took = performance.now() - started;
        const after = threadCpu();
        if (!measured) continue;
        into.times.push(took);
        into.main += after.main - cpu.main;
        into.others += after.others - cpu.others;
        into.slapd += processCpu(slapd.pid) - server;
      }
      if (measured) into.binds += (await slapdCounts(slapd)).binds - binds;
    };
    for (let i = 0; i < 20; i++) await round(i % 2 === 0 || !pools ? pooled : fresh, false);
    for (let i = 0; i < options.rounds; i++) {
      await round(pooled, true);
      if (pools) await round(fresh, true);
    }
    for (const { label, times, main, others, slapd: server, binds } of pools ? [fresh, pooled] : [pooled]) {
      const n = times.length;
      const us = (ns: number) => `${(ns / n / 1000).toFixed(0).padStart(5)} µs`;
      summary(`ldap ${pools ? label : "(no pool: a connection each)"}`, times);
      console.log(
        `  CPU per operation: Stint ${us(main + others)} (main thread ${us(main)}, other threads ${us(others)}), ` +
          `slapd ${us(server)}; binds per operation ${(binds / n).toFixed(2)}`,
      );
    }
  } finally {
    await pools?.closeAll();
    await slapd.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const rounds = Number(/^--rounds=(\d+)$/.exec(process.argv[2] ?? "")?.[1] ?? 200);
  const load = () =>
    os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(" ");
  console.log(`ldap connector: ${rounds} rounds of provision/observe/revoke/observe (load ${load()})`);
  benchLdap({ rounds })
    .then(() => console.log(`load average ${load()} at the end`))
    .catch((error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    });
}
