/**
 * Writes the seed corpus (fuzz/corpus/<target>/seed-*.bin): messages from the protocol
 * documentation and RFC examples, written by hand like src/lib/pg-wire.test.ts's fixtures, plus
 * certificates and configuration files, SFTP sessions, scp commands, SSH signatures and a real SSH
 * client's first bytes. Run with `node --import tsx fuzz/seed.ts [target…]` (every target when none
 * is named); the output is committed. Findings (finding-*.bin, written by `npm run fuzz`) are kept
 * beside the seeds.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { generateEd25519KeyPair } from "../src/lib/ssh-keys.js";
import { generateCa, signUserCertificate } from "../src/modules/sessions/ssh-ca.js";
import { CORPUS_DIR, type FuzzTarget } from "./harness.js";
import { CLIENT_NONCE } from "./targets/scram.js";
import { scp } from "./targets/scp.js";
import { sftp } from "./targets/sftp.js";
import { rsaLine } from "./targets/ssh-cert.js";
import { sshUserauth } from "./targets/ssh-userauth.js";

const only = process.argv.slice(2);
const wanted = (target: string) => only.length === 0 || only.includes(target);

/** Strings are literal ASCII text, arrays are raw bytes. */
const b = (...parts: (string | number[])[]): Buffer =>
  Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "latin1") : Buffer.from(p))));
const int32 = (v: number) => {
  const out = Buffer.alloc(4);
  out.writeInt32BE(v);
  return [...out];
};
/** Typed message: type, length counting itself, body. */
const typed = (type: string, ...body: (string | number[])[]) => {
  const payload = b(...body);
  return b(type, int32(payload.length + 4), [...payload]);
};
const untyped = (...body: (string | number[])[]) => {
  const payload = b(...body);
  return b(int32(payload.length + 4), [...payload]);
};
const NUL = [0];
const NULL_LENGTH = [0xff, 0xff, 0xff, 0xff];

const seeds: Record<string, Record<string, Buffer>> = {};
const add = (target: string, name: string, bytes: Buffer) => ((seeds[target] ??= {})[name] = bytes);

// --- pg-frontend: flags (bit 0: after startup), chunk size, stream --------------------------------
const startup = untyped([0, 3, 0, 0], "user", NUL, "alice%pg-read", NUL, "database", NUL, "app", NUL, NUL);
add("pg-frontend", "startup", b([0, 7], [...startup]));
add("pg-frontend", "ssl-then-startup", b([0, 3], [...untyped(int32(80877103))], [...startup]));
add("pg-frontend", "gssenc", b([0, 1], [...untyped(int32(80877104))]));
add("pg-frontend", "cancel", b([0, 5], [...untyped(int32(80877102), int32(4242), [0xde, 0xad, 0xbe, 0xef])]));
add("pg-frontend", "cancel-long-key", b([0, 9], [...untyped(int32(80877102), int32(1), [...Buffer.alloc(32, 9)])]));
add("pg-frontend", "protocol-3.2", b([0, 2], [...untyped([0, 3, 0, 2], "user", NUL, "bob", NUL, NUL)]));
add(
  "pg-frontend",
  "extended-query",
  b(
    [1, 11],
    [...typed("P", "s1", NUL, "SELECT $1::int", NUL, [0, 1], int32(23))],
    [...typed("B", "", NUL, "s1", NUL, [0, 1, 0, 0], [0, 2], int32(1), "7", NULL_LENGTH, [0, 1, 0, 1])],
    [...typed("D", "P", "", NUL)],
    [...typed("E", "", NUL, int32(0))],
    [...typed("C", "S", "s1", NUL)],
    [...typed("H")],
    [...typed("S")],
  ),
);
add("pg-frontend", "simple-query", b([1, 64], [...typed("Q", "SELECT 1; SELECT now()", NUL)], [...typed("X")]));
add("pg-frontend", "password", b([1, 4], [...typed("p", "md5", "0123456789abcdef0123456789abcdef", NUL)]));
add(
  "pg-frontend",
  "sasl",
  b(
    [1, 13],
    [...typed("p", "SCRAM-SHA-256", NUL, int32(32), `n,,n=,r=${CLIENT_NONCE}`.padEnd(32, "x"))],
    [...typed("p", "c=biws,r=abc,p=xyz")],
  ),
);
add(
  "pg-frontend",
  "copy",
  b([1, 6], [...typed("d", "1\tone\n")], [...typed("c")], [...typed("f", "client gave up", NUL)]),
);
add(
  "pg-frontend",
  "function-call",
  b([1, 8], [...typed("F", int32(1598), [0, 1, 0, 0], [0, 1], int32(2), "ab", [0, 0])]),
);
add("pg-frontend", "unknown-type", b([1, 3], [...typed("~", "whatever")]));
add("pg-frontend", "huge-length", b([1, 1], "Q", [0x7f, 0xff, 0xff, 0xff]));
add("pg-frontend", "negative-count", b([1, 1], [...typed("P", "", NUL, "", NUL, [0xff, 0xff])]));

// --- pg-backend: flags (bit 0: expect the SSL answer byte first), chunk size, stream ---------------
add(
  "pg-backend",
  "scram-login",
  b(
    [0, 9],
    [...typed("R", int32(10), "SCRAM-SHA-256-PLUS", NUL, "SCRAM-SHA-256", NUL, NUL)],
    [
      ...typed(
        "R",
        int32(11),
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
      ),
    ],
    [...typed("R", int32(12), "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")],
    [...typed("R", int32(0))],
    [...typed("S", "server_version", NUL, "17.2", NUL)],
    [...typed("K", int32(4242), [0xde, 0xad, 0xbe, 0xef])],
    [...typed("Z", "I")],
  ),
);
add("pg-backend", "ssl-then-md5", b([1, 2], "S", [...typed("R", int32(5), [1, 2, 3, 4])], [...typed("R", int32(3))]));
add("pg-backend", "ssl-refused", b([1, 1], "N", [...typed("R", int32(7))]));
add(
  "pg-backend",
  "query-result",
  b(
    [0, 17],
    [...typed("T", [0, 1], "n", NUL, int32(0), [0, 0], int32(23), [0, 4], int32(-1), [0, 0])],
    [...typed("D", [0, 2], int32(1), "1", NULL_LENGTH)],
    [...typed("C", "SELECT 1", NUL)],
    [...typed("1")],
    [...typed("2")],
    [...typed("3")],
    [...typed("n")],
    [...typed("s")],
    [...typed("I")],
    [...typed("t", [0, 1], int32(23))],
    [...typed("Z", "T")],
  ),
);
add(
  "pg-backend",
  "error-notice",
  b(
    [0, 5],
    [...typed("E", "S", "ERROR", NUL, "V", "ERROR", NUL, "C", "22012", NUL, "M", "division by zero", NUL, NUL)],
    [...typed("N", "S", "NOTICE", NUL, "M", "hello", NUL, NUL)],
  ),
);
add(
  "pg-backend",
  "copy",
  b(
    [0, 3],
    [...typed("G", [0], [0, 2, 0, 0, 0, 0])],
    [...typed("H", [1], [0, 1, 0, 1])],
    [...typed("W", [0], [0, 0])],
    [...typed("d", "row\n")],
    [...typed("c")],
  ),
);
add(
  "pg-backend",
  "async",
  b(
    [0, 6],
    [...typed("A", int32(99), "chan", NUL, "payload", NUL)],
    [...typed("v", int32(0), int32(1), "_pq_.foo", NUL)],
    [...typed("V", int32(2), "ok")],
    [...typed("V", NULL_LENGTH)],
  ),
);
add("pg-backend", "gss-continue", b([0, 4], [...typed("R", int32(8), [1, 2, 3])]));
add("pg-backend", "negotiate-huge-count", b([0, 4], [...typed("v", int32(0), int32(0x7fffffff), "a", NUL)]));

// --- scram: server-first NUL server-final NUL certificate DER --------------------------------------
const rfcFirst = `r=${CLIENT_NONCE}%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`;
const rfcFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
const dir = mkdtempSync(join(tmpdir(), "stint-fuzz-seed-"));
const certificate = (keyArgs: string[], digest: string): Buffer => {
  const key = join(dir, "key.pem");
  const der = join(dir, "cert.der");
  execFileSync("openssl", ["genpkey", ...keyArgs, "-out", key]);
  execFileSync("openssl", [
    "req",
    "-x509",
    "-new",
    "-key",
    key,
    `-${digest}`,
    "-subj",
    "/CN=db.example",
    "-days",
    "1",
    "-outform",
    "DER",
    "-out",
    der,
  ]);
  return readFileSync(der);
};
const ecCert = certificate(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], "sha256");
const rsaCert = certificate(["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"], "sha384");
const ed25519Cert = certificate(["-algorithm", "ED25519"], "sha256").subarray(0); // no single hash: refused
rmSync(dir, { recursive: true, force: true });
add("scram", "rfc7677", b(rfcFirst, NUL, rfcFinal, NUL, [...ecCert]));
add("scram", "rfc7677-rsa-cert", b(rfcFirst, NUL, "e=invalid-proof", NUL, [...rsaCert]));
add("scram", "ed25519-cert", b(`r=${CLIENT_NONCE}x,s=QUJD,i=1`, NUL, "v=", NUL, [...ed25519Cert]));
add("scram", "extensions", b(`m=ext,r=${CLIENT_NONCE}x,s=QUJD,i=1`));
add("scram", "repeated-attributes", b(`r=${CLIENT_NONCE}x,r=other,s=QUJD,s=,i=2,i=3`, NUL, "v=AAAA,e=x"));
// Findings: an iteration count beyond what pbkdf2 takes (RangeError) and one that stalls for hours.
add("scram", "finding-iterations-over-int32", b(`r=${CLIENT_NONCE}x,s=QUJD,i=9999999999`));
add("scram", "finding-iterations-int32-max", b(`r=${CLIENT_NONCE}x,s=QUJD,i=2147483647`));

// --- ssh-cert: byte 0 even = text line, odd = blob; byte 1 = principal asked for ------------------
const ca = generateCa();
const user = generateEd25519KeyPair("alice@laptop");
const cert = (principals: string[], criticalOptions = {}) =>
  signUserCertificate({
    caPrivateKey: ca.privateKey,
    userPublicKey: user.publicKey,
    keyId: "alice@stint",
    principals,
    validAfter: new Date("2026-01-01T00:00:00Z"),
    validBefore: new Date("2027-01-01T00:00:00Z"),
    serial: 42n,
    criticalOptions,
  });
const blobOf = (line: string) => Buffer.from(line.split(" ")[1] ?? "", "base64");
add("ssh-cert", "ed25519-cert-line", b([0, 0], cert(["alice", "root"])));
add(
  "ssh-cert",
  "ed25519-cert-blob",
  b([1, 1], [...blobOf(cert(["postgres"], { "force-command": "/bin/true", "source-address": "10.0.0.0/8,::1" }))]),
);
add("ssh-cert", "public-key-line", b([0, 0], user.publicKey));
add("ssh-cert", "public-key-blob", b([1, 0], [...blobOf(user.publicKey)]));
add("ssh-cert", "ca-key-line", b([0, 0], ca.publicKey));
add("ssh-cert", "rsa-key-line", b([0, 0], rsaLine()));

// --- config: YAML files ------------------------------------------------------------------------
const docs = readFileSync(join(import.meta.dirname, "..", "docs", "configuration-as-code.md"), "utf8");
[...docs.matchAll(/```yaml\n([\s\S]*?)```/g)].forEach((match, i) => add("config", `docs-${i}`, b(match[1] ?? "")));
add("config", "empty", b(""));
add("config", "not-a-mapping", b("- just\n- a list\n"));
add("config", "two-documents", b("apiVersion: stint/v1\n---\napiVersion: stint/v1\n"));
add(
  "config",
  "aliases",
  b(
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c]\n",
  ),
);
add("config", "duplicate-keys", b("apiVersion: stint/v1\nroles: []\nroles: []\n"));
add("config", "tabs-and-flow", b("apiVersion: stint/v1\n\troles: [{name: a, target: {b: c}}\n"));
add(
  "config",
  "proto-keys",
  b("apiVersion: stint/v1\n__proto__: {prune: true}\nconstructor: 1\nroles:\n  - __proto__: {name: x}\n"),
);
add(
  "config",
  "finding-collection-keys",
  b("apiVersion: stint/v1\n? [a, b]\n: 1\n{x: y}: 2\nroles:\n  - ? {name: r}\n    : x\n"),
);
add("config", "tags", b("apiVersion: !!binary aGVsbG8=\nroles: !!set {a, b}\ngroups: !!omap [{a: 1}]\n"));

// --- ssh-userauth, sftp, scp: hand-written edges, and valid inputs from a fixed fast-check seed ------
/** Valid inputs that pass (one that meets an open finding of fuzz/pending is left out). */
const sample = (target: FuzzTarget, count: number) =>
  fc.sample(target.valid!, { numRuns: count, seed: 13 }).forEach((v, i) => {
    try {
      target.check(v.bytes);
      add(target.name, `valid-${i}`, v.bytes);
    } catch {
      // an open finding's input: fuzz/pending holds one of its kind
    }
  });
sample(sshUserauth, 6);
add("ssh-userauth", "empty-blob", b([0, 0, 0]));
add("ssh-userauth", "huge-name-length", b([0, 0, 0], [0xff, 0xff, 0xff, 0xff], "ssh-ed25519"));
add("ssh-userauth", "sha1-rsa", b([3, 1, 0], [0, 0, 0, 7], "ssh-rsa", [0, 0, 0, 4], "abcd"));
sample(sftp, 8);
add("sftp", "oversize-length", b([0, 0], [0, 0, 4], [0x7f, 0xff, 0xff, 0xff]));
add("sftp", "zero-length", b([0, 0], [0, 0, 8], [0, 0, 0, 0, 0, 0, 0, 5, 3]));
add("sftp", "response-before-request", b([1, 1], [1, 0, 13], [0, 0, 0, 9, 101, 0, 0, 0, 1, 0, 0, 0, 0]));
sample(scp, 8);
add("scp", "command-quoted", b([0], "scp -t 'my file'"));
add("scp", "command-dash-dash", b([0], "scp -f -- -odd"));
add("scp", "stream-huge-size", b([1, 7], "C0644 99999999999999999999 big\n", "abc"));
add("scp", "stream-no-newline", b([1, 0], "C0644 5 x"));

for (const [target, files] of Object.entries(seeds)) {
  if (!wanted(target)) continue;
  mkdirSync(join(CORPUS_DIR, target), { recursive: true });
  for (const [name, bytes] of Object.entries(files)) {
    const file = name.startsWith("finding-") ? `${name}.bin` : `seed-${name}.bin`;
    writeFileSync(join(CORPUS_DIR, target, file), bytes);
  }
  console.log(`${target}: ${Object.keys(files).length} seeds`);
}

// --- http-api: a generated request per operation, from a fixed fast-check seed ------------------
const { httpApi } = await import("./targets/http-api.js");
const context = wanted(httpApi.name) ? await httpApi.setup() : undefined;
if (context) {
  try {
    const samples = fc.sample(httpApi.valid(context), { numRuns: 400, seed: 13 });
    const byOperation = new Map<number, Buffer>();
    for (const sample of samples) {
      const index = sample.bytes.readUInt16BE(0);
      if (!byOperation.has(index)) byOperation.set(index, sample.bytes);
    }
    mkdirSync(join(CORPUS_DIR, httpApi.name), { recursive: true });
    for (const [index, bytes] of byOperation) {
      writeFileSync(join(CORPUS_DIR, httpApi.name, `seed-operation-${index}.bin`), bytes);
    }
    console.log(`${httpApi.name}: ${byOperation.size} seeds`);
  } finally {
    await httpApi.teardown(context);
  }
}

// --- ssh-handshake: a real client's first bytes (raw), and sign-in attempts ----------------------
if (wanted("ssh-handshake")) {
  const { captureClientBytes, sshHandshake } = await import("./targets/ssh-handshake.js");
  const context = await sshHandshake.setup();
  try {
    const dir = join(CORPUS_DIR, sshHandshake.name);
    mkdirSync(dir, { recursive: true });
    const client = await captureClientBytes(context);
    const version = client.subarray(0, client.indexOf(0x0a) + 1);
    const files: Record<string, Buffer> = {
      "raw-client-handshake": b([0, 0xff], [...client]),
      "raw-client-handshake-half-closed": b([0, 0xfc], [...client]),
      "raw-version-only": b([0, 0x07], [...version]),
      "raw-version-byte-by-byte": b([0, 0x00], [...version]),
      "raw-nothing": b([0, 3]),
      "raw-http": b([0, 0xfc], "GET / HTTP/1.1\r\nHost: stint\r\n\r\n"),
      "raw-long-line": b([0, 0xfc], "SSH-2.0-", "x".repeat(400), "\r\n"),
    };
    fc.sample(sshHandshake.valid(context), { numRuns: 8, seed: 13 }).forEach((v, i) => {
      files[`sign-in-${i}`] = v.bytes;
    });
    for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, `seed-${name}.bin`), bytes);
    console.log(`${sshHandshake.name}: ${Object.keys(files).length} seeds`);
  } finally {
    await sshHandshake.teardown(context);
  }
}
