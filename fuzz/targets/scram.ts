/**
 * SCRAM-SHA-256 client steps against a hostile server. Input layout: server-first-message, NUL,
 * server-final-message, NUL, DER certificate (for tls-server-end-point); missing parts are empty.
 * Properties: only PgWireError escapes parseScramServerFirst, scramClientFinal (for what the parse
 * accepted), verifyScramServerFinal and tlsServerEndPoint; an accepted iteration count is one the
 * client can compute in bounded time; a real exchange with an honest server (built here from
 * RFC 5802's definitions, not from the client's code) verifies, and a one-bit change of the server
 * signature does not.
 */
import { createHash, createHmac, pbkdf2Sync, timingSafeEqual } from "node:crypto";
import fc from "fast-check";
import {
  MAX_SCRAM_ITERATIONS,
  PgWireError,
  parseScramServerFirst,
  scramClientFinal,
  scramClientFirst,
  tlsServerEndPoint,
  verifyScramServerFinal,
} from "../../src/lib/pg-wire.js";
import { expect, only, type FuzzTarget, type ValidInput } from "../harness.js";

/** RFC 7677 section 3's client nonce, so the RFC's messages are valid seeds. */
export const CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO";
const pgWire = (error: unknown) => error instanceof PgWireError;

/** Iteration counts up to this are computed on every input; above, only refusal is checked (speed). */
const COMPUTED_ITERATIONS = 16;

function split(input: Buffer): [string, string, Buffer] {
  const first = input.indexOf(0);
  if (first < 0) return [input.toString("utf8"), "", Buffer.alloc(0)];
  const second = input.indexOf(0, first + 1);
  const end = second < 0 ? input.length : second;
  return [
    input.toString("utf8", 0, first),
    input.toString("utf8", first + 1, end),
    second < 0 ? Buffer.alloc(0) : input.subarray(second + 1),
  ];
}

function check(input: Buffer): void {
  const [serverFirst, serverFinal, certificate] = split(input);
  const clientFirst = scramClientFirst("", CLIENT_NONCE);
  const parsed = only(pgWire, "parseScramServerFirst", () => parseScramServerFirst(serverFirst, CLIENT_NONCE));
  if (parsed !== undefined) {
    expect(
      Number.isSafeInteger(parsed.iterations) && parsed.iterations >= 1 && parsed.iterations <= MAX_SCRAM_ITERATIONS,
      `accepted an iteration count of ${parsed.iterations}`,
    );
    if (parsed.iterations <= COMPUTED_ITERATIONS) {
      const final = only(pgWire, "scramClientFinal", () => scramClientFinal("pencil", clientFirst, parsed));
      if (final !== undefined) {
        only(pgWire, "verifyScramServerFinal", () =>
          verifyScramServerFinal(serverFinal, final.expectedServerSignature),
        );
      }
    }
  }
  only(pgWire, "verifyScramServerFinal", () => verifyScramServerFinal(serverFinal, Buffer.alloc(32, 7)));
  const hash = only(pgWire, "tlsServerEndPoint", () => tlsServerEndPoint(certificate));
  if (hash !== undefined) expect(hash.length >= 28, "channel binding data shorter than SHA-224");
}

const hmac = (key: Buffer, data: string) => createHmac("sha256", key).update(data, "utf8").digest();
/** Printable, no comma: what RFC 5802 allows in a nonce. */
const nonceChars = fc.string({
  unit: fc
    .integer({ min: 0x21, max: 0x7e })
    .filter((c) => c !== 0x2c)
    .map((c) => String.fromCharCode(c)),
  minLength: 1,
  maxLength: 32,
});

/** An honest server: derives its keys from the password and checks the client's proof. */
const valid: fc.Arbitrary<ValidInput> = fc
  .tuple(
    fc.string({ unit: "grapheme", maxLength: 24 }),
    fc.uint8Array({ minLength: 1, maxLength: 32 }),
    fc.integer({ min: 1, max: COMPUTED_ITERATIONS }),
    nonceChars,
  )
  .map(([password, saltBytes, iterations, serverNonce]) => {
    const salt = Buffer.from(saltBytes);
    const serverFirst = `r=${CLIENT_NONCE}${serverNonce},s=${salt.toString("base64")},i=${iterations}`;
    return {
      bytes: Buffer.from(`${serverFirst}\0`, "utf8"),
      verify: () => {
        const clientFirst = scramClientFirst("", CLIENT_NONCE);
        const final = scramClientFinal(password, clientFirst, parseScramServerFirst(serverFirst, CLIENT_NONCE));
        const normalized = /^[\x20-\x7e]*$/.test(password) ? password : password.normalize("NFKC");
        const salted = pbkdf2Sync(normalized, salt, iterations, 32, "sha256");
        const withoutProof = final.message.replace(/,p=[^,]*$/, "");
        const authMessage = `${clientFirst.bare},${serverFirst},${withoutProof}`;
        const storedKey = createHash("sha256").update(hmac(salted, "Client Key")).digest();
        const proof = Buffer.from(/,p=([^,]*)$/.exec(final.message)?.[1] ?? "", "base64");
        const signature = hmac(storedKey, authMessage);
        const clientKey = Buffer.from(proof.map((byte, i) => byte ^ (signature[i] ?? 0)));
        expect(
          timingSafeEqual(createHash("sha256").update(clientKey).digest(), storedKey),
          "the honest server refused the client's proof",
        );
        const serverSignature = hmac(hmac(salted, "Server Key"), authMessage);
        verifyScramServerFinal(`v=${serverSignature.toString("base64")}`, final.expectedServerSignature);
        const forged = Buffer.from(serverSignature);
        forged[0] = (forged[0] ?? 0) ^ 1;
        let refused = false;
        try {
          verifyScramServerFinal(`v=${forged.toString("base64")}`, final.expectedServerSignature);
        } catch (error) {
          refused = error instanceof PgWireError;
        }
        expect(refused, "a forged server signature was accepted");
      },
    };
  });

export const scram: FuzzTarget = { name: "scram", check, valid };
