/**
 * Class: secrets in error logs (Vault CVE-2025-4166, where a malformed request's secret data reached the
 * error log). Failures on Stint's vault and target paths whose error would naturally contain the value: a
 * malformed or refused request body that carries a secret, a target that echoes the password it was sent
 * in its error, a rotation that fails at such a target. After all of them, no server log line (trace
 * level), no HTTP answer and no audit event may contain any of the values.
 * test/http/redaction.test.ts covers sign-in, tokens and TOTP; this file covers secrets and credentials.
 */
import { randomBytes } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import type { DestinationStream } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testServer, type TestServer } from "../../src/testing/server.js";

function capture(): DestinationStream & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    write(line: string) {
      lines.push(line);
    },
  };
}

/** A PostgreSQL-speaking server that asks for the password in clear and puts it in its error message. */
async function startEchoingServer(): Promise<{ port: number; heard: string[]; close(): Promise<void> }> {
  const heard: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    let buffer = Buffer.alloc(0);
    let started = false;
    socket.on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (!started) {
        if (buffer.length < 8) return;
        const length = buffer.readInt32BE(0);
        const code = buffer.readInt32BE(4);
        if (code === 80877103 || code === 80877104) {
          socket.write("N");
          buffer = buffer.subarray(8);
          return;
        }
        if (buffer.length < length) return;
        buffer = buffer.subarray(length);
        started = true;
        socket.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3]));
      }
      if (buffer.length < 5 || buffer[0] !== 0x70) return;
      const length = buffer.readInt32BE(1);
      if (buffer.length < 1 + length) return;
      const password = buffer.subarray(5, 1 + length - 1).toString("utf8");
      heard.push(password);
      const fields = Buffer.concat(
        [
          ["S", "FATAL"],
          ["V", "FATAL"],
          ["C", "28P01"],
          ["M", `password authentication failed: you sent "${password}"`],
          ["D", `the password "${password}" is not the one on file`],
        ]
          .map(([k, v]) => Buffer.concat([Buffer.from(k!), Buffer.from(v!), Buffer.from([0])]))
          .concat([Buffer.from([0])]),
      );
      const header = Buffer.alloc(5);
      header.write("E", 0);
      header.writeInt32BE(fields.length + 4, 1);
      socket.end(Buffer.concat([header, fields]));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    heard,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

const hex = randomBytes(4).toString("hex");
const secret = (label: string) => `${label}-${hex}-${randomBytes(6).toString("hex")}`;

describe("secrets in error logs (Vault CVE-2025-4166)", () => {
  const log = capture();
  const values = new Map<string, string>();
  const answers: { what: string; status: number; body: string }[] = [];
  let server: TestServer;
  let echo: Awaited<ReturnType<typeof startEchoingServer>>;

  async function send(what: string, method: "GET" | "POST" | "PUT", url: string, payload?: string | object) {
    const res = await server.app.inject({
      method,
      url,
      headers: {
        authorization: server.adminAuth,
        ...(typeof payload === "string" ? { "content-type": "application/json" } : {}),
      },
      ...(payload !== undefined ? { payload } : {}),
    });
    answers.push({ what, status: res.statusCode, body: res.body });
    return res;
  }

  beforeAll(async () => {
    [server, echo] = await Promise.all([
      testServer("pglite", { logLevel: "trace", logDestination: log }),
      startEchoingServer(),
    ]);
    const remember = (label: string) => {
      const value = secret(label);
      values.set(label, value);
      return value;
    };

    // Malformed JSON bodies with the value near the start, where a parser's message quotes the text.
    const v1 = remember("vault-value-in-broken-json");
    await send("vault put, broken JSON", "PUT", "/v1/secrets/app%2Fone", `{"value":"${v1}","kind":"password"`);
    const v2 = remember("vault-value-bad-token");
    await send("vault put, bad token", "PUT", "/v1/secrets/app%2Fone", `{"value":"${v2}" "kind":"password"}`);
    // Well-formed bodies the schema refuses, with the value beside the fault.
    const v3 = remember("vault-value-bad-kind");
    await send("vault put, bad kind", "PUT", "/v1/secrets/app%2Fone", { value: v3, kind: "nonsense" });
    const v4 = remember("vault-value-unknown-field");
    await send("vault put, unknown field", "PUT", "/v1/secrets/app%2Fone", { value: v4, bogus: true });
    const v5 = remember("vault-value-wrong-type");
    await send("vault put, value in the wrong place", "PUT", "/v1/secrets/app%2Fone", { value: 7, description: v5 });
    const v6 = remember("credential-in-broken-json");
    await send("credential, broken JSON", "PUT", "/v1/targets/echo-db/credential", `{"secret":"${v6}"`);
    const v7 = remember("credential-unknown-field");
    await send("credential, unknown field", "PUT", "/v1/targets/echo-db/credential", { secret: v7, bogus: 1 });

    // A target that echoes the password it receives in its error message.
    const applied = await send("apply", "POST", "/v1/config/apply", {
      yaml: `apiVersion: stint/v1
targets:
  - name: echo-db
    kind: postgres
    address: postgres://stint_admin@127.0.0.1:${echo.port}/postgres?sslmode=disable
    credential: { secret: targets/echo-db/admin }
    options:
      auth: { allow: [password] }
`,
    });
    if (applied.statusCode !== 200) {
      // Without the weaker-auth opt-in some versions refuse the option; the plain target is enough here.
      await send("apply without auth option", "POST", "/v1/config/apply", {
        yaml: `apiVersion: stint/v1
targets:
  - name: echo-db
    kind: postgres
    address: postgres://stint_admin@127.0.0.1:${echo.port}/postgres?sslmode=disable
    credential: { secret: targets/echo-db/admin }
`,
      });
    }
    const admin = remember("target-admin-password");
    const set = await send("credential set", "PUT", "/v1/targets/echo-db/credential", { secret: admin });
    expect(set.statusCode, set.body).toBe(200);
    await send("target test", "POST", "/v1/targets/echo-db/test");
    await send("discovery", "GET", "/v1/targets/echo-db/discovery");

    // A secret whose rotation fails at that target: the old and new passwords must not surface either.
    const old = remember("rotated-login-password");
    const put = await send("vault put", "PUT", "/v1/secrets/echo%2Fapp", {
      kind: "password",
      value: old,
      platformRoles: ["admin"],
      rotation: { target: "echo-db", login: "app" },
    });
    expect(put.statusCode, put.body).toBe(200);
    await send("rotation", "POST", "/v1/secrets/echo%2Fapp/rotate");
    await server.outbox.runOnce();
    const audit = await send("audit events", "GET", "/v1/audit/events?limit=1000");
    expect(audit.statusCode).toBe(200);
  });

  afterAll(async () => {
    await server?.cleanup();
    await echo?.close();
  });

  it("the failures happened (the checks below are not vacuous)", () => {
    expect(echo.heard).toContain(values.get("target-admin-password"));
    const refused = answers.filter((a) => a.status >= 400).map((a) => a.what);
    for (const what of ["vault put, broken JSON", "vault put, bad kind", "credential, broken JSON", "rotation"])
      expect(refused).toContain(what);
    const tested = answers.find((a) => a.what === "target test")!;
    expect(JSON.parse(tested.body)).toMatchObject({ ok: false });
    expect(log.lines.length).toBeGreaterThan(10); // one line per request at trace (there were two)
  });

  it("no HTTP answer carries a value", () => {
    const leaks: string[] = [];
    for (const [label, value] of values)
      for (const answer of answers.filter((a) => a.what !== "audit events"))
        if (answer.body.includes(value))
          leaks.push(`${label} in the answer to ${answer.what}: ${answer.body.slice(0, 300)}`);
    expect(leaks).toEqual([]);
  });

  it("no log line carries a value", () => {
    const leaks: string[] = [];
    for (const [label, value] of values) {
      const line = log.lines.find((l) => l.includes(value));
      if (line) leaks.push(`${label} in: ${line.slice(0, 300)}`);
    }
    expect(leaks).toEqual([]);
  });

  it("no audit event carries a value", () => {
    const events = answers.find((a) => a.what === "audit events")!.body;
    expect(events).toContain("secret.rotation_failed");
    const leaks = [...values].filter(([, value]) => events.includes(value)).map(([label]) => label);
    expect(leaks).toEqual([]);
  });
});
