/**
 * Polling a device grant faster than its interval (security review).
 *
 * `POST /v1/auth/sso/:provider/device` and `POST /v1/auth/sso/device/token` are public: anyone may start a
 * device grant and poll it. Stint holds the client's credentials and asks the provider's token endpoint once per
 * poll, and it passed every poll on, however fast: the provider's `slow_down` only raised the interval Stint
 * *told* the client. A script polling its own handle in a loop made Stint hammer the provider as Stint's client,
 * and providers throttle per client (Okta's and Entra ID's rate limits): everyone's sign-in then failed. Now
 * Stint keeps the time of each grant's last poll and answers a poll within the interval itself
 * (`SSO_AUTHORIZATION_PENDING`, with the interval raised by 5 s as `slow_down` does), without asking the provider.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../../src/lib/clock.js";
import { browseThrough, startOidcProvider, type TestProvider } from "../../src/testing/oidc-provider.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

const PUBLIC_URL = "http://stint.test";
const clock = manualClock(new Date());
let idp: TestProvider;
let server: TestServer;
let work: string;

function poll(handle: string) {
  return server.app.inject({ method: "POST", url: "/v1/auth/sso/device/token", payload: { deviceCode: handle } });
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), "stint-sso-device-"));
  idp = await startOidcProvider({ redirectUris: [`${PUBLIC_URL}/v1/auth/sso/corp/callback`] });
  await writeFile(path.join(work, "client-secret"), `${idp.clientSecret}\n`);
  await writeFile(
    path.join(work, "stint.yaml"),
    `ssoProviders:
  - id: corp
    displayName: Corp
    issuer: ${idp.issuer}
    clientId: ${idp.clientId}
    clientSecretFile: ${path.join(work, "client-secret")}
`,
  );
  server = await testServer("pglite", {
    clock,
    env: { STINT_CONFIG_FILE: path.join(work, "stint.yaml"), STINT_PUBLIC_URL: PUBLIC_URL },
  });
}, 120_000);

afterAll(async () => {
  await server?.cleanup();
  await idp?.close();
  await rm(work, { recursive: true, force: true });
});

describe("device grant polling", () => {
  it("polls within the interval are answered by Stint, not passed to the provider", async () => {
    const started = await server.app.inject({ method: "POST", url: "/v1/auth/sso/corp/device", payload: {} });
    expect(started.statusCode, started.body).toBe(200);
    const device = started.json<{ deviceCode: string; verificationUriComplete: string; interval: number }>();
    const before = idp.requests.get("/token") ?? 0;
    // A script polling in a loop, with no time passing between its polls.
    const answers = [];
    for (let i = 0; i < 20; i++) answers.push(await poll(device.deviceCode));
    expect(answers.map((a) => a.json<{ error: { code: string } }>().error.code)).toEqual(
      Array<string>(20).fill("SSO_AUTHORIZATION_PENDING"),
    );
    // Before the fix: 20 token requests as Stint's client.
    expect((idp.requests.get("/token") ?? 0) - before).toBe(1);
    const told = answers.at(-1)!.json<{ error: { details: { interval: number } } }>().error.details.interval;
    expect(told).toBeGreaterThan(device.interval);

    // A client that waits as told signs in once the person confirmed (the provider's own clock wants its
    // interval too: polled again until it answers, within a generous bound).
    idp.accounts.set("sub-erin", { preferred_username: "erin" });
    await browseThrough(device.verificationUriComplete, "sub-erin", idp.issuer);
    let done = await poll(device.deviceCode);
    for (let i = 0; i < 60 && done.statusCode !== 200; i++) {
      expect(done.json<{ error: { code: string } }>().error.code).toBe("SSO_AUTHORIZATION_PENDING");
      await new Promise((resolve) => setTimeout(resolve, 1000));
      clock.advance(told * 1000);
      done = await poll(device.deviceCode);
    }
    expect(done.statusCode, done.body).toBe(200);
    expect(done.json<{ principal: { name: string } }>().principal.name).toBe("erin");
  });
});
