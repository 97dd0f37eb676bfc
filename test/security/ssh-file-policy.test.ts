/**
 * The file-transfer policy on the SSH proxy (issue 18, acceptance 5): a real Stint server, the real SSH
 * proxy, a real sshd and the real OpenSSH clients — `scp` (SFTP, OpenSSH's default), `scp -O` (the legacy
 * protocol) and `sftp`. With `download: deny` the three downloads fail with Stint's message and nothing
 * reaches the client while uploads work; with everything allowed each transfer's path, size and SHA-256
 * are in the audit log (`session.file_transfer`) and match the file, computed directly; maxBytes stops a
 * larger file. Attacks: an OPEN without the READ bit (OpenSSH opens it read-only), scp hidden in another
 * command line, sftp-server run as an exec, a symlink or rename to a denied file, an scp -O client that
 * claims a size other than what it sends.
 */
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newestEnded, servedRecording } from "../../src/testing/ssh-recordings.js";
import { sshSessionsHarness, type ClientResult, type SshSessionsHarness } from "../../src/testing/ssh-sessions.js";
import { untilValue } from "../../src/testing/until.js";

const HEX = randomBytes(3).toString("hex");
/** On the target (the sessions log in as root). */
const REMOTE = `/tmp/stint-files-${HEX}`;
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

let h: SshSessionsHarness;
let user: string;
let key: string;
let local: string;
const big = randomBytes(300_000);
const small = Buffer.from(`small file ${HEX}\n`);

const POLICY = (files: string) => `    session: { recording: required, files: ${files} }`;

async function setPolicy(files: string): Promise<void> {
  const yaml = h.catalog.replace(/^ {4}session: .*$/m, POLICY(files));
  const res = await h.admin("POST", "/v1/config/apply", { yaml });
  if (res.status >= 300) throw new Error(`apply: ${res.status} ${JSON.stringify(res.body)}`);
}

function run(program: string, args: string[], input = "", timeoutMs = 30_000): Promise<ClientResult> {
  return new Promise((resolve) => {
    const child = spawn(program, args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

/** ssh's options for scp and sftp (which take the port as -P). */
function clientOptions(): string[] {
  const args = h.sshArgs(key, `${user}%web`);
  // sshArgs ends with -p PORT LOGIN@HOST: the options are what comes before.
  return args.slice(0, args.indexOf("-p"));
}
const remote = (path: string) => `${user}%web@127.0.0.1:${path}`;
const scp = (legacy: boolean, from: string, to: string) =>
  run("scp", [...clientOptions(), "-P", String(h.proxyPort), ...(legacy ? ["-O"] : []), from, to]);
const sftp = (commands: string) =>
  run("sftp", [...clientOptions(), "-P", String(h.proxyPort), "-b", "-", `${user}%web@127.0.0.1`], commands);

type AuditRow = { outcome: string; reason: string | null; details: Record<string, unknown>; subject: string | null };

/**
 * The session.file_transfer events whose path contains `marker`, once at least `count` of them that `counts`
 * arrived (they are written as the transfer ends, maybe after the client exits); throws naming them if not.
 */
async function transfers(
  marker: string,
  count = 1,
  counts: (row: AuditRow) => boolean = () => true,
): Promise<AuditRow[]> {
  return untilValue(
    `${count} session.file_transfer event(s) for ${marker}`,
    async () => {
      const rows = (await h.server.store.db
        .selectFrom("audit_events")
        .select(["outcome", "reason", "details", "subject"])
        .where("action", "=", "session.file_transfer")
        .execute()) as AuditRow[];
      const mine = rows.filter((row) => String(row.details.path).includes(marker));
      return mine.filter(counts).length >= count && mine;
    },
    15_000,
  );
}

beforeAll(async () => {
  h = await sshSessionsHarness({ policy: POLICY("{ download: deny }"), sshdConfig: ["Subsystem sftp internal-sftp"] });
  user = h.users[0]!;
  local = join(h.dir, "local");
  mkdirSync(local);
  await h.activate(user, "web-shell", "1h");
  key = (await h.certify(user, "web-shell")).key;
  mkdirSync(REMOTE, { recursive: true });
  writeFileSync(join(REMOTE, "big.bin"), big);
  writeFileSync(join(REMOTE, "small.txt"), small);
  // Files one test each reads, so that the audit events of a path are that test's alone.
  for (const name of ["deny-sftp.txt", "deny-legacy.txt"]) writeFileSync(join(REMOTE, name), small);
  writeFileSync(join(REMOTE, "recorded.bin"), big);
}, 180_000);

afterAll(async () => {
  rmSync(REMOTE, { recursive: true, force: true });
  await h?.cleanup();
}, 60_000);

describe("download: deny", () => {
  beforeAll(async () => setPolicy("{ download: deny }"), 30_000);

  it("scp (SFTP) cannot download: the client shows the policy, nothing arrives, the refusal is audited", async () => {
    const to = join(local, "sftp-mode-small.txt");
    const result = await scp(false, remote(`${REMOTE}/deny-sftp.txt`), to);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("Downloads are not allowed for role web-shell");
    expect(result.stderr).toContain("session.files.download: deny");
    expect(existsSync(to) && readFileSync(to).length > 0).toBe(false);
    const [event] = await transfers(`${REMOTE}/deny-sftp.txt`);
    expect(event).toMatchObject({ outcome: "denied" });
    expect(event!.details).toMatchObject({ protocol: "sftp", direction: "download", rule: "download", bytes: 0 });
  }, 60_000);

  it("scp -O cannot download: scp -f never reaches the target, the client prints the policy", async () => {
    const to = join(local, "legacy-small.txt");
    const result = await scp(true, remote(`${REMOTE}/deny-legacy.txt`), to);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("Downloads are not allowed for role web-shell");
    expect(existsSync(to)).toBe(false);
    const events = await transfers(`${REMOTE}/deny-legacy.txt`);
    expect(events.map((event) => event.details.protocol)).toContain("scp");
  }, 60_000);

  it("sftp get fails with the policy's message", async () => {
    const to = join(local, "sftp-get.bin");
    const result = await sftp(`get ${REMOTE}/big.bin ${to}\n`);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("Downloads are not allowed for role web-shell");
    expect(existsSync(to) && readFileSync(to).length > 0).toBe(false);
  }, 60_000);

  it("uploads work with all three clients, each audited with the path, size and SHA-256 of the file", async () => {
    const file = join(local, `up-${HEX}.bin`);
    const data = randomBytes(200_000);
    writeFileSync(file, data);
    const sftpMode = await scp(false, file, remote(`${REMOTE}/up-scp.bin`));
    expect(sftpMode.code, sftpMode.stderr).toBe(0);
    const legacy = await scp(true, file, remote(`${REMOTE}/up-legacy.bin`));
    expect(legacy.code, legacy.stderr).toBe(0);
    const put = await sftp(`put ${file} ${REMOTE}/up-sftp.bin\n`);
    expect(put.code, put.stderr).toBe(0);
    for (const [name, protocol] of [
      ["up-scp.bin", "sftp"],
      ["up-legacy.bin", "scp"],
      ["up-sftp.bin", "sftp"],
    ] as const) {
      const stored = readFileSync(join(REMOTE, name));
      expect(stored.equals(data)).toBe(true);
      const [event] = await transfers(`${REMOTE}/${name}`);
      expect(event, name).toBeDefined();
      expect(event!.outcome).toBe("success");
      expect(event!.details).toMatchObject({
        protocol,
        direction: "upload",
        path: `${REMOTE}/${name}`,
        bytes: stored.length,
        sha256: sha256(stored),
      });
    }
  }, 90_000);

  it("attack: an SFTP OPEN without the READ bit (which OpenSSH opens read-only) is refused too", async () => {
    const path = `${REMOTE}/small.txt`;
    const name = Buffer.from(path);
    const packet = (type: number, body: Buffer) => {
      const head = Buffer.alloc(5);
      head.writeUInt32BE(body.length + 1, 0);
      head[4] = type;
      return Buffer.concat([head, body]);
    };
    const init = packet(1, Buffer.from([0, 0, 0, 3]));
    const open = Buffer.alloc(4 + 4 + name.length + 4 + 4);
    open.writeUInt32BE(7, 0); // id
    open.writeUInt32BE(name.length, 4);
    name.copy(open, 8);
    open.writeUInt32BE(0, 8 + name.length); // pflags: none
    open.writeUInt32BE(0, 12 + name.length); // attrs: none
    const result = await new Promise<Buffer>((resolve) => {
      const child = spawn("ssh", [...h.sshArgs(key, `${user}%web`, ["-s"]), "sftp"], {
        stdio: ["pipe", "pipe", "pipe"],
      });
      const chunks: Buffer[] = [];
      child.stdout.on("data", (chunk: Buffer) => {
        chunks.push(chunk);
        const all = Buffer.concat(chunks);
        // VERSION, then the answer to the OPEN: enough read, hang up.
        if (all.length >= 9 && all.length >= all.readUInt32BE(0) + 4 + 9) child.stdin.end();
      });
      child.on("close", () => resolve(Buffer.concat(chunks)));
      setTimeout(() => child.kill("SIGKILL"), 20_000);
      child.stdin.write(init);
      child.stdin.write(packet(3, open));
    });
    const versionLength = result.readUInt32BE(0) + 4;
    const reply = result.subarray(versionLength);
    expect(reply[4]).toBe(101); // SSH_FXP_STATUS, not a HANDLE
    expect(reply.readUInt32BE(5)).toBe(7);
    expect(reply.readUInt32BE(9)).toBe(3); // SSH_FX_PERMISSION_DENIED
    expect(reply.toString("utf8")).toContain("session.files.download: deny");
  }, 60_000);

  it("attack: a symlink or a rename of the file gets it no further", async () => {
    const to = join(local, "via-link.txt");
    const result = await sftp(
      `symlink ${REMOTE}/small.txt ${REMOTE}/link-${HEX}\n-get ${REMOTE}/link-${HEX} ${to}\nrename ${REMOTE}/link-${HEX} ${REMOTE}/moved-${HEX}\nget ${REMOTE}/moved-${HEX} ${to}\n`,
    );
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("Downloads are not allowed");
    expect(existsSync(to) && readFileSync(to).length > 0).toBe(false);
  }, 60_000);

  it("attack: scp -f inside another command line, and sftp-server run as an exec, are refused before the target", async () => {
    for (const command of [
      `sh -c 'scp -f ${REMOTE}/small.txt'`,
      `scp -f ${REMOTE}/small.txt; true`,
      `/usr/lib/openssh/sftp-server`,
      `rsync --server --sender -logDtpre.iLsfxC . ${REMOTE}/small.txt`,
    ]) {
      const result = await h.ssh(key, `${user}%web`, [command], { input: "\0" });
      expect(result.code, command).toBe(1);
      expect(result.stderr + result.stdout, command).toMatch(/not allowed for role web-shell/);
      expect(result.stdout, command).not.toContain(small.toString());
    }
  }, 90_000);

  it("a shell or an exec can still print a file (documented): its output is in the recording in full", async () => {
    const result = await h.ssh(key, `${user}%web`, [`cat ${REMOTE}/small.txt`]);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(small.toString());
    // The exec's session, once it has ended and its recording is closed.
    const { text } = await servedRecording(h, await newestEnded(h, user));
    expect(text).toContain(`small file ${HEX}`);
  }, 90_000);
});

describe("download and upload allowed", () => {
  beforeAll(async () => setPolicy("{ download: allow, upload: allow }"), 30_000);

  it("scp, scp -O and sftp get download; each audit event has the file's path, size and SHA-256", async () => {
    const results = {
      sftpMode: await scp(false, remote(`${REMOTE}/big.bin`), join(local, "a.bin")),
      legacy: await scp(true, remote(`${REMOTE}/big.bin`), join(local, "b.bin")),
      get: await sftp(`get ${REMOTE}/big.bin ${join(local, "c.bin")}\n`),
    };
    for (const [name, result] of Object.entries(results)) expect(result.code, `${name}: ${result.stderr}`).toBe(0);
    for (const name of ["a.bin", "b.bin", "c.bin"]) expect(readFileSync(join(local, name)).equals(big)).toBe(true);
    // The denied download of the first describe may be there too (or not, in another order): wait for the three.
    const success = (event: AuditRow) => event.outcome === "success";
    const events = (await transfers(`${REMOTE}/big.bin`, 3, success)).filter(success);
    expect(events.length).toBe(3);
    const expected = sha256(readFileSync(join(REMOTE, "big.bin")));
    for (const event of events) {
      expect(event.details).toMatchObject({ direction: "download", path: `${REMOTE}/big.bin`, bytes: big.length });
      expect(event.details.sha256).toBe(expected);
    }
    expect(events.map((event) => event.details.protocol).sort()).toEqual(["scp", "sftp", "sftp"]);
  }, 90_000);

  it("the recording names each transfer (file_transfer) and holds none of the file's bytes", async () => {
    // A download of its own (a file no other test reads): the last session, once it has ended and its recording
    // is closed.
    const get = await sftp(`get ${REMOTE}/recorded.bin ${join(local, "recorded.bin")}\n`);
    expect(get.code, get.stderr).toBe(0);
    const { text, recording } = await servedRecording(h, await newestEnded(h, user));
    expect(recording.kind === "ssh" && recording.events).toContainEqual(
      expect.objectContaining({ event: "file_transfer", path: `${REMOTE}/recorded.bin`, sha256: sha256(big) }),
    );
    expect(text.length).toBeLessThan(big.length / 4);
  }, 90_000);

  it("attack: an scp -O client that claims another size than it sends: the audit matches what the target wrote", async () => {
    const name = `claim-${HEX}.txt`;
    // Claims 5 bytes, sends 12: the target's scp writes 5 and reads the rest as its next record.
    const stream = Buffer.concat([Buffer.from(`C0644 5 ${name}\n`), Buffer.from("helloEXTRA!!"), Buffer.from([0])]);
    await h.ssh(key, `${user}%web`, [`scp -t ${REMOTE}/`], { input: stream.toString("latin1") });
    const stored = readFileSync(join(REMOTE, name));
    expect(stored.toString()).toBe("hello");
    const [event] = await transfers(name);
    expect(event!.details).toMatchObject({ protocol: "scp", bytes: 5, sha256: sha256(stored) });
  }, 60_000);
});

describe("maxBytes", () => {
  beforeAll(async () => setPolicy("{ maxBytes: 100000 }"), 30_000);

  it("a file larger than maxBytes is stopped with a message by scp, scp -O and sftp; a smaller one passes", async () => {
    const results = {
      sftpMode: await scp(false, remote(`${REMOTE}/big.bin`), join(local, "m1.bin")),
      legacy: await scp(true, remote(`${REMOTE}/big.bin`), join(local, "m2.bin")),
      get: await sftp(`get ${REMOTE}/big.bin ${join(local, "m3.bin")}\n`),
    };
    for (const [name, result] of Object.entries(results)) {
      expect(result.code, name).not.toBe(0);
      expect(result.stderr, name).toContain("larger than the 100000 bytes role web-shell may transfer");
    }
    for (const name of ["m1.bin", "m2.bin", "m3.bin"]) {
      const path = join(local, name);
      expect(existsSync(path) ? readFileSync(path).length : 0).toBeLessThanOrEqual(100_000);
    }
    const overSize = (event: AuditRow) => event.details.rule === "maxBytes";
    const denied = (await transfers(`${REMOTE}/big.bin`, 3, overSize)).filter(overSize);
    expect(denied.length).toBeGreaterThanOrEqual(3);
    for (const event of denied) expect(event.details.bytes as number).toBeLessThanOrEqual(100_000);

    const ok = await scp(false, remote(`${REMOTE}/small.txt`), join(local, "m4.txt"));
    expect(ok.code, ok.stderr).toBe(0);
    expect(readFileSync(join(local, "m4.txt")).equals(small)).toBe(true);
  }, 90_000);

  it("an upload larger than maxBytes is stopped (scp -O: before any byte of it reaches the target)", async () => {
    const file = join(local, `too-big-${HEX}.bin`);
    writeFileSync(file, randomBytes(150_000));
    const legacy = await scp(true, file, remote(`${REMOTE}/too-big-legacy.bin`));
    expect(legacy.code).not.toBe(0);
    expect(legacy.stderr).toContain("larger than the 100000 bytes");
    expect(existsSync(join(REMOTE, "too-big-legacy.bin"))).toBe(false);
    const put = await sftp(`put ${file} ${REMOTE}/too-big-sftp.bin\n`);
    expect(put.code).not.toBe(0);
    expect(put.stderr).toContain("larger than the 100000 bytes");
    const stored = join(REMOTE, "too-big-sftp.bin");
    expect(existsSync(stored) ? readFileSync(stored).length : 0).toBeLessThanOrEqual(100_000);
  }, 60_000);
});
