/**
 * An OpenSSH user-certificate authority: Stint's ed25519 CA signs short-lived certificates for users'
 * keys, encoded byte for byte per OpenSSH's PROTOCOL.certkeys, so a stock sshd with
 * `TrustedUserCAKeys` accepts them. Socket-free: strings and buffers in, strings and values out.
 * verifyCertificate is what Stint's own SSH proxy will use to decide whether a client's certificate
 * was signed by Stint and is valid now.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  randomBytes,
  sign,
  timingSafeEqual,
  verify,
  type KeyObject,
} from "node:crypto";
import { isIP } from "node:net";
import ssh2 from "ssh2";
import { generateEd25519KeyPair } from "../../lib/ssh-keys.js";
import { sshString, uint32, uint64 } from "../../lib/ssh-wire.js";

// ssh2 is CommonJS: Node's ESM loader cannot import `utils` by name.
const { utils } = ssh2;

const CERT_TYPES = {
  "ssh-ed25519": "ssh-ed25519-cert-v01@openssh.com",
  "ssh-rsa": "ssh-rsa-cert-v01@openssh.com",
} as const;
type UserKeyType = keyof typeof CERT_TYPES;
type CertType = (typeof CERT_TYPES)[UserKeyType];

const SSH_CERT_TYPE_USER = 1;
const SSH_CERT_TYPE_HOST = 2;
const UINT64_MAX = (1n << 64n) - 1n;
/** The latest instant a Date holds; a certificate valid "forever" (valid before = 2^64-1) reads as this. */
const MAX_DATE_MS = 8.64e15;

export const CERT_EXTENSIONS = [
  "permit-X11-forwarding",
  "permit-agent-forwarding",
  "permit-port-forwarding",
  "permit-pty",
  "permit-user-rc",
] as const;
export type CertExtension = (typeof CERT_EXTENSIONS)[number];
export const DEFAULT_EXTENSIONS: readonly CertExtension[] = ["permit-pty", "permit-user-rc"];

export interface CriticalOptions {
  /** The only command the certificate may run, whatever the client asks for. */
  "force-command"?: string;
  /** Comma-separated addresses / CIDR blocks the client must connect from. */
  "source-address"?: string;
}
const CRITICAL_OPTION_NAMES = ["force-command", "source-address"] as const;

export interface SshCa {
  /** OpenSSH private key PEM ("-----BEGIN OPENSSH PRIVATE KEY-----"). */
  privateKey: string;
  /** authorized_keys form: "ssh-ed25519 AAAA… stint-ca" (the line for sshd's TrustedUserCAKeys). */
  publicKey: string;
}

export interface SignUserCertificateInput {
  caPrivateKey: string;
  /** "ssh-ed25519 AAAA… [comment]" or "ssh-rsa AAAA… [comment]". */
  userPublicKey: string;
  keyId: string;
  principals: string[];
  validAfter: Date;
  validBefore: Date;
  serial: bigint;
  extensions?: readonly CertExtension[];
  criticalOptions?: CriticalOptions;
}

export interface SshCertificate {
  keyType: CertType;
  type: "user" | "host";
  /** The certified key in authorized_keys form ("ssh-ed25519 AAAA…"): the key the client must prove it holds. */
  publicKey: string;
  keyId: string;
  principals: string[];
  validAfter: Date;
  validBefore: Date;
  serial: bigint;
  /** Extension names, in the certificate's (sorted) order. */
  extensions: string[];
  /** Option name → value ("" for a flag). */
  criticalOptions: Record<string, string>;
  /** The signing CA's key fingerprint as `ssh-keygen -l` prints it: "SHA256:<base64>". */
  signatureKey: string;
}

export type CertificateVerdict = { ok: true; certificate: SshCertificate } | { ok: false; reason: string };

/** A line that is not a well-formed certificate. */
export class MalformedCertificateError extends Error {
  override readonly name = "MalformedCertificateError";
}

export function generateCa(): SshCa {
  return generateEd25519KeyPair("stint-ca");
}

export function signUserCertificate(input: SignUserCertificateInput): string {
  const ca = parseCaPrivateKey(input.caPrivateKey);
  const userKey = parsePublicKeyLine(input.userPublicKey);
  if (!(userKey.type in CERT_TYPES)) throw new TypeError(`unsupported user key type ${userKey.type}`);
  if (userKey.blob.equals(ca.publicBlob)) throw new TypeError("refusing to certify the CA's own key");
  const certType = CERT_TYPES[userKey.type as UserKeyType];
  const keyId = checkKeyId(input.keyId);
  const principals = checkPrincipals(input.principals);
  const { validAfter, validBefore } = checkWindow(input.validAfter, input.validBefore);
  if (input.serial < 0n || input.serial > UINT64_MAX) throw new RangeError("serial must fit in a uint64");
  const extensions = checkExtensions(input.extensions ?? DEFAULT_EXTENSIONS);
  const criticalOptions = checkCriticalOptions(input.criticalOptions ?? {});

  const signed = Buffer.concat([
    sshString(certType),
    sshString(randomBytes(32)),
    userKey.publicFields,
    uint64(input.serial),
    uint32(SSH_CERT_TYPE_USER),
    sshString(keyId),
    sshString(Buffer.concat(principals.map((principal) => sshString(principal)))),
    uint64(validAfter),
    uint64(validBefore),
    sshString(encodeOptions(criticalOptions.map(([name, value]) => [name, sshString(value)]))),
    sshString(encodeOptions(extensions.map((name) => [name, Buffer.alloc(0)]))),
    sshString(""), // reserved
    sshString(ca.publicBlob),
  ]);
  const signature = sign(null, signed, ca.privateKey);
  const blob = Buffer.concat([signed, sshString(Buffer.concat([sshString("ssh-ed25519"), sshString(signature)]))]);
  return `${certType} ${blob.toString("base64")} ${keyId}`;
}

/** Decodes a certificate line without judging it (see verifyCertificate). Throws MalformedCertificateError. */
export function parseCertificate(line: string): SshCertificate {
  return decodeCertificate(line).certificate;
}

/**
 * Whether the certificate was signed by this CA and is a user certificate valid at `now` (and, given
 * `principal`, names it). OpenSSH's rules: valid after ≤ now < valid before, at least one principal,
 * no critical option this code does not understand.
 */
export function verifyCertificate(
  line: string,
  caPublicKey: string,
  now: Date,
  options: { principal?: string } = {},
): CertificateVerdict {
  let decoded: DecodedCertificate;
  try {
    decoded = decodeCertificate(line);
  } catch (error) {
    if (error instanceof MalformedCertificateError) return { ok: false, reason: `malformed: ${error.message}` };
    throw error;
  }
  let caBlob: Buffer;
  try {
    const ca = parsePublicKeyLine(caPublicKey);
    if (ca.type !== "ssh-ed25519") throw new TypeError("the CA key must be ssh-ed25519");
    caBlob = ca.blob;
  } catch (error) {
    throw new TypeError(`bad CA public key: ${(error as Error).message}`);
  }
  const checks = [
    signedByCa,
    signatureValid,
    isUserCertificate,
    notTheCaKey,
    hasPrincipals,
    withinWindow,
    knownCriticalOptions,
  ];
  for (const check of checks) {
    const reason = check(decoded, { caBlob, now, principal: options.principal });
    if (reason) return { ok: false, reason };
  }
  return { ok: true, certificate: decoded.certificate };
}

// --- verification steps: each returns a reason to refuse, or undefined ----------------------------

interface VerifyContext {
  caBlob: Buffer;
  now: Date;
  principal: string | undefined;
}
type Check = (decoded: DecodedCertificate, context: VerifyContext) => string | undefined;

const signedByCa: Check = ({ signatureKeyBlob }, { caBlob }) =>
  signatureKeyBlob.length === caBlob.length && timingSafeEqual(signatureKeyBlob, caBlob)
    ? undefined
    : "signed by another CA";

const signatureValid: Check = ({ signed, signatureAlgorithm, signature, signatureKeyBlob }) => {
  if (signatureAlgorithm !== "ssh-ed25519") return `unsupported signature algorithm ${signatureAlgorithm}`;
  // signedByCa ran first, so this is the CA's own (well-formed, ed25519) key.
  return verify(null, signed, ed25519PublicKey(signatureKeyBlob), signature) ? undefined : "bad signature";
};

const isUserCertificate: Check = ({ certificate }) =>
  certificate.type === "user" ? undefined : "not a user certificate";

/** A certificate for the CA's own key would let whoever holds the CA key pass as a user (and vice versa). */
const notTheCaKey: Check = ({ certificate }, { caBlob }) => {
  const certified = Buffer.from(certificate.publicKey.split(" ")[1] ?? "", "base64");
  return certified.length === caBlob.length && timingSafeEqual(certified, caBlob)
    ? "certifies the CA's own key"
    : undefined;
};

const hasPrincipals: Check = ({ certificate }, { principal }) => {
  if (certificate.principals.length === 0) return "no principals";
  if (principal !== undefined && !certificate.principals.includes(principal)) return `not valid for ${principal}`;
  return undefined;
};

const withinWindow: Check = ({ validAfterSeconds, validBeforeSeconds }, { now }) => {
  const nowSeconds = BigInt(Math.floor(now.getTime() / 1000));
  if (nowSeconds < validAfterSeconds) return "not yet valid";
  if (nowSeconds >= validBeforeSeconds) return "expired";
  return undefined;
};

const knownCriticalOptions: Check = ({ certificate }) => {
  const unknown = Object.keys(certificate.criticalOptions).find(
    (name) => !(CRITICAL_OPTION_NAMES as readonly string[]).includes(name),
  );
  return unknown === undefined ? undefined : `unsupported critical option ${unknown}`;
};

// --- decoding -----------------------------------------------------------------------------------

interface DecodedCertificate {
  certificate: SshCertificate;
  /** Everything the signature covers. */
  signed: Buffer;
  signatureKeyBlob: Buffer;
  signatureAlgorithm: string;
  signature: Buffer;
  validAfterSeconds: bigint;
  validBeforeSeconds: bigint;
}

function decodeCertificate(line: string): DecodedCertificate {
  const [lineType, base64] = line.trim().split(/\s+/);
  if (!lineType || !base64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) throw malformed("not a key line");
  const blob = Buffer.from(base64, "base64");
  const read = reader(blob);
  const keyType = read.text();
  if (keyType !== lineType) throw malformed("the line's type and the certificate's differ");
  const userKeyType = (Object.keys(CERT_TYPES) as UserKeyType[]).find((type) => CERT_TYPES[type] === keyType);
  if (!userKeyType) throw malformed(`unsupported certificate type ${keyType}`);
  read.string(); // nonce
  const fieldsStart = read.offset;
  if (userKeyType === "ssh-ed25519") {
    if (read.string().length !== 32) throw malformed("bad ed25519 key");
  } else {
    read.string(); // e
    read.string(); // n
  }
  const publicFields = blob.subarray(fieldsStart, read.offset);
  const serial = read.uint64();
  const certType = read.uint32();
  if (certType !== SSH_CERT_TYPE_USER && certType !== SSH_CERT_TYPE_HOST) throw malformed("unknown certificate type");
  const keyId = read.text();
  const principals = stringList(read.string());
  const validAfterSeconds = read.uint64();
  const validBeforeSeconds = read.uint64();
  const criticalOptions = Object.fromEntries(
    nameDataList(read.string()).map(([name, data]) => {
      if (data.length === 0) return [name, ""];
      const inner = reader(data);
      const value = inner.text();
      inner.end();
      return [name, value];
    }),
  );
  const extensions = nameDataList(read.string()).map(([name]) => name);
  read.string(); // reserved
  const signatureKeyBlob = read.string();
  const signed = blob.subarray(0, read.offset);
  const signatureBlob = reader(read.string());
  read.end();
  const signatureAlgorithm = signatureBlob.text();
  const signature = signatureBlob.string();
  signatureBlob.end();

  return {
    certificate: {
      keyType: CERT_TYPES[userKeyType],
      type: certType === SSH_CERT_TYPE_USER ? "user" : "host",
      publicKey: `${userKeyType} ${Buffer.concat([sshString(userKeyType), publicFields]).toString("base64")}`,
      keyId,
      principals,
      validAfter: toDate(validAfterSeconds),
      validBefore: toDate(validBeforeSeconds),
      serial,
      extensions,
      criticalOptions,
      signatureKey: fingerprint(signatureKeyBlob),
    },
    signed,
    signatureKeyBlob,
    signatureAlgorithm,
    signature,
    validAfterSeconds,
    validBeforeSeconds,
  };
}

function stringList(data: Buffer): string[] {
  const read = reader(data);
  const items: string[] = [];
  while (!read.atEnd()) items.push(read.text());
  return items;
}

/** Critical options and extensions: (name, data) pairs, names strictly ascending (so also unique). */
function nameDataList(data: Buffer): [string, Buffer][] {
  const read = reader(data);
  const pairs: [string, Buffer][] = [];
  let previous: Buffer | undefined;
  while (!read.atEnd()) {
    const name = read.string();
    if (previous && Buffer.compare(previous, name) >= 0) throw malformed("options out of order or repeated");
    previous = name;
    pairs.push([utf8(name), read.string()]);
  }
  return pairs;
}

function toDate(seconds: bigint): Date {
  const ms = seconds * 1000n;
  return new Date(ms > BigInt(MAX_DATE_MS) ? MAX_DATE_MS : Number(ms));
}

function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

function malformed(message: string): MalformedCertificateError {
  return new MalformedCertificateError(message);
}

// --- keys ---------------------------------------------------------------------------------------

function parseCaPrivateKey(pem: string) {
  const parsed = utils.parseKey(pem);
  if (parsed instanceof Error) throw new TypeError(`bad CA private key: ${parsed.message}`);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key.type !== "ssh-ed25519" || !key.isPrivateKey()) {
    throw new TypeError("the CA private key must be an unencrypted ssh-ed25519 private key");
  }
  return { privateKey: createPrivateKey(key.getPrivatePEM()), publicBlob: key.getPublicSSH() };
}

/** "type base64 [comment]" → the key blob, checked to be a well-formed ssh-ed25519 or ssh-rsa key. */
function parsePublicKeyLine(line: string): { type: string; blob: Buffer; publicFields: Buffer } {
  const [type, base64] = line.trim().split(/\s+/);
  if (!type || !base64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) throw new TypeError("not an OpenSSH public key line");
  const blob = Buffer.from(base64, "base64");
  try {
    const read = reader(blob);
    if (read.text() !== type) throw new TypeError("the line's type and the key's differ");
    const fieldsStart = read.offset;
    if (type === "ssh-ed25519") {
      if (read.string().length !== 32) throw new TypeError("bad ed25519 key");
    } else if (type === "ssh-rsa") {
      read.string(); // e
      read.string(); // n
    } else {
      throw new TypeError(`unsupported key type ${type}`);
    }
    read.end();
    return { type, blob, publicFields: blob.subarray(fieldsStart) };
  } catch (error) {
    if (error instanceof MalformedCertificateError) throw new TypeError(`bad public key: ${error.message}`);
    throw error;
  }
}

/**
 * An OpenSSH public key line ("ssh-ed25519 AAAA…" or "ssh-rsa AAAA…") as a node:crypto key, to verify
 * the signature a client makes with the key its certificate certifies. Throws TypeError otherwise.
 */
export function publicKeyObject(line: string): KeyObject {
  const { type, blob } = parsePublicKeyLine(line);
  if (type === "ssh-ed25519") return ed25519PublicKey(blob);
  const read = reader(blob);
  read.text();
  const e = read.string();
  const n = read.string();
  const unsigned = (b: Buffer) => (b[0] === 0 ? b.subarray(1) : b).toString("base64url");
  return createPublicKey({ key: { kty: "RSA", e: unsigned(e), n: unsigned(n) }, format: "jwk" });
}

/** An ssh-ed25519 key blob (string "ssh-ed25519", string of 32 bytes) as a node:crypto key. */
function ed25519PublicKey(blob: Buffer): KeyObject {
  const read = reader(blob);
  const type = read.text();
  const raw = read.string();
  read.end();
  if (type !== "ssh-ed25519" || raw.length !== 32) throw malformed("bad ed25519 key");
  return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") }, format: "jwk" });
}

// --- input checks -------------------------------------------------------------------------------

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

function checkKeyId(keyId: string): string {
  if (keyId.length === 0 || keyId.length > 256 || CONTROL.test(keyId)) {
    throw new TypeError("keyId must be 1–256 printable characters");
  }
  return keyId;
}

function checkPrincipals(principals: string[]): string[] {
  // An empty list would mean "any user" to some verifiers: always name someone.
  if (principals.length === 0) throw new TypeError("a certificate needs at least one principal");
  for (const principal of principals) {
    if (principal.length === 0 || principal.length > 256 || CONTROL.test(principal) || /[\s,]/.test(principal)) {
      throw new TypeError(`bad principal ${JSON.stringify(principal)}`);
    }
  }
  if (new Set(principals).size !== principals.length) throw new TypeError("principals repeat");
  return principals;
}

function checkWindow(after: Date, before: Date): { validAfter: bigint; validBefore: bigint } {
  if (Number.isNaN(after.getTime()) || Number.isNaN(before.getTime())) throw new TypeError("invalid date");
  const validAfter = BigInt(Math.floor(after.getTime() / 1000));
  const validBefore = BigInt(Math.floor(before.getTime() / 1000));
  if (validAfter < 0n) throw new RangeError("validAfter is before 1970");
  if (validBefore <= validAfter) throw new RangeError("validBefore must be after validAfter (in whole seconds)");
  return { validAfter, validBefore };
}

function checkExtensions(extensions: readonly string[]): string[] {
  for (const name of extensions) {
    if (!(CERT_EXTENSIONS as readonly string[]).includes(name)) throw new TypeError(`unknown extension ${name}`);
  }
  if (new Set(extensions).size !== extensions.length) throw new TypeError("extensions repeat");
  return sortByBytes(extensions);
}

function checkCriticalOptions(options: CriticalOptions): [string, string][] {
  const pairs: [string, string][] = [];
  for (const [name, value] of Object.entries(options) as [string, string | undefined][]) {
    if (value === undefined) continue;
    if (!(CRITICAL_OPTION_NAMES as readonly string[]).includes(name)) throw new TypeError(`unknown option ${name}`);
    if (value.length === 0 || CONTROL.test(value)) throw new TypeError(`bad ${name}`);
    if (name === "source-address") checkSourceAddress(value);
    pairs.push([name, value]);
  }
  const order = sortByBytes(pairs.map(([name]) => name));
  return pairs.sort(([a], [b]) => order.indexOf(a) - order.indexOf(b));
}

function checkSourceAddress(value: string): void {
  for (const entry of value.split(",")) {
    const [address = "", prefix, ...rest] = entry.split("/");
    const version = isIP(address);
    const bits = version === 4 ? 32 : 128;
    const prefixOk = prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= bits);
    if (version === 0 || !prefixOk || rest.length > 0) throw new TypeError(`bad source-address entry ${entry}`);
  }
}

function sortByBytes(names: readonly string[]): string[] {
  return [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

// --- wire encoding (RFC 4251 §5) ----------------------------------------------------------------

function encodeOptions(pairs: [string, Buffer][]): Buffer {
  return Buffer.concat(pairs.map(([name, data]) => Buffer.concat([sshString(name), sshString(data)])));
}

function utf8(bytes: Buffer): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw malformed("text is not UTF-8");
  }
}

interface Reader {
  readonly offset: number;
  uint32(): number;
  uint64(): bigint;
  string(): Buffer;
  text(): string;
  atEnd(): boolean;
  /** Throws unless every byte was read. */
  end(): void;
}

function reader(data: Buffer): Reader {
  let offset = 0;
  const take = (length: number): Buffer => {
    if (length > data.length - offset) throw malformed("truncated");
    const bytes = data.subarray(offset, offset + length);
    offset += length;
    return bytes;
  };
  const self: Reader = {
    get offset() {
      return offset;
    },
    uint32: () => take(4).readUInt32BE(0),
    uint64: () => take(8).readBigUInt64BE(0),
    string: () => take(self.uint32()),
    text: () => utf8(self.string()),
    atEnd: () => offset === data.length,
    end: () => {
      if (offset !== data.length) throw malformed("trailing bytes");
    },
  };
  return self;
}
