/**
 * `stint login --sso [provider]` and `stint login --device [provider]`: single sign-on from the CLI.
 *
 * --sso: the CLI listens on 127.0.0.1 (a random port), prints the address to open in a browser (Stint's start
 * URL, carrying the CLI's PKCE challenge and its loopback address), and waits for Stint to send the browser
 * back with a one-time code, which only this CLI (holding the PKCE verifier) can redeem. No token or secret is
 * ever in a URL but that single-use code.
 * --device: the device authorization grant through Stint (which keeps the client secret): the CLI prints the
 * provider's verification address and user code, then polls Stint until the person confirmed.
 */
import { createHash, randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { deviceStartResult, providerList } from "../../contract/sso.js";
import { tokenPair, type TokenPairDto } from "../../contract/identity.js";
import type { ApiClient } from "../client.js";
import type { CliContext } from "../context.js";
import { CliError, EXIT_CODES, isCliError, usageError } from "../exit-codes.js";
import { note } from "../output.js";

/** How long the CLI waits for the browser (or the device confirmation). */
const WAIT_MS = 5 * 60_000;

async function chooseProvider(client: ApiClient, wanted: string | undefined): Promise<string> {
  const { data } = await client.request("GET", "/v1/auth/sso/providers", { auth: false, schema: providerList });
  const ids = data.items.map((p) => p.id);
  if (wanted !== undefined) {
    if (!ids.includes(wanted))
      throw usageError(
        `${client.server} has no single sign-on provider ${wanted} (it has: ${ids.join(", ") || "none"})`,
      );
    return wanted;
  }
  if (ids.length === 1) return ids[0]!;
  if (ids.length === 0) throw usageError(`${client.server} has no single sign-on provider configured`);
  throw usageError(`name the provider: --sso ${ids.join(" | --sso ")}`);
}

const PAGE = (text: string) =>
  `<!doctype html><meta charset="utf-8"><title>Stint</title><p style="font-family:sans-serif">${text}</p>`;

/** Waits for the one request to /callback on the loopback server; its code (or the error Stint sent). */
function waitForCallback(server: Server, signal: AbortSignal): Promise<{ code: string } | { error: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new CliError("INTERRUPTED", "no sign-in came back within 5 minutes")),
      WAIT_MS,
    );
    signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
    server.on("request", (req, res) => {
      const url = new URL(req.url ?? "/", "http://127.0.0.1");
      if (url.pathname !== "/callback") {
        res.writeHead(404).end();
        return;
      }
      const code = url.searchParams.get("code");
      const error = url.searchParams.get("error");
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
      res.end(
        PAGE(
          code
            ? "Signed in to Stint. You can close this tab and go back to the terminal."
            : `Sign-in refused (${String(error)
                .slice(0, 64)
                .replace(/[^A-Z_]/g, "")}).`,
        ),
      );
      clearTimeout(timer);
      if (code) resolve({ code });
      else resolve({ error: error ?? "SSO_CODE_INVALID" });
    });
  });
}

export async function ssoLogin(ctx: CliContext, client: ApiClient, wanted: string | undefined): Promise<TokenPairDto> {
  const provider = await chooseProvider(client, wanted);
  const verifier = randomBytes(32).toString("base64url");
  const challenge = createHash("sha256").update(verifier).digest("base64url");
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const done = new AbortController();
  try {
    const redirect = `http://127.0.0.1:${(server.address() as AddressInfo).port}/callback`;
    const start = new URL(`/v1/auth/sso/${provider}/login`, client.server);
    start.searchParams.set("code_challenge", challenge);
    start.searchParams.set("redirect_uri", redirect);
    note(ctx, `Open this address in a browser to sign in:\n  ${start.href}`);
    const answer = await waitForCallback(server, done.signal);
    if ("error" in answer)
      throw new CliError(
        answer.error.replace(/[^A-Z_]/g, "").slice(0, 64) || "SSO_CODE_INVALID",
        "the sign-in was refused",
        {
          exitCode: EXIT_CODES.unauthenticated,
        },
      );
    const { data } = await client.request("POST", "/v1/auth/sso/redeem", {
      body: { code: answer.code, codeVerifier: verifier },
      auth: false,
      schema: tokenPair,
    });
    return data;
  } finally {
    done.abort();
    server.closeAllConnections();
    server.close();
  }
}

export async function deviceLogin(
  ctx: CliContext,
  client: ApiClient,
  wanted: string | undefined,
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
): Promise<TokenPairDto> {
  const provider = await chooseProvider(client, wanted);
  const { data: started } = await client.request("POST", `/v1/auth/sso/${provider}/device`, {
    body: {},
    auth: false,
    schema: deviceStartResult,
  });
  note(
    ctx,
    `To sign in, open ${started.verificationUri} and enter the code ${started.userCode}` +
      (started.verificationUriComplete ? `\n  (or open ${started.verificationUriComplete})` : ""),
  );
  let interval = started.interval;
  const deadline = ctx.now() + Math.min(started.expiresIn * 1000, WAIT_MS * 6);
  while (ctx.now() < deadline) {
    await sleep(interval * 1000);
    try {
      const { data } = await client.request("POST", "/v1/auth/sso/device/token", {
        body: { deviceCode: started.deviceCode },
        auth: false,
        schema: tokenPair,
      });
      return data;
    } catch (error) {
      if (!(isCliError(error) && error.code === "SSO_AUTHORIZATION_PENDING")) throw error;
      const next = Number(error.details?.interval);
      if (Number.isInteger(next) && next >= 1 && next <= 60) interval = next;
    }
  }
  throw new CliError("INTERRUPTED", "the device sign-in was not confirmed in time");
}
