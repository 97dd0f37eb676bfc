/**
 * A software WebAuthn authenticator for API-level tests (the browser tests use Chromium's virtual one): it
 * answers registration options with a `none` attestation and authentication options with an ES256 assertion,
 * built byte for byte as WebAuthn Level 2 describes (authenticator data, COSE key, client data JSON). Every
 * field a test may want to falsify is a parameter: origin, RP ID, challenge, counter, user verification.
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from "node:crypto";

const b64url = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64url");
const sha256 = (data: Uint8Array | string) => createHash("sha256").update(data).digest();

/** Minimal CBOR (RFC 8949) encoder: unsigned/negative integers, byte and text strings, maps. */
function cborHead(major: number, value: number): Buffer {
  if (value < 24) return Buffer.from([(major << 5) | value]);
  if (value < 256) return Buffer.from([(major << 5) | 24, value]);
  if (value < 65536) return Buffer.from([(major << 5) | 25, value >> 8, value & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(value, 1);
  return b;
}
type Cbor = number | string | Uint8Array | Map<Cbor, Cbor>;
export function cbor(value: Cbor): Buffer {
  if (typeof value === "number") return value >= 0 ? cborHead(0, value) : cborHead(1, -1 - value);
  if (typeof value === "string") {
    const text = Buffer.from(value, "utf8");
    return Buffer.concat([cborHead(3, text.length), text]);
  }
  if (value instanceof Uint8Array) return Buffer.concat([cborHead(2, value.length), Buffer.from(value)]);
  const parts = [cborHead(5, value.size)];
  for (const [k, v] of value) parts.push(cbor(k), cbor(v));
  return Buffer.concat(parts);
}

export interface SoftCredential {
  id: Buffer;
  privateKey: KeyObject;
  publicCose: Buffer;
  counter: number;
}

const FLAG_UP = 0x01;
const FLAG_UV = 0x04;
const FLAG_AT = 0x40;

function counterBytes(counter: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(counter >>> 0, 0);
  return b;
}

export function createSoftAuthenticator(defaults: { origin: string; rpId: string }) {
  function clientData(type: string, challenge: string, origin: string): Buffer {
    return Buffer.from(JSON.stringify({ type, challenge, origin, crossOrigin: false }), "utf8");
  }

  return {
    /** A new credential answering registration options (as startRegistration would return it). */
    register(
      options: { challenge: string },
      overrides: { origin?: string; rpId?: string; challenge?: string; userVerified?: boolean } = {},
    ) {
      const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
      const jwk = publicKey.export({ format: "jwk" });
      const publicCose = cbor(
        new Map<Cbor, Cbor>([
          [1, 2],
          [3, -7],
          [-1, 1],
          [-2, Buffer.from(jwk.x!, "base64url")],
          [-3, Buffer.from(jwk.y!, "base64url")],
        ]),
      );
      const id = randomBytes(32);
      const credential: SoftCredential = { id, privateKey, publicCose, counter: 0 };
      const flags = FLAG_UP | FLAG_AT | (overrides.userVerified === false ? 0 : FLAG_UV);
      const idLength = Buffer.alloc(2);
      idLength.writeUInt16BE(id.length, 0);
      const authData = Buffer.concat([
        sha256(overrides.rpId ?? defaults.rpId),
        Buffer.from([flags]),
        counterBytes(0),
        Buffer.alloc(16), // AAGUID: none
        idLength,
        id,
        publicCose,
      ]);
      const attestationObject = cbor(
        new Map<Cbor, Cbor>([
          ["fmt", "none"],
          ["attStmt", new Map()],
          ["authData", authData],
        ]),
      );
      return {
        credential,
        response: {
          id: b64url(id),
          rawId: b64url(id),
          type: "public-key" as const,
          response: {
            clientDataJSON: b64url(
              clientData(
                "webauthn.create",
                overrides.challenge ?? options.challenge,
                overrides.origin ?? defaults.origin,
              ),
            ),
            attestationObject: b64url(attestationObject),
            transports: ["internal"],
          },
          clientExtensionResults: {},
        },
      };
    },

    /** An assertion by `credential` (its counter moves up by one unless `counter` is given). */
    assert(
      credential: SoftCredential,
      options: { challenge: string },
      overrides: { origin?: string; rpId?: string; challenge?: string; userVerified?: boolean; counter?: number } = {},
    ) {
      const counter = overrides.counter ?? credential.counter + 1;
      credential.counter = Math.max(credential.counter, counter);
      const flags = FLAG_UP | (overrides.userVerified === false ? 0 : FLAG_UV);
      const authData = Buffer.concat([
        sha256(overrides.rpId ?? defaults.rpId),
        Buffer.from([flags]),
        counterBytes(counter),
      ]);
      const data = clientData(
        "webauthn.get",
        overrides.challenge ?? options.challenge,
        overrides.origin ?? defaults.origin,
      );
      const signature = sign("sha256", Buffer.concat([authData, sha256(data)]), credential.privateKey);
      return {
        id: b64url(credential.id),
        rawId: b64url(credential.id),
        type: "public-key" as const,
        response: {
          clientDataJSON: b64url(data),
          authenticatorData: b64url(authData),
          signature: b64url(signature),
        },
        clientExtensionResults: {},
      };
    },
  };
}
