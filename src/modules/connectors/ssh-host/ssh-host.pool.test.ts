/**
 * The ssh-host connector's pool of admin connections (../connection-pool.ts) against a real OpenSSH sshd
 * (src/testing/sshd.ts): operations reuse one connection (the same client port at the server), a connection
 * the server side kills is replaced without the caller noticing, idle connections close, and a call with
 * another admin key or another pinned host key never gets the pooled connection.
 */
import { execFileSync } from "node:child_process";
import v8 from "node:v8";
import vm from "node:vm";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_POOL_SETTINGS } from "../connection-pool.js";
import type { ConnectorTarget } from "../connector.types.js";
import { connectorFailure } from "../../../testing/connector-failure.js";
import { sshHostTarget, startSshd, type Sshd } from "../../../testing/sshd.js";
import { eventually, sshClientPorts, sshdChildren } from "../../../testing/ssh-connections.js";
import { sshHostConnector as connector, sshHostPools } from "./ssh-host.connector.js";
import { withSession } from "./ssh-host.client.js";

let sshd: Sshd;
let target: ConnectorTarget;
const ports = () => sshClientPorts(sshd.port);
const observeRoot = (on: ConnectorTarget = target) => connector.observe(on, { group: "root" });

const failure = connectorFailure;

/** Closes every pooled connection and waits until the server has none left. */
async function freshPools(): Promise<void> {
  await sshHostPools.closeAll();
  expect(await eventually(() => ports().length === 0)).toBe(true);
}

beforeAll(async () => {
  sshd = await startSshd();
  target = sshHostTarget(sshd, "pool-host");
});

afterEach(async () => {
  sshHostPools.configure(DEFAULT_POOL_SETTINGS);
  await freshPools();
});

afterAll(async () => {
  await sshHostPools.closeAll();
  await sshd?.stop();
});

describe("ssh-host admin connection pool", () => {
  it("operations one after another run on one connection, kept open between them", async () => {
    await freshPools();
    await connector.test(target);
    const [first, ...others] = ports();
    expect(first).toBeDefined();
    expect(others).toEqual([]);
    await observeRoot();
    await connector.discover(target);
    await observeRoot();
    expect(ports()).toEqual([first]);
  });

  it("concurrent operations use at most the pool's size of connections", async () => {
    await freshPools();
    await Promise.all(Array.from({ length: 12 }, () => observeRoot()));
    expect(ports().length).toBeGreaterThanOrEqual(1);
    expect(ports().length).toBeLessThanOrEqual(DEFAULT_POOL_SETTINGS.max);
  });

  it("a pooled connection killed at the server is replaced: the next operation succeeds on a new one", async () => {
    await freshPools();
    await observeRoot();
    const [before] = ports();
    const children = sshdChildren(sshd.pid);
    expect(children.length).toBeGreaterThan(0);
    // The sshd process serving the pooled connection dies; the next call comes at once, before or after
    // the client hears of it.
    execFileSync("kill", ["-KILL", ...children.map(String)]);
    expect(await observeRoot()).toEqual(["root"]);
    expect(ports()).toHaveLength(1);
    expect(ports()).not.toContain(before);
  });

  it("a pooled connection whose server went silent (stopped, no FIN) is given up and the call retried", async () => {
    await freshPools();
    await observeRoot();
    const [before] = ports();
    // The connection's sshd processes (the monitor and its unprivileged child that speaks the protocol).
    const stopped = sshdChildren(sshd.pid).flatMap((child) => [child, ...sshdChildren(child)]);
    execFileSync("kill", ["-STOP", ...stopped.map(String)]);
    try {
      expect(await observeRoot()).toEqual(["root"]);
      expect(ports()).not.toContain(before);
    } finally {
      execFileSync("kill", ["-KILL", ...stopped.map(String)]);
    }
  }, 60_000);

  it("an idle connection is closed after idleMs", async () => {
    await freshPools();
    sshHostPools.configure({ idleMs: 300 });
    await observeRoot();
    expect(ports()).toHaveLength(1);
    expect(await eventually(() => ports().length === 0)).toBe(true);
    expect(await observeRoot()).toEqual(["root"]);
  });

  it("a call with another admin key signs in anew (and fails), and the old key's connection is closed", async () => {
    await freshPools();
    await observeRoot();
    expect(ports()).toHaveLength(1);
    const otherKey = execFileSync("sh", [
      "-c",
      `d=$(mktemp -d) && ssh-keygen -q -t ed25519 -N '' -f "$d/k" && cat "$d/k" && rm -r "$d"`,
    ]).toString();
    const refusedKey = await failure(observeRoot({ ...target, credential: otherKey }));
    expect(refusedKey.reason).toBe("refused");
    expect(refusedKey.message).toContain("did not accept the key");
    // The connection opened with the old key serves nothing any more.
    expect(await eventually(() => ports().length === 0)).toBe(true);
  });

  it("a call pinning another host key is refused even while a connection to the host is pooled", async () => {
    await freshPools();
    await observeRoot();
    const wrong = { ...target, options: { hostKey: `SHA256:${"B".repeat(43)}` } };
    const error = await failure(observeRoot(wrong));
    expect(error.reason).toBe("refused");
    expect(error.message).toContain("host key");
  });

  it("an aborted call closes its connection rather than pooling it", async () => {
    await freshPools();
    await observeRoot();
    const [pooled] = ports();
    const controller = new AbortController();
    const pending = failure(connector.discover(target, { signal: controller.signal }));
    controller.abort();
    expect((await pending).reason).toBe("unavailable");
    expect(await eventually(() => !ports().includes(pooled!))).toBe(true);
    expect(await observeRoot()).toEqual(["root"]);
  });

  it("a pooled connection does not keep what its calls returned (nothing piles up while it lives)", async () => {
    await freshPools();
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as () => void;
    const settle = async () => {
      for (let i = 0; i < 3; i++) {
        await new Promise((resolve) => setImmediate(resolve));
        gc();
      }
      return process.memoryUsage().arrayBuffers;
    };
    const CALLS = 24;
    const SIZE = 8 * 2 ** 20;
    // Each call runs a command on the pooled connection and returns a large value its caller then drops.
    const call = () =>
      withSession(target, undefined, async (session) => {
        await session.run({ argv: ["true"] });
        return Buffer.alloc(SIZE, 1);
      });
    await call();
    const [pooled] = ports();
    const before = await settle();
    for (let i = 0; i < CALLS; i++) expect((await call()).length).toBe(SIZE);
    const after = await settle();
    // One connection the whole time, still open: the calls' values went with their callers.
    expect(ports()).toEqual([pooled]);
    expect((after - before) / 2 ** 20).toBeLessThan((CALLS * SIZE) / 2 ** 20 / 4);
  });
});
