/**
 * Ed25519 key pairs in OpenSSH format. ssh2's generator (1.17) sometimes drops a leading zero byte of
 * the public key (about 1 key in 150-256), which neither ssh2 nor ssh-keygen can load afterwards; such
 * a pair is thrown away and made again.
 */
import ssh2 from "ssh2";

const { utils } = ssh2;

export function generateEd25519KeyPair(comment: string): { privateKey: string; publicKey: string } {
  for (let attempt = 0; attempt < 20; attempt++) {
    const pair = utils.generateKeyPairSync("ed25519", { comment });
    const loaded = utils.parseKey(pair.private);
    const publicLoaded = utils.parseKey(pair.public);
    if (loaded instanceof Error || publicLoaded instanceof Error) continue;
    return { privateKey: pair.private, publicKey: pair.public.trim() };
  }
  throw new Error("could not make a loadable ed25519 key pair");
}
