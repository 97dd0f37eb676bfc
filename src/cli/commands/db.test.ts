/**
 * `stint db login --defaults-file`: the MySQL option file it writes is read back by the real `mariadb`
 * client (`--print-defaults`) as exactly the values given, whatever quotes, backslashes or `#` a value
 * holds (a value is never cut short or turned into another option).
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { mysqlOptionFile } from "./db.js";

const run = promisify(execFile);

describe("mysqlOptionFile", () => {
  it("the mariadb client reads back exactly the host, port, user and token; a newline starts no option", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "stint-mycnf-"));
    try {
      const read = async (password: string) => {
        const file = path.join(dir, "my.cnf");
        const login = { host: "db.example", port: 3307, user: "ann%app-maria", password };
        await writeFile(file, mysqlOptionFile(login), { mode: 0o600 });
        const { stdout } = await run("mariadb", [`--defaults-file=${file}`, "--print-defaults"]);
        return stdout.slice(stdout.indexOf("\n") + 1).trimEnd();
      };
      expect(await read(`stint_"q\\r#s x`)).toBe(
        `--host=db.example --port=3307 --user=ann%app-maria --password=stint_"q\\r#s x`,
      );
      const injected = await read("stint_x\npassword=evil\nhost=evil.example");
      expect(injected).not.toMatch(/--password=evil|--host=evil/);
      expect(injected).toContain("--host=db.example");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
