/**
 * The shape of a fuzz target and the input generator they share. A target takes bytes and throws
 * a FuzzFinding when the parser misbehaves (an error that is not its own documented type, a wrong
 * round trip, a slow input); anything the parser refuses the documented way is a pass.
 *
 * Jazzer.js (the coverage-guided option) does not load here: its prebuilt addon needs glibc 2.38
 * and building it needs cmake plus downloads beyond npm. So inputs come from fast-check: random
 * bytes, AFL-style mutations of the committed corpus, and each target's structure-aware generator
 * of valid messages (which also checks the round trip).
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";

export class FuzzFinding extends Error {
  override readonly name = "FuzzFinding";
}

/** A valid input built by the codec's own encoder, and the round-trip check for it. */
export interface ValidInput {
  bytes: Buffer;
  verify: () => void;
}

export interface FuzzTarget {
  name: string;
  /** The property on arbitrary bytes: passes, or throws FuzzFinding. */
  check: (input: Buffer) => void;
  /** Valid inputs built by the codec's own encoders (for the round trip, and as seeds to mutate). */
  valid?: fc.Arbitrary<ValidInput>;
}

/** A target that needs a running service (a server, a proxy): set up once, then checked input by input. */
export interface AsyncFuzzTarget<C> {
  name: string;
  setup: () => Promise<C>;
  /** The property on arbitrary bytes: resolves, or rejects with a FuzzFinding. */
  check: (context: C, input: Buffer) => Promise<void>;
  valid: (context: C) => fc.Arbitrary<ValidInput>;
  teardown: (context: C) => Promise<void>;
}

/** One execution: bytes for `check`, and for a valid input its round trip. */
export interface FuzzInput {
  bytes: Buffer;
  verify?: () => void;
}

export const CORPUS_DIR = join(import.meta.dirname, "corpus");
/**
 * Findings reported to the owners of the code at fault and not fixed yet, by target. CI checks that
 * each still fails the way it did (when one passes, it moves to the corpus) and tolerates failures of
 * those kinds in its fresh inputs; `npm run fuzz` counts them as known.
 */
export const PENDING_DIR = join(import.meta.dirname, "pending");

/** The committed corpus of one target, as (file name, bytes). */
export function loadCorpus(target: string, root = CORPUS_DIR): [string, Buffer][] {
  const dir = join(root, target);
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return [];
  }
  return names.map((name) => [name, readFileSync(join(dir, name))]);
}

/** The kinds of the open findings of one target (see PENDING_DIR), from replaying their inputs. */
export function pendingKinds(check: (input: Buffer) => void, target: string): Set<string> {
  const kinds = new Set<string>();
  for (const [, bytes] of loadCorpus(target, PENDING_DIR)) {
    try {
      check(bytes);
    } catch (error) {
      if (error instanceof FuzzFinding) kinds.add(kindOf(error));
    }
  }
  return kinds;
}

/**
 * What an execution did, as short feature names (a message kind after another, an error's kind, a
 * refusal's reason): `npm run fuzz` keeps an input that shows a feature no earlier input showed,
 * and mutates it further. A cheap stand-in for coverage feedback (no instrumentation here).
 */
let features: Set<string> | undefined;

/** Notes a feature of the current execution (nothing outside a `withFeatures` call). */
export function feature(name: string): void {
  features?.add(name);
}

/** Runs `fn`, collecting the features it notes. */
export function withFeatures<T>(fn: () => T): { result: T; features: Set<string> } {
  const outer = features;
  const mine = new Set<string>();
  features = mine;
  try {
    return { result: fn(), features: mine };
  } finally {
    features = outer;
  }
}

/** Collects features across an asynchronous execution (executions run one at a time). */
export async function withFeaturesAsync<T>(fn: () => Promise<T>): Promise<{ result: T; features: Set<string> }> {
  const outer = features;
  const mine = new Set<string>();
  features = mine;
  try {
    return { result: await fn(), features: mine };
  } finally {
    features = outer;
  }
}

/**
 * An error reduced to its kind. A finding: its message with quoted parts, numbers and long runs of
 * input left out. A parser's refusal: its error code when it has one, else the first three words of
 * its message (what follows is often the input echoed back).
 */
export function kindOf(error: unknown): string {
  const reduce = (text: string) =>
    text
      .replace(/"(?:[^"\\]|\\.)*"/g, "Q")
      .replace(/\d+/g, "N")
      .replace(/[A-Za-z0-9+/=_-]{24,}/g, "B")
      .slice(0, 80);
  if (error instanceof FuzzFinding) return reduce(`${error.name}:${error.message}`);
  // Three words at most: a refusal's message often goes on with the input ("unsupported key type ssh-foo").
  const words = (text: string) =>
    (text.split(": ")[0] ?? "")
      .split(" ")
      .slice(0, 3)
      .map((w) => (/^[A-Za-z,'()-]+$/.test(w) ? w : "X"))
      .join(" ");
  if (!(error instanceof Error)) return words(String(error));
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string") return `${error.name}:${code}`;
  return `${error.name}:${words(error.message)}`;
}

/** Runs `fn` and turns any throw that `allowed` does not accept into a finding. */
export function only<T>(allowed: (error: unknown) => boolean, what: string, fn: () => T): T | undefined {
  try {
    const result = fn();
    feature(`${what}:ok`);
    return result;
  } catch (error) {
    if (error instanceof FuzzFinding) throw error;
    if (allowed(error)) {
      feature(`${what}!${kindOf(error)}`);
      return undefined;
    }
    throw new FuzzFinding(`${what} threw ${describe(error)}`);
  }
}

export function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

export function expect(condition: boolean, message: string): void {
  if (!condition) throw new FuzzFinding(message);
}

/** Values that sit on the edges of length and count fields. */
const INTERESTING_32 = [
  0, 1, 3, 4, 5, 8, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff,
];

type Mutation =
  | { op: "flip"; at: number; bit: number }
  | { op: "set"; at: number; value: number }
  | { op: "int32"; at: number; value: number }
  | { op: "insert"; at: number; bytes: Uint8Array }
  | { op: "delete"; at: number; length: number }
  | { op: "truncate"; at: number }
  | { op: "splice"; at: number; other: number; from: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant("flip" as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant("set" as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant("int32" as const), at: fc.nat(), value: fc.constantFrom(...INTERESTING_32) }),
  fc.record({
    op: fc.constant("insert" as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
  }),
  fc.record({ op: fc.constant("delete" as const), at: fc.nat(), length: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ op: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ op: fc.constant("splice" as const), at: fc.nat(), other: fc.nat(), from: fc.nat() }),
);

function mutate(seed: Buffer, mutations: Mutation[], seeds: Buffer[]): Buffer {
  let data = Buffer.from(seed);
  for (const m of mutations) {
    const at = data.length === 0 ? 0 : m.at % (data.length + 1);
    switch (m.op) {
      case "flip":
        if (at < data.length) data[at] = (data[at] ?? 0) ^ (1 << m.bit);
        break;
      case "set":
        if (at < data.length) data[at] = m.value;
        break;
      case "int32":
        if (at + 4 <= data.length) data.writeUInt32BE(m.value, at);
        break;
      case "insert":
        data = Buffer.concat([data.subarray(0, at), m.bytes, data.subarray(at)]);
        break;
      case "delete":
        data = Buffer.concat([data.subarray(0, at), data.subarray(at + m.length)]);
        break;
      case "truncate":
        data = data.subarray(0, at);
        break;
      case "splice": {
        const other = seeds[m.other % seeds.length] ?? Buffer.alloc(0);
        data = Buffer.concat([data.subarray(0, at), other.subarray(other.length === 0 ? 0 : m.from % other.length)]);
        break;
      }
    }
  }
  return data;
}

/**
 * Random bytes, mutated corpus entries, and (when the target has them) valid messages. `seeds` may
 * grow while the arbitrary is in use (`npm run fuzz` adds inputs that showed new features).
 */
export function inputs(target: FuzzTarget, seeds: Buffer[]): fc.Arbitrary<FuzzInput> {
  const random = fc.uint8Array({ maxLength: 512 }).map((bytes): FuzzInput => ({ bytes: Buffer.from(bytes) }));
  const arbitraries: fc.Arbitrary<FuzzInput>[] = [random];
  if (seeds.length > 0) {
    arbitraries.push(
      fc.tuple(fc.nat(), fc.array(mutation, { minLength: 1, maxLength: 8 })).map(([index, mutations]) => ({
        bytes: mutate(seeds[index % seeds.length] ?? Buffer.alloc(0), mutations, seeds),
      })),
    );
  }
  if (target.valid) {
    const valid = target.valid;
    arbitraries.push(valid);
    arbitraries.push(
      fc
        .tuple(valid, fc.array(mutation, { minLength: 1, maxLength: 4 }))
        .map(([v, ms]) => ({ bytes: mutate(v.bytes, ms, seeds) })),
    );
  }
  return fc.oneof(...arbitraries);
}

/** Runs one input through a target: its property on the bytes, then the round trip if it has one. */
export function execute(target: FuzzTarget, input: FuzzInput): void {
  target.check(input.bytes);
  input.verify?.();
}
