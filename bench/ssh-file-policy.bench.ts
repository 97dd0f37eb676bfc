/**
 * What the SSH proxy's file-transfer policy costs per byte (issue 18): CPU time to pass an SFTP download
 * and an upload of `--size-mb` through the SFTP filter (packet heads read, file data hashed with SHA-256 as
 * it streams, nothing copied) next to the recording's tracker alone (sftp-log.ts: heads only) and to a bare
 * SHA-256 of the same bytes. Socket-free, in process: 32 KiB packets in 64 KiB chunks, as the relay sees
 * them. Prints CPU ms per MiB and MiB/s of CPU. PASS when what the filter spends beyond SHA-256 itself (the
 * hash is what the audit asks for) stays under 0.5 CPU ms per MiB: under ~15% of the 3.3–4.8 ms per MB the
 * relay itself spends on an scp/sftp copy (bench/README.md, ssh-proxy bench).
 *
 *   node --import tsx bench/ssh-file-policy.bench.ts [--size-mb=256]
 */
import { createHash, randomBytes } from "node:crypto";
import { createSftpFilter } from "../src/proxies/ssh/sftp-filter.js";
import { createSftpTracker } from "../src/proxies/ssh/sftp-log.js";

const sizeMb = Number(/^--size-mb=(\d+)$/.exec(process.argv[2] ?? "")?.[1] ?? 256);
const PACKET = 32 * 1024;

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const u64 = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};
const str = (s: string | Buffer) => Buffer.concat([u32(Buffer.byteLength(s)), Buffer.from(s)]);
const packet = (type: number, ...parts: Buffer[]) => {
  const body = Buffer.concat([Buffer.from([type]), ...parts]);
  return Buffer.concat([u32(body.length), body]);
};

const payload = randomBytes(PACKET);
const count = (sizeMb * 1024 * 1024) / PACKET;

/** The server's side of a download (DATA replies) and the client's of an upload (WRITEs), in 64 KiB chunks. */
function streams() {
  const replies: Buffer[] = [];
  const writes: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    replies.push(packet(103, u32(100 + i), str(payload)));
    writes.push(packet(6, u32(100_000 + i), str("u"), u64(i * PACKET), str(payload)));
  }
  const chunked = (all: Buffer) => {
    const out: Buffer[] = [];
    for (let i = 0; i < all.length; i += 65536) out.push(all.subarray(i, i + 65536));
    return out;
  };
  return { replies: chunked(Buffer.concat(replies)), writes: chunked(Buffer.concat(writes)) };
}

function cpuMs(work: () => void): number {
  const start = process.cpuUsage();
  work();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

const { replies, writes } = streams();
const requests = [packet(1, u32(3)), packet(3, u32(1), str("/d"), u32(1), u32(0))];
for (let i = 0; i < count; i++) requests.push(packet(5, u32(100 + i), str("d"), u64(i * PACKET), u32(PACKET)));
const uploadOpen = [packet(3, u32(2), str("/u"), u32(2 | 8 | 16), u32(0))];

function filterRun(): number {
  const filter = createSftpFilter({
    rules: { download: "allow", upload: "allow", maxBytes: 2 ** 40 },
    role: "bench",
    toClient: () => undefined,
    notify: () => undefined,
    onTransfer: () => undefined,
    onBroken: () => undefined,
  });
  filter.fromServer(packet(2, u32(3)));
  for (const r of requests) filter.fromClient(r);
  filter.fromServer(packet(102, u32(1), str("d")));
  for (const r of uploadOpen) filter.fromClient(r);
  filter.fromServer(packet(102, u32(2), str("u")));
  return cpuMs(() => {
    for (const chunk of replies) filter.fromServer(chunk);
    for (const chunk of writes) filter.fromClient(chunk);
  });
}

function trackerRun(): number {
  const tracker = createSftpTracker();
  return cpuMs(() => {
    for (const chunk of replies) tracker.fromServer(chunk);
    for (const chunk of writes) tracker.fromClient(chunk);
  });
}

function hashRun(): number {
  return cpuMs(() => {
    const a = createHash("sha256");
    for (const chunk of replies) a.update(chunk);
    const b = createHash("sha256");
    for (const chunk of writes) b.update(chunk);
    a.digest();
    b.digest();
  });
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const runs = { filter: [] as number[], tracker: [] as number[], hash: [] as number[] };
for (let round = 0; round < 5; round++) {
  runs.filter.push(filterRun());
  runs.tracker.push(trackerRun());
  runs.hash.push(hashRun());
}
const mib = 2 * sizeMb;
const line = (name: string, ms: number) =>
  console.log(`${name.padEnd(34)} ${(ms / mib).toFixed(3)} CPU ms/MiB  ${(mib / (ms / 1000)).toFixed(0)} MiB/s of CPU`);
console.log(`SFTP file-transfer policy, ${sizeMb} MiB down + ${sizeMb} MiB up, 32 KiB packets, median of 5`);
const filter = median(runs.filter);
const tracker = median(runs.tracker);
const hash = median(runs.hash);
line("tracker (recording, heads only)", tracker);
line("SHA-256 alone", hash);
line("filter (policy + SHA-256)", filter);
const beyond = (filter - hash) / mib;
console.log(`filter beyond SHA-256: ${beyond.toFixed(3)} CPU ms/MiB  ${beyond < 0.5 ? "PASS" : "FAIL"} (< 0.5 ms/MiB)`);
