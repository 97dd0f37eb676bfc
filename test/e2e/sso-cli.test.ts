/**
 * `stint login --sso` and `stint login --device` (issue 15, acceptance 1, CLI part): the real CLI (runCli) against
 * the server and a real OpenID Provider (oidc-provider on loopback). For the loopback redirect the test plays the
 * browser: it opens the address the CLI printed, goes through the provider's login and consent pages, and follows
 * Stint's redirect to the CLI's own 127.0.0.1 listener; the CLI redeems the one-time code with its PKCE verifier.
 * For the device grant it opens the verification address the CLI printed and confirms the code while the CLI
 * polls. Both end with a saved session whose `whoami` is the provider's user with the claim's groups.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliContext } from "../../src/cli/context.js";
import { runCli } from "../../src/cli/program.js";
import { browseThrough, startOidcProvider, type TestProvider } from "../../src/testing/oidc-provider.js";
import { testServer, type TestServer } from "../../src/testing/server.js";
import { injectFetch } from "./inject-fetch.js";

const PUBLIC_URL = "http://stint.test";
const SERVER = "http://127.0.0.1:8420";

let idp: TestProvider;
let server: TestServer;
let work: string;

/** The CLI's fetch, answered by the in-process server. */
const bridge = injectFetch(() => server.app);

/** Runs the CLI; `onStderr` sees everything it writes to stderr as it comes. */
function cli(dir: string, argv: string[], onStderr: (text: string) => void = () => undefined) {
  const stdin = new PassThrough();
  stdin.end();
  const out: string[] = [];
  const err: string[] = [];
  const ctx: CliContext = {
    stdin: Object.assign(stdin, { isTTY: false }),
    stdout: { write: (chunk) => out.push(String(chunk)) > 0 },
    stderr: {
      write: (chunk) => {
        err.push(String(chunk));
        onStderr(err.join(""));
        return true;
      },
    },
    env: { STINT_CONFIG_DIR: dir, HOME: dir, STINT_SERVER: SERVER },
    fetch: bridge,
    now: () => Date.now(),
    version: "0.0.0-test",
  };
  return runCli(argv, ctx).then((code) => ({ code, stdout: out.join(""), stderr: err.join("") }));
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), "stint-sso-cli-"));
  idp = await startOidcProvider({ redirectUris: [`${PUBLIC_URL}/v1/auth/sso/corp/callback`] });
  await writeFile(
    path.join(work, "stint.yaml"),
    `ssoProviders:
  - id: corp
    displayName: Corp
    issuer: ${idp.issuer}
    clientId: ${idp.clientId}
    clientSecret: ${idp.clientSecret}
    scopes: [openid, email, profile, groups]
    groupsClaim: groups
`,
  );
  server = await testServer("pglite", {
    env: { STINT_CONFIG_FILE: path.join(work, "stint.yaml"), STINT_PUBLIC_URL: PUBLIC_URL },
  });
  idp.accounts.set("sub-carol", {
    preferred_username: "carol",
    email: "carol@example.com",
    groups: ["platform", "dba"],
  });
}, 120_000);

afterAll(async () => {
  await server?.cleanup();
  await idp?.close();
  await rm(work, { recursive: true, force: true });
});

describe("stint login with single sign-on", () => {
  it("--sso: browser through the provider, back to the CLI's loopback listener, session saved", async () => {
    const dir = await mkdtemp(path.join(work, "cli-"));
    let browsing: Promise<void> | undefined;
    const login = cli(dir, ["login", "--sso", "--json"], (text) => {
      const printed = /Open this address in a browser to sign in:\n\s+(\S+)/.exec(text);
      if (!printed || browsing) return;
      browsing = (async () => {
        const start = new URL(printed[1]!);
        expect(start.searchParams.get("redirect_uri")).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/callback$/);
        const toProvider = await server.app.inject({ method: "GET", url: `${start.pathname}${start.search}` });
        expect(toProvider.statusCode, toProvider.body).toBe(302);
        const callback = await browseThrough(toProvider.headers.location as string, "sub-carol", idp.issuer);
        const back = await server.app.inject({ method: "GET", url: `${callback.pathname}${callback.search}` });
        const toCli = new URL(back.headers.location as string);
        expect(toCli.origin).toBe(new URL(start.searchParams.get("redirect_uri")!).origin);
        // Only the single-use code travels in the URL.
        expect([...toCli.searchParams.keys()]).toEqual(["code"]);
        const page = await fetch(toCli);
        expect(await page.text()).toContain("Signed in to Stint");
      })();
    });
    const result = await login;
    await browsing;
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ principal: { name: "carol", groups: ["dba", "platform"] } });
    const saved = JSON.parse(await readFile(path.join(dir, "credentials.json"), "utf8")) as {
      principal: { name: string };
    };
    expect(saved.principal.name).toBe("carol");
    const whoami = await cli(dir, ["whoami", "--json"]);
    expect(whoami.code, whoami.stderr).toBe(0);
    expect(JSON.parse(whoami.stdout)).toMatchObject({ name: "carol" });
  });

  it("--device: the code confirmed at the provider while the CLI polls through Stint", async () => {
    const dir = await mkdtemp(path.join(work, "cli-"));
    let browsing: Promise<void> | undefined;
    const login = cli(dir, ["login", "--device", "corp", "--json"], (text) => {
      const printed = /\(or open (\S+)\)/.exec(text);
      if (!printed || browsing) return;
      browsing = (async () => {
        expect(printed[1]!.startsWith(idp.issuer)).toBe(true);
        const end = await browseThrough(printed[1]!, "sub-carol", idp.issuer);
        expect(end.href.startsWith(idp.issuer)).toBe(true);
      })();
    });
    const result = await login;
    await browsing;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/enter the code \S+/);
    expect(JSON.parse(result.stdout)).toMatchObject({ principal: { name: "carol" } });
    // The provider's device code never reached the CLI: it holds only Stint's handle.
    const handoffs = await server.store.db.selectFrom("sso_handoffs").select(["kind", "used_at"]).execute();
    expect(handoffs.filter((h) => h.kind === "device").every((h) => h.used_at !== null)).toBe(true);
  });

  it("--sso with a provider the server does not have is a usage error naming the ones it has", async () => {
    const dir = await mkdtemp(path.join(work, "cli-"));
    const result = await cli(dir, ["login", "--sso", "nope"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("corp");
  });
});
