/**
 * Userauth attempts on one proxy connection (findings 85 and 87): refusals counted as OpenSSH's MaxAuthTries
 * counts them, and key queries answered yes (PK_OK) that the client does not follow with its signature, which
 * OpenSSH does not count. Keys are kept by fingerprint only, for the connection's log line.
 */
import { createHash } from "node:crypto";
import type { AuthContext } from "ssh2";

/** Fingerprints kept per connection for its log line (a connection makes at most ~2 × maxAuthTries requests). */
const MAX_KEYS_KEPT = 16;

export interface AuthTries {
  /** The connection is closing for too many failures: nothing more is answered. */
  readonly exhausted: boolean;
  /**
   * A userauth request came. A query answered yes before it, unless this is that key's signed request, is
   * counted now as a failure (a probe). False when that was the last try: close instead of answering.
   */
  begin(ctx: AuthContext): boolean;
  /** The request is refused; false when that was the last try: close instead of answering. */
  refuse(): boolean;
  /** The request (a query without a signature) is answered yes: the client is to sign next. */
  answeredYes(ctx: AuthContext): void;
  /** What the connection tried, for its one log line. */
  summary(): { failures: number; unsigned: number; keys: string[] };
}

export function createAuthTries(maxAuthTries: number): AuthTries {
  let requests = 0;
  /** The client's opening `none` asks which methods there are: not a try (OpenSSH's rule). */
  let counted = true;
  let failures = 0;
  /** Queries answered yes whose signature never came. */
  let unsigned = 0;
  /** The key of the last query answered yes, until the next request. */
  let awaiting: { algo: string; data: Buffer } | undefined;
  const keys: string[] = [];

  const fail = (): boolean => {
    failures += 1;
    return failures < maxAuthTries;
  };
  return {
    get exhausted() {
      return failures >= maxAuthTries;
    },
    begin(ctx) {
      counted = !(++requests === 1 && ctx.method === "none");
      if (ctx.method === "publickey" && keys.length < MAX_KEYS_KEPT) {
        const key = `${ctx.key.algo} ${fingerprint(ctx.key.data)}`;
        if (keys.at(-1) !== key) keys.push(key);
      }
      const asked = awaiting;
      awaiting = undefined;
      if (!asked) return true;
      const signs =
        ctx.method === "publickey" &&
        ctx.signature !== undefined &&
        ctx.key.algo === asked.algo &&
        ctx.key.data.equals(asked.data);
      if (signs) return true;
      unsigned += 1;
      return fail();
    },
    refuse: () => !counted || fail(),
    answeredYes(ctx) {
      if (ctx.method === "publickey") awaiting = { algo: ctx.key.algo, data: ctx.key.data };
    },
    // A yes still waiting for its signature when the connection ends was a probe too.
    summary: () => ({ failures, unsigned: unsigned + (awaiting ? 1 : 0), keys: [...keys] }),
  };
}

/** A key blob's fingerprint as `ssh-keygen -l` prints it: "SHA256:<base64, no padding>". */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}
