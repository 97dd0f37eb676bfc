import { mkdtemp, readdir, readFile, rm, stat, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  configDir,
  credentialsPath,
  deleteCredentials,
  loadCredentials,
  saveCredentials,
  withCredentialsLock,
  type SavedCredentials,
} from "./credentials.js";
import { CliError, EXIT_CODES } from "./exit-codes.js";

const sample: SavedCredentials = {
  version: 1,
  server: "http://127.0.0.1:8420",
  principal: { id: "0190b6a0-0000-7000-8000-000000000001", name: "alice" },
  accessToken: "access-1",
  accessTokenExpiresAt: "2030-01-01T00:00:00.000Z",
  refreshToken: "refresh-1",
  refreshTokenExpiresAt: "2030-01-02T00:00:00.000Z",
  savedAt: "2029-12-31T00:00:00.000Z",
};

const mode = async (file: string) => (await stat(file)).mode & 0o777;

describe("credentials file", () => {
  let root: string;
  let savedUmask: number;

  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), "stint-cli-"));
    // With umask 0 nothing masks a sloppy mode: only modes set at creation can pass.
    savedUmask = process.umask(0);
  });
  afterEach(async () => {
    process.umask(savedUmask);
    await rm(root, { recursive: true, force: true });
  });

  it.skipIf(process.platform === "win32")("is created 0600 inside a 0700 directory", async () => {
    const env = { STINT_CONFIG_DIR: path.join(root, "nested", "stint") };
    const file = await saveCredentials(env, sample);
    expect(file).toBe(path.join(root, "nested", "stint", "credentials.json"));
    expect(await mode(file)).toBe(0o600);
    expect(await mode(path.dirname(file))).toBe(0o700);
    expect(await loadCredentials(env)).toEqual(sample);
  });

  it.skipIf(process.platform === "win32")(
    "replaces a too-open file with a 0600 one and leaves no temp files",
    async () => {
      const dir = path.join(root, "stint");
      await mkdir(dir, { mode: 0o700 });
      await writeFile(path.join(dir, "credentials.json"), "{}", { mode: 0o644 });
      const warnings: string[] = [];
      await expect(loadCredentials({ STINT_CONFIG_DIR: dir }, (message) => warnings.push(message))).rejects.toThrow(
        /damaged/,
      );
      expect(warnings.join()).toMatch(/readable by others/);
      await saveCredentials({ STINT_CONFIG_DIR: dir }, sample);
      await saveCredentials({ STINT_CONFIG_DIR: dir }, { ...sample, accessToken: "access-2" });
      expect(await mode(path.join(dir, "credentials.json"))).toBe(0o600);
      expect(await readdir(dir)).toEqual(["credentials.json"]);
      expect(JSON.parse(await readFile(path.join(dir, "credentials.json"), "utf8")).accessToken).toBe("access-2");
    },
  );

  it("is missing → null; damaged → CONFIG_INVALID (exit 2); deleted → gone", async () => {
    const env = { STINT_CONFIG_DIR: root };
    expect(await loadCredentials(env)).toBeNull();
    expect(await deleteCredentials(env)).toBe(false);
    await writeFile(credentialsPath(env), "not json", { mode: 0o600 });
    const error = await loadCredentials(env).catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(CliError);
    expect((error as CliError).code).toBe("CONFIG_INVALID");
    expect((error as CliError).exitCode).toBe(EXIT_CODES.usage);
    expect(await deleteCredentials(env)).toBe(true);
    expect(await loadCredentials(env)).toBeNull();
  });

  it("lives in $STINT_CONFIG_DIR, else $XDG_CONFIG_HOME/stint (absolute only), else ~/.config/stint", () => {
    expect(configDir({ STINT_CONFIG_DIR: "/a/b", XDG_CONFIG_HOME: "/x", HOME: "/h" })).toBe("/a/b");
    expect(configDir({ XDG_CONFIG_HOME: "/x", HOME: "/h" })).toBe(path.join("/x", "stint"));
    expect(configDir({ XDG_CONFIG_HOME: "relative", HOME: "/h" })).toBe(path.join("/h", ".config", "stint"));
    expect(configDir({ HOME: "/h" })).toBe(path.join("/h", ".config", "stint"));
  });

  it("serializes work under the lock and breaks a stale lock", async () => {
    const env = { STINT_CONFIG_DIR: root };
    const order: string[] = [];
    const job = (label: string) =>
      withCredentialsLock(env, async () => {
        order.push(`${label}:in`);
        await new Promise((resolve) => setTimeout(resolve, 30));
        order.push(`${label}:out`);
      });
    await Promise.all([job("a"), job("b")]);
    // Either may win the lock, but the two never overlap.
    expect(order.map((step) => step.split(":")[1])).toEqual(["in", "out", "in", "out"]);
    expect(order[0]?.[0]).toBe(order[1]?.[0]);
    expect(order[2]?.[0]).toBe(order[3]?.[0]);

    await writeFile(path.join(root, "credentials.lock"), "");
    const result = await withCredentialsLock(env, async () => "done", { staleMs: 0, waitMs: 1000 });
    expect(result).toBe("done");
    expect(await readdir(root)).toEqual([]);
  });
});
