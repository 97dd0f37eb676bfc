/**
 * An OpenSSH key revocation list (KRL), encoded byte for byte per OpenSSH's PROTOCOL.krl, so that a
 * stock sshd (`RevokedKeys FILE`) and `ssh-keygen -Q` read it. Stint lists by serial the certificates
 * its CA issued for activations that ended before the certificates expire. Socket-free, no IO.
 */
import { sshString, uint32, uint64 } from "../../lib/ssh-wire.js";

const KRL_MAGIC = 0x5353484b524c0a00n; // "SSHKRL\n\0"
const KRL_FORMAT_VERSION = 1;
const KRL_SECTION_CERTIFICATES = 1;
const KRL_SECTION_CERT_SERIAL_LIST = 0x20;
const UINT64_MAX = (1n << 64n) - 1n;

export interface KrlInput {
  /** The CA public key line ("ssh-ed25519 AAAA… comment") whose certificates are revoked. */
  caPublicKey: string;
  /** Serials of revoked certificates signed by that CA. */
  serials: readonly bigint[];
  /** Increases with each new list (hosts can tell a newer list). */
  version: bigint;
  generatedAt: Date;
  comment?: string;
}

export function encodeKrl(input: KrlInput): Buffer {
  const caBlob = keyBlob(input.caPublicKey);
  const serials = [...new Set(input.serials)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const serial of serials) if (serial < 0n || serial > UINT64_MAX) throw new RangeError("serial out of range");
  const sections: Buffer[] = [];
  if (serials.length > 0) {
    const certSection = Buffer.concat([
      Buffer.from([KRL_SECTION_CERT_SERIAL_LIST]),
      sshString(Buffer.concat(serials.map(uint64))),
    ]);
    sections.push(
      Buffer.from([KRL_SECTION_CERTIFICATES]),
      sshString(Buffer.concat([sshString(caBlob), sshString(Buffer.alloc(0)), certSection])),
    );
  }
  return Buffer.concat([
    uint64(KRL_MAGIC),
    uint32(KRL_FORMAT_VERSION),
    uint64(input.version),
    uint64(BigInt(Math.floor(input.generatedAt.getTime() / 1000))),
    uint64(0n), // flags
    sshString(Buffer.alloc(0)), // reserved
    sshString(Buffer.from(input.comment ?? "", "utf8")),
    ...sections,
  ]);
}

function keyBlob(line: string): Buffer {
  const [type, base64] = line.trim().split(/\s+/);
  if (!type || !base64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) throw new TypeError("not an OpenSSH public key line");
  const blob = Buffer.from(base64, "base64");
  const length = blob.length >= 4 ? blob.readUInt32BE(0) : -1;
  if (length < 0 || blob.subarray(4, 4 + length).toString("latin1") !== type)
    throw new TypeError("the line's type and the key's differ");
  return blob;
}
