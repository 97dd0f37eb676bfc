/**
 * The SSH proxy's check of a userauth signature (`userauthSignatureValid`): the signature blob a
 * client sends with a certificate offer (RFC 4252 §7), parsed by the proxy itself since ssh2 leaves
 * a certificate's signature unparsed. Input layout: byte 0 picks the algorithm the client offered,
 * byte 1 the certified key, byte 2 bit 0 leaves the signed data out; the rest is the signature blob.
 * Properties: never throws; says true only for a signature the key's owner made over the session's
 * data with an algorithm that matches both the key and the offer (ed25519, or RSA with SHA-2 —
 * never SHA-1); a genuine signature verifies, and a one-bit change, another key, another offered
 * algorithm or SHA-1 do not.
 */
import { generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import fc from "fast-check";
import { sshString } from "../../src/lib/ssh-wire.js";
import { userauthSignatureValid } from "../../src/proxies/ssh/ssh-proxy.js";
import { expect, feature, only, type FuzzTarget, type ValidInput } from "../harness.js";

/** What a client may offer (certificate algorithms first), and some it should not. */
const OFFERED = [
  "ssh-ed25519-cert-v01@openssh.com",
  "rsa-sha2-256-cert-v01@openssh.com",
  "rsa-sha2-512-cert-v01@openssh.com",
  "ssh-rsa-cert-v01@openssh.com",
  "ssh-ed25519",
  "ecdsa-sha2-nistp256-cert-v01@openssh.com",
  "",
];

interface Key {
  name: string;
  publicKey: KeyObject;
  privateKey: KeyObject;
}

/** RSA at 1024 bits: the proxy accepts any size the certificate carries, and signing stays fast. */
const KEYS: Key[] = [
  { name: "ed25519", ...generateKeyPairSync("ed25519") },
  { name: "rsa", ...generateKeyPairSync("rsa", { modulusLength: 1024 }) },
  { name: "ecdsa", ...generateKeyPairSync("ec", { namedCurve: "P-256" }) },
];
/** Keys of the same types that signed nothing. */
const OTHER_ED25519: Key = { name: "other-ed25519", ...generateKeyPairSync("ed25519") };
const OTHER_RSA: Key = { name: "other-rsa", ...generateKeyPairSync("rsa", { modulusLength: 1024 }) };
/** The session identifier and userauth request a client signs (fixed: the property is about the blob). */
const SIGNED_DATA = Buffer.concat([sshString(Buffer.alloc(32, 0x5a)), Buffer.from("\x32userauth request", "latin1")]);

/** Genuine signatures over SIGNED_DATA, by key name and signature algorithm (made once). */
const GENUINE = new Map<string, Buffer>();
function genuine(key: Key, algorithm: "ssh-ed25519" | "rsa-sha2-256" | "rsa-sha2-512" | "ssh-rsa"): Buffer {
  const id = `${key.name} ${algorithm}`;
  let signature = GENUINE.get(id);
  if (signature === undefined) {
    const hash = { "ssh-ed25519": null, "rsa-sha2-256": "sha256", "rsa-sha2-512": "sha512", "ssh-rsa": "sha1" }[
      algorithm
    ];
    signature = sign(hash, SIGNED_DATA, key.privateKey);
    GENUINE.set(id, signature);
  }
  return signature;
}

/** The SSH signature blob: string algorithm, string signature. */
const blobOf = (algorithm: string, signature: Buffer) => Buffer.concat([sshString(algorithm), sshString(signature)]);

/** Leading zero bytes do not change an RSA signature's value (RFC 8017 reads it as an integer). */
const asInteger = (bytes: Buffer) => {
  let i = 0;
  while (i < bytes.length && bytes[i] === 0) i++;
  return bytes.subarray(i).toString("hex");
};

function decode(input: Buffer) {
  const offered = OFFERED[(input[0] ?? 0) % OFFERED.length] ?? "";
  const key = KEYS[(input[1] ?? 0) % KEYS.length]!;
  const withBlob = ((input[2] ?? 0) & 1) === 0;
  return { offered, key, withBlob, signature: input.subarray(3) };
}

function verdict(offered: string, key: Key, signature: Buffer, blob: Buffer | undefined): boolean | undefined {
  return only(
    () => false,
    "userauthSignatureValid",
    () =>
      userauthSignatureValid(
        { key: { algo: offered, data: Buffer.alloc(0), comment: "" }, signature, ...(blob ? { blob } : {}) } as never,
        key.publicKey,
      ),
  );
}

function check(input: Buffer): void {
  const { offered, key, withBlob, signature } = decode(input);
  const ok = verdict(offered, key, signature, withBlob ? SIGNED_DATA : undefined);
  expect(ok === true || ok === false, `userauthSignatureValid answered ${String(ok)}`);
  feature(`${offered}|${key.name}|${withBlob}|${ok}`);
  if (!ok) return;
  // Accepted: it must be a genuine signature, for this key, in a form that matches the offer.
  expect(withBlob, "accepted a signature without the signed data");
  const length = signature.readUInt32BE(0);
  const algorithm = signature.toString("latin1", 4, 4 + length);
  const inner = signature.subarray(8 + length);
  const matches: Record<string, string> = {
    "ssh-ed25519": "ssh-ed25519-cert-v01@openssh.com",
    "rsa-sha2-256": "rsa-sha2-256-cert-v01@openssh.com",
    "rsa-sha2-512": "rsa-sha2-512-cert-v01@openssh.com",
  };
  expect(matches[algorithm] === offered, `accepted ${algorithm} offered as ${offered}`);
  const real = genuine(key, algorithm as "ssh-ed25519");
  expect(
    key.name === "rsa" ? asInteger(real) === asInteger(inner) : real.equals(inner),
    `accepted a signature the key never made (${algorithm}, ${key.name})`,
  );
}

/** Algorithms whose fixed checks (genuine verifies; other data, key, offer, SHA-1 do not) have run. */
const CHECKED = new Set<string>();

const valid: fc.Arbitrary<ValidInput> = fc
  .tuple(fc.constantFrom("ssh-ed25519", "rsa-sha2-256", "rsa-sha2-512") as fc.Arbitrary<"ssh-ed25519">, fc.nat())
  .map(([algorithm, bit]) => {
    const key = algorithm === "ssh-ed25519" ? KEYS[0]! : KEYS[1]!;
    const offered = `${algorithm}-cert-v01@openssh.com`;
    const signature = blobOf(algorithm, genuine(key, algorithm));
    return {
      bytes: Buffer.concat([Buffer.of(OFFERED.indexOf(offered), KEYS.indexOf(key), 0), signature]),
      verify: () => {
        const flipped = Buffer.from(signature);
        const at = 8 + algorithm.length + (bit % (flipped.length - 8 - algorithm.length));
        flipped[at] = (flipped[at] ?? 0) ^ (1 << (bit % 8));
        expect(verdict(offered, key, flipped, SIGNED_DATA) === false, "a changed signature verified");
        // The rest depends on the algorithm only: checked once per algorithm.
        if (CHECKED.has(algorithm)) return;
        CHECKED.add(algorithm);
        expect(verdict(offered, key, signature, SIGNED_DATA) === true, `a genuine ${algorithm} signature was refused`);
        expect(verdict(offered, key, signature, Buffer.from("other data")) === false, "verified over other data");
        const other = key === KEYS[0] ? OTHER_ED25519 : OTHER_RSA;
        expect(verdict(offered, other, signature, SIGNED_DATA) === false, "verified with another key of its type");
        const elsewhere = OFFERED.find((o) => o !== offered && o.endsWith("-cert-v01@openssh.com"))!;
        expect(verdict(elsewhere, key, signature, SIGNED_DATA) === false, "verified under another offer");
        if (key === KEYS[1]) {
          const sha1 = blobOf("ssh-rsa", genuine(key, "ssh-rsa"));
          expect(
            verdict("ssh-rsa-cert-v01@openssh.com", key, sha1, SIGNED_DATA) === false,
            "a SHA-1 RSA signature verified",
          );
        }
      },
    };
  });

export const sshUserauth: FuzzTarget = { name: "ssh-userauth", check, valid };
