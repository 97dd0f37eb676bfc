/**
 * The saved sign-in: one JSON file in the user's config directory. The directory is created 0700
 * and the file is born 0600 (a temporary file opened with that mode, then renamed into place), so
 * there is never a moment when the tokens are readable by anyone else.
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, readdir, rename, stat, unlink } from "node:fs/promises";
import { homedir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { CliError, usageError } from "./exit-codes.js";

export const CREDENTIALS_FILE = "credentials.json";
const LOCK_FILE = "credentials.lock";
export const DIR_MODE = 0o700;
export const FILE_MODE = 0o600;

const savedCredentials = z.object({
  version: z.literal(1),
  server: z.string().min(1),
  principal: z.object({ id: z.string(), name: z.string() }),
  accessToken: z.string().min(1),
  accessTokenExpiresAt: z.string(),
  /** Empty for an exchanged sign-in (`exchanged`), which is never refreshed. */
  refreshToken: z.string(),
  refreshTokenExpiresAt: z.string(),
  savedAt: z.string(),
  /** A workload's API token from `stint login --token-exchange-from-env`: used until it expires, then exchanged anew. */
  exchanged: z.boolean().optional(),
});
export type SavedCredentials = z.infer<typeof savedCredentials>;

type Env = Readonly<Record<string, string | undefined>>;

/** `$STINT_CONFIG_DIR`, else `$XDG_CONFIG_HOME/stint`, else `~/.config/stint`. */
export function configDir(env: Env): string {
  const explicit = env.STINT_CONFIG_DIR;
  if (explicit) return path.resolve(explicit);
  const xdg = env.XDG_CONFIG_HOME;
  // The XDG spec says a relative value is invalid and must be ignored.
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, "stint");
  return path.join(env.HOME || homedir(), ".config", "stint");
}

/** The profile every sign-in belongs to unless another is chosen. */
export const DEFAULT_PROFILE = "default";
const CURRENT_PROFILE_FILE = "current-profile";
/** A profile's name is a directory name: no separators, no dots first (`..`), nothing a shell mangles. */
const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export function checkProfileName(name: string): string {
  if (!PROFILE_NAME.test(name))
    throw usageError(
      `"${name}" is not a profile name: letters, digits, "-" and "_", at most 64, starting with a letter or digit`,
    );
  return name;
}

/** The profile in force: `$STINT_PROFILE` (set from --profile too), else the one `stint auth switch` chose. */
export async function currentProfile(env: Env): Promise<string> {
  if (env.STINT_PROFILE !== undefined && env.STINT_PROFILE !== "") return checkProfileName(env.STINT_PROFILE);
  const chosen = await readFile(path.join(configDir(env), CURRENT_PROFILE_FILE), "utf8").then(
    (text) => text.trim(),
    () => "",
  );
  return chosen === "" ? DEFAULT_PROFILE : checkProfileName(chosen);
}

/** Makes NAME the profile used when neither --profile nor $STINT_PROFILE says otherwise. */
export async function chooseProfile(env: Env, name: string): Promise<void> {
  const dir = configDir(env);
  await mkdir(dir, { recursive: true, mode: DIR_MODE });
  const temporary = path.join(dir, `.${CURRENT_PROFILE_FILE}.${process.pid}.tmp`);
  const handle = await open(temporary, "w", FILE_MODE);
  try {
    await handle.writeFile(`${checkProfileName(name)}\n`, "utf8");
  } finally {
    await handle.close();
  }
  await rename(temporary, path.join(dir, CURRENT_PROFILE_FILE));
}

/**
 * Where a profile keeps its sign-in (and SSH certificates): the config directory itself for the default
 * profile (as before profiles existed), `profiles/NAME` for the others. `env.STINT_PROFILE` is resolved
 * (runCli sets it once per command line), so this needs no file read.
 */
export function profileDir(env: Env): string {
  const name = env.STINT_PROFILE ? checkProfileName(env.STINT_PROFILE) : DEFAULT_PROFILE;
  return name === DEFAULT_PROFILE ? configDir(env) : path.join(configDir(env), "profiles", name);
}

/** Every profile that holds a sign-in, the default first. */
export async function listProfiles(env: Env): Promise<string[]> {
  const names: string[] = [];
  const hasCredentials = (name: string) =>
    stat(credentialsPath({ ...env, STINT_PROFILE: name })).then(
      () => true,
      () => false,
    );
  if (await hasCredentials(DEFAULT_PROFILE)) names.push(DEFAULT_PROFILE);
  const others = await readdir(path.join(configDir(env), "profiles")).catch(() => [] as string[]);
  for (const name of others.sort())
    if (PROFILE_NAME.test(name) && name !== DEFAULT_PROFILE && (await hasCredentials(name))) names.push(name);
  return names;
}

export function credentialsPath(env: Env): string {
  return path.join(profileDir(env), CREDENTIALS_FILE);
}

/** The saved credentials, or null when there are none. A damaged file is a configuration problem. */
export async function loadCredentials(env: Env, warn?: (message: string) => void): Promise<SavedCredentials | null> {
  const file = credentialsPath(env);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new CliError("CONFIG_INVALID", `Cannot read ${file}: ${(error as Error).message}`);
  }
  if (warn && process.platform !== "win32") {
    const { mode } = await stat(file);
    if ((mode & 0o077) !== 0) {
      warn(`${file} is readable by others (mode ${(mode & 0o777).toString(8)}); run \`chmod 600 ${file}\``);
    }
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const parsed = savedCredentials.safeParse(json);
  if (!parsed.success) {
    throw new CliError("CONFIG_INVALID", `${file} is damaged; delete it and run \`stint login\` again`);
  }
  return parsed.data;
}

/**
 * Writes a file only its owner may read, atomically: a fresh 0600 file (opened exclusively, so never one that was
 * there) renamed over the old one. Writing over an existing file would keep that file's mode, and whoever could
 * make it 0644 beforehand would read what is written.
 */
export async function writePrivateFile(file: string, content: string): Promise<void> {
  await replaceFile(file, content, FILE_MODE);
}

/**
 * Replaces `file` whole with a new file of `mode` (readers see the old file or the new one, never half): a temporary
 * name drawn at random and opened exclusively (never a file or link someone planted under it), then renamed.
 */
export async function replaceFile(file: string, content: string | Uint8Array, mode: number): Promise<void> {
  const temporary = path.join(
    path.dirname(file),
    `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`,
  );
  const handle = await open(temporary, "wx", mode);
  try {
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
}

/** Writes the credentials atomically: a fresh 0600 file in a 0700 directory, renamed over the old one. */
export async function saveCredentials(env: Env, credentials: SavedCredentials): Promise<string> {
  await mkdir(configDir(env), { recursive: true, mode: DIR_MODE });
  const dir = profileDir(env);
  await mkdir(dir, { recursive: true, mode: DIR_MODE });
  const file = path.join(dir, CREDENTIALS_FILE);
  await writePrivateFile(file, `${JSON.stringify(savedCredentials.parse(credentials), null, 2)}\n`);
  return file;
}

/** Removes the saved credentials; true when there was a file. */
export async function deleteCredentials(env: Env): Promise<boolean> {
  try {
    await unlink(credentialsPath(env));
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}

/**
 * Runs `work` while holding an exclusive lock file next to the credentials, so two `stint`
 * processes never spend the same refresh token (the server would see a reuse). A lock older than
 * `staleMs` is left over from a crashed process and is broken.
 */
export async function withCredentialsLock<T>(
  env: Env,
  work: () => Promise<T>,
  options: { waitMs?: number; staleMs?: number } = {},
): Promise<T> {
  const waitMs = options.waitMs ?? 15_000;
  const staleMs = options.staleMs ?? 30_000;
  await mkdir(configDir(env), { recursive: true, mode: DIR_MODE });
  const dir = profileDir(env);
  await mkdir(dir, { recursive: true, mode: DIR_MODE });
  const lock = path.join(dir, LOCK_FILE);
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const handle = await open(lock, "wx", FILE_MODE);
      await handle.close();
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const age = await stat(lock).then(
        (info) => Date.now() - info.mtimeMs,
        () => 0,
      );
      if (age > staleMs) {
        await unlink(lock).catch(() => undefined);
        continue;
      }
      if (Date.now() > deadline) {
        throw new CliError("CONFIG_INVALID", `Another stint process holds ${lock}; if none is running, delete it`);
      }
      await sleep(25);
    }
  }
  try {
    return await work();
  } finally {
    await unlink(lock).catch(() => undefined);
  }
}
