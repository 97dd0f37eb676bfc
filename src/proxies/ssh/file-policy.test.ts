import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { FileRules } from "../../contract/file-policy.js";
import type { FileTransferEvent } from "../../modules/sessions/sessions.types.js";
import { execRefusal, transferDirections } from "./file-policy.js";
import { createScpFilter } from "./scp-legacy.js";
import { createSftpFilter, SSH_FX } from "./sftp-filter.js";

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

// --- SFTP packets -------------------------------------------------------------------------------

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
const INIT = packet(1, u32(3));
const VERSION = packet(2, u32(3));
const open = (id: number, path: string, flags: number) => packet(3, u32(id), str(path), u32(flags), u32(0));
const handleReply = (id: number, handle: string) => packet(102, u32(id), str(handle));
const read = (id: number, handle: string, offset: number, length: number) =>
  packet(5, u32(id), str(handle), u64(offset), u32(length));
const write = (id: number, handle: string, offset: number, data: Buffer) =>
  packet(6, u32(id), str(handle), u64(offset), str(data));
const data = (id: number, bytes: Buffer) => packet(103, u32(id), str(bytes));
const status = (id: number, code: number) => packet(101, u32(id), u32(code), str(""), str("en"));
const close = (id: number, handle: string) => packet(4, u32(id), str(handle));

function harness(rules: FileRules | undefined) {
  const toClient: Buffer[] = [];
  const notes: string[] = [];
  const transfers: FileTransferEvent[] = [];
  const broken: string[] = [];
  const filter = createSftpFilter({
    rules,
    role: "web-shell",
    toClient: (p) => toClient.push(p),
    notify: (m) => notes.push(m),
    onTransfer: (e) => transfers.push(e),
    onBroken: (r) => broken.push(r),
  });
  const server: Buffer[] = [];
  const client: Buffer[] = [];
  /** Feeds in chunks of `size` bytes (1: every boundary). */
  const fromClient = (bytes: Buffer, size = bytes.length) => {
    for (let i = 0; i < bytes.length; i += size) server.push(...filter.fromClient(bytes.subarray(i, i + size)));
  };
  const fromServer = (bytes: Buffer, size = bytes.length) => {
    for (let i = 0; i < bytes.length; i += size) {
      const out = filter.fromServer(bytes.subarray(i, i + size));
      client.push(...out);
    }
  };
  return {
    filter,
    toClient,
    notes,
    transfers,
    broken,
    fromClient,
    fromServer,
    server: () => Buffer.concat(server),
    client: () => Buffer.concat([...client]),
  };
}

describe("sftp-filter", () => {
  for (const size of [1, 7, 100_000]) {
    it(`passes a download byte for byte and hashes it in file order (chunks of ${size})`, () => {
      const h = harness(undefined);
      const file = randomBytes(70_000);
      const requests = Buffer.concat([
        INIT,
        open(1, "/srv/a.bin", 1),
        read(2, "h1", 0, 32768),
        read(3, "h1", 32768, 32768),
        read(4, "h1", 65536, 32768),
        read(5, "h1", 98304, 32768),
        close(6, "h1"),
      ]);
      h.fromClient(requests, size);
      expect(h.server().equals(requests)).toBe(true);
      const replies = Buffer.concat([
        VERSION,
        handleReply(1, "h1"),
        data(2, file.subarray(0, 32768)),
        data(3, file.subarray(32768, 65536)),
        data(4, file.subarray(65536)),
        status(5, SSH_FX.EOF),
        status(6, SSH_FX.OK),
      ]);
      h.fromServer(replies, size);
      expect(h.client().equals(replies)).toBe(true);
      expect(h.transfers).toEqual([
        {
          protocol: "sftp",
          direction: "download",
          path: "/srv/a.bin",
          bytes: file.length,
          sha256: sha256(file),
          outcome: "success",
        },
      ]);
    });
  }

  it("parallel reads answered out of order still hash in file order; a re-read makes it 'not sequential' (null)", () => {
    const h = harness(undefined);
    const file = randomBytes(30_000);
    h.fromClient(Buffer.concat([INIT, open(1, "/a", 1), read(2, "h", 0, 10_000), read(3, "h", 10_000, 10_000)]));
    h.fromClient(Buffer.concat([read(4, "h", 20_000, 10_000), close(9, "h")]));
    h.fromServer(Buffer.concat([VERSION, handleReply(1, "h")]));
    h.fromServer(data(4, file.subarray(20_000)), 999);
    h.fromServer(data(3, file.subarray(10_000, 20_000)), 999);
    h.fromServer(data(2, file.subarray(0, 10_000)), 999);
    h.fromServer(status(9, 0));
    expect(h.transfers[0]).toMatchObject({ bytes: 30_000, sha256: sha256(file), outcome: "success" });

    const again = harness(undefined);
    again.fromClient(
      Buffer.concat([INIT, open(1, "/a", 1), read(2, "h", 0, 100), read(3, "h", 0, 100), close(4, "h")]),
    );
    again.fromServer(
      Buffer.concat([
        VERSION,
        handleReply(1, "h"),
        data(2, file.subarray(0, 100)),
        data(3, file.subarray(0, 100)),
        status(4, 0),
      ]),
    );
    expect(again.transfers[0]).toMatchObject({ bytes: 200, sha256: null });
  });

  it("data held out of order is capped per channel: past 16 MiB waiting, hashes turn null instead of memory growing", () => {
    const h = harness(undefined);
    h.fromServer(VERSION);
    h.fromClient(INIT);
    const piece = randomBytes(32 * 1024);
    // 8 files, each sent 3 MiB ahead of its first piece (24 MiB waiting if nothing capped it), then the gaps filled.
    for (let f = 0; f < 8; f++) {
      h.fromClient(open(10 + f, `/f${f}`, 2 | 8));
      h.fromServer(handleReply(10 + f, `h${f}`));
      for (let i = 1; i <= 96; i++) h.fromClient(write(1000 * (f + 1) + i, `h${f}`, i * piece.length, piece));
    }
    for (let f = 0; f < 8; f++) h.fromClient(write(100 + f, `h${f}`, 0, piece));
    for (let f = 0; f < 8; f++) h.fromClient(close(90 + f, `h${f}`));
    for (let f = 0; f < 8; f++) h.fromServer(status(90 + f, 0));
    const whole = sha256(Buffer.concat(Array.from({ length: 97 }, () => piece)));
    expect(h.transfers.map((t) => t.sha256)).toEqual([whole, whole, whole, whole, whole, null, null, null]);
    for (const t of h.transfers) expect(t.bytes).toBe(97 * piece.length);
  });

  it("download: deny refuses an OPEN for reading — also one with no READ bit — and it never reaches the server", () => {
    for (const flags of [1, 0, 1 | 2, 8]) {
      const h = harness({ download: "deny", upload: "allow" });
      h.fromServer(VERSION);
      const before = Buffer.concat([INIT]);
      h.fromClient(Buffer.concat([before, open(7, "/etc/shadow", flags)]), 3);
      expect(h.server().equals(before), `flags ${flags}`).toBe(true);
      expect(h.toClient).toHaveLength(1);
      const reply = h.toClient[0]!;
      expect(reply[4]).toBe(101);
      expect(reply.readUInt32BE(9)).toBe(SSH_FX.PERMISSION_DENIED);
      expect(reply.toString()).toContain("session.files.download: deny");
      expect(h.transfers[0]).toMatchObject({ outcome: "denied", rule: "download", path: "/etc/shadow" });
    }
  });

  it("upload: deny refuses opens that write, append, create or truncate; a write-only download policy lets them pass", () => {
    for (const flags of [2, 2 | 8 | 16, 4, 8, 16]) {
      const h = harness({ download: "allow", upload: "deny" });
      h.fromServer(VERSION);
      h.fromClient(open(1, "/tmp/x", flags));
      expect(h.server().length, `flags ${flags}`).toBe(0);
      expect(h.transfers[0]).toMatchObject({ outcome: "denied", rule: "upload" });
    }
    const h = harness({ download: "deny", upload: "allow" });
    h.fromServer(VERSION);
    const put = open(1, "/tmp/x", 2 | 8 | 16);
    h.fromClient(put);
    expect(h.server().equals(put)).toBe(true);
  });

  it("the proxy's reply waits for the end of a server packet it would otherwise cut", () => {
    const h = harness({ download: "deny", upload: "allow" });
    h.fromServer(VERSION);
    h.fromClient(Buffer.concat([INIT, open(1, "/w", 2)]));
    const other = handleReply(1, "w");
    // The server is half-way through a packet when the refused OPEN comes.
    h.fromServer(other.subarray(0, 6));
    h.fromClient(open(3, "/r", 1));
    expect(h.toClient).toHaveLength(0);
    h.fromServer(other.subarray(6));
    const out = h.client();
    expect(out.subarray(0, VERSION.length + other.length).equals(Buffer.concat([VERSION, other]))).toBe(true);
    const refusal = out.subarray(VERSION.length + other.length);
    expect(refusal[4]).toBe(101);
    expect(refusal.readUInt32BE(5)).toBe(3);
    expect(refusal.readUInt32BE(9)).toBe(SSH_FX.PERMISSION_DENIED);
  });

  it("maxBytes: the DATA reply that would pass it is replaced by a failure; a WRITE that would is dropped", () => {
    const h = harness({ download: "allow", upload: "allow", maxBytes: 1000 });
    h.fromServer(VERSION);
    h.fromClient(
      Buffer.concat([INIT, open(1, "/big", 1), read(2, "h", 0, 800), read(3, "h", 800, 800), close(4, "h")]),
    );
    const file = randomBytes(1600);
    h.fromServer(Buffer.concat([handleReply(1, "h"), data(2, file.subarray(0, 800))]));
    h.fromServer(data(3, file.subarray(800)), 5);
    h.fromServer(status(4, 0));
    const out = h.client();
    expect(out.includes(file.subarray(800, 900))).toBe(false);
    expect(out.includes(file.subarray(0, 800))).toBe(true);
    expect(out.toString()).toContain("policy session.files.maxBytes");
    expect(h.transfers[0]).toMatchObject({ outcome: "denied", rule: "maxBytes", bytes: 800 });

    const up = harness({ download: "allow", upload: "allow", maxBytes: 1000 });
    up.fromServer(VERSION);
    up.fromClient(Buffer.concat([INIT, open(1, "/up", 2 | 8)]));
    up.fromServer(handleReply(1, "u"));
    const ok = write(2, "u", 0, randomBytes(600));
    const tooFar = write(3, "u", 600, randomBytes(600));
    const before = up.server().length;
    up.fromClient(Buffer.concat([ok, tooFar]), 50);
    expect(up.server().length - before).toBe(ok.length);
    expect(up.toClient.at(-1)!.readUInt32BE(9)).toBe(SSH_FX.FAILURE);
  });

  it("uploads hash the WRITE data in offset order, the part inside the head included", () => {
    const h = harness(undefined);
    h.fromServer(VERSION);
    h.fromClient(Buffer.concat([INIT, open(1, "/up", 2 | 8 | 16)]));
    h.fromServer(handleReply(1, "hh"));
    const file = randomBytes(50_000);
    h.fromClient(
      Buffer.concat([
        write(2, "hh", 0, file.subarray(0, 100)),
        write(3, "hh", 100, file.subarray(100)),
        close(4, "hh"),
      ]),
      1000,
    );
    h.fromServer(Buffer.concat([status(2, 0), status(3, 0), status(4, 0)]));
    expect(h.transfers).toEqual([
      { protocol: "sftp", direction: "upload", path: "/up", bytes: 50_000, sha256: sha256(file), outcome: "success" },
    ]);
  });

  it("fails closed under a restrictive policy: an oversized length stops the channel; a server not at version 3 gets no OPEN", () => {
    const h = harness({ download: "allow", upload: "allow", maxBytes: 10 });
    h.fromServer(VERSION);
    expect(h.filter.fromClient(Buffer.from([0xff, 0xff, 0xff, 0xff, 1]))).toEqual([]);
    expect(h.broken).toHaveLength(1);

    const v6 = harness({ download: "allow", upload: "allow", maxBytes: 10 });
    v6.fromServer(packet(2, u32(6)));
    v6.fromClient(open(1, "/x", 1));
    expect(v6.server().length).toBe(0);
    expect(v6.transfers[0]).toMatchObject({ outcome: "denied" });
  });
});

// --- scp -O --------------------------------------------------------------------------------------

function scpHarness(direction: "upload" | "download", path: string, maxBytes?: number) {
  const transfers: FileTransferEvent[] = [];
  const stops: string[] = [];
  const filter = createScpFilter({
    direction,
    path,
    targetIsDirectory: path.endsWith("/"),
    role: "web-shell",
    maxBytes,
    onTransfer: (e) => transfers.push(e),
    onStop: (m) => stops.push(m),
  });
  const out: Buffer[] = [];
  const feed = (bytes: Buffer, size = bytes.length) => {
    for (let i = 0; i < bytes.length; i += size) out.push(...filter.feed(bytes.subarray(i, i + size)));
  };
  return { filter, transfers, stops, feed, out: () => Buffer.concat(out) };
}

describe("scp-legacy", () => {
  for (const size of [1, 3, 1_000_000]) {
    it(`follows C, D, E and T records, passes every byte and hashes each file (chunks of ${size})`, () => {
      const a = randomBytes(5000);
      const b = Buffer.from("bee\n");
      const stream = Buffer.concat([
        Buffer.from("D0755 0 dir\nT1 0 1 0\n"),
        Buffer.from(`C0644 ${a.length} a.bin\n`),
        a,
        Buffer.from([0]),
        Buffer.from("D0755 0 sub\nC0600 4 b.txt\n"),
        b,
        Buffer.from([0]),
        Buffer.from("E\nE\nC0644 0 empty\n\0"),
      ]);
      const h = scpHarness("download", "/srv/dir");
      h.feed(stream, size);
      expect(h.out().equals(stream)).toBe(true);
      expect(h.transfers.map(({ path, bytes, sha256: hash }) => ({ path, bytes, hash }))).toEqual([
        { path: "/srv/dir/a.bin", bytes: 5000, hash: sha256(a) },
        { path: "/srv/dir/sub/b.txt", bytes: 4, hash: sha256(b) },
        { path: "/srv/empty", bytes: 0, hash: sha256(Buffer.alloc(0)) },
      ]);
    });
  }

  it("a recursive upload into a directory keeps the directory's name in the path", () => {
    const h = scpHarness("upload", "/tmp/");
    h.feed(Buffer.from("D0755 0 tree\nC0644 2 f\nhi\0E\n"));
    expect(h.transfers[0]).toMatchObject({ path: "/tmp/tree/f", bytes: 2, outcome: "success" });
  });

  it("bytes a packet carries past its data's length are not hashed (SFTP WRITE with padding)", () => {
    const h = harness(undefined);
    h.fromServer(VERSION);
    h.fromClient(Buffer.concat([INIT, open(1, "/p", 2 | 8)]));
    h.fromServer(handleReply(1, "p"));
    const file = randomBytes(1000);
    const body = Buffer.concat([u32(2), str("p"), u64(0), str(file), Buffer.alloc(500, "P")]);
    h.fromClient(Buffer.concat([u32(body.length + 1), Buffer.from([6]), body]));
    h.fromClient(close(3, "p"));
    h.fromServer(Buffer.concat([status(2, 0), status(3, 0)]));
    expect(h.transfers[0]).toMatchObject({ bytes: 1000, sha256: sha256(file) });
  });

  it("a size claimed in the record frames the file as the receiver frames it (the extra bytes are the next record)", () => {
    const h = scpHarness("upload", "/tmp/");
    h.feed(Buffer.from("C0644 5 f.txt\nhelloEXTRA!!\0"));
    expect(h.transfers[0]).toMatchObject({ path: "/tmp/f.txt", bytes: 5, sha256: sha256(Buffer.from("hello")) });
    expect(h.transfers[0]!.outcome).toBe("failed"); // 'E' where the status byte belongs
  });

  it("maxBytes: a record over it stops the transfer and nothing of that record passes, even split over chunks", () => {
    const h = scpHarness("upload", "/tmp/", 100);
    const ok = Buffer.concat([Buffer.from("C0644 3 a\nabc"), Buffer.from([0])]);
    h.feed(Buffer.concat([ok, Buffer.from("C0644 101 b\n"), randomBytes(101)]), 2);
    expect(h.out().equals(ok)).toBe(true);
    expect(h.stops[0]).toContain("larger than the 100 bytes");
    expect(h.transfers.map((t) => t.outcome)).toEqual(["success", "denied"]);
  });
});

// --- exec command lines --------------------------------------------------------------------------

describe("exec command lines under the file policy", () => {
  const deny: FileRules = { download: "deny", upload: "allow" };
  it("reads scp, sftp-server and rsync --server inside other command lines", () => {
    expect([...transferDirections("sh -c 'scp -f /etc/passwd'")]).toEqual(["download"]);
    expect([...transferDirections("scp -prt /tmp")]).toEqual(["upload"]);
    expect([...transferDirections("exec /usr/lib/openssh/sftp-server -R")].sort()).toEqual(["download", "upload"]);
    expect([...transferDirections("rsync --server --sender -l . x")]).toEqual(["download"]);
    expect([...transferDirections("cat /etc/passwd")]).toEqual([]);
    expect([...transferDirections("grep -f list scp.log")]).toEqual([]);
  });

  it("refuses a denied direction, and under maxBytes anything it cannot follow", () => {
    expect(execRefusal(deny, "r", "scp -f /x", { direction: "download", path: "/x" }, undefined)).toMatchObject({
      protocol: "scp",
      scpRecord: true,
      rule: "download",
    });
    expect(execRefusal(deny, "r", "scp -t /x", { direction: "upload", path: "/x" }, undefined)).toBeUndefined();
    expect(execRefusal(deny, "r", "sh -c 'scp -f /x'", undefined, undefined)).toMatchObject({ protocol: "exec" });
    expect(execRefusal(deny, "r", "cat /x", undefined, undefined)).toBeUndefined();
    const capped: FileRules = { download: "allow", upload: "allow", maxBytes: 5 };
    expect(
      execRefusal(capped, "r", "rsync --server . /x", undefined, { direction: "upload", paths: ["/x"] }),
    ).toMatchObject({ rule: "maxBytes", protocol: "rsync" });
    expect(execRefusal(capped, "r", "scp -f /x", { direction: "download", path: "/x" }, undefined)).toBeUndefined();
    expect(execRefusal(undefined, "r", "sh -c 'scp -f /x'", undefined, undefined)).toBeUndefined();
  });
});
