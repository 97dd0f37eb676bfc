/** `stint siem status` against a whole server in this process with one HEC destination. */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCliCaptured } from "../../testing/cli-run.js";
import { stringify } from "yaml";
import { testServer, type TestServer } from "../../testing/server.js";
import { hecReceiver, type HecReceiver } from "../../testing/siem-receivers.js";

const TOKEN = "cli-test-hec-token-never-printed";

describe("stint siem status", () => {
  let server: TestServer;
  let receiver: HecReceiver;
  let dir: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "stint-cli-siem-"));
    receiver = await hecReceiver(TOKEN);
    await writeFile(path.join(dir, "token"), TOKEN);
    await writeFile(
      path.join(dir, "stint.yaml"),
      stringify({
        siem: {
          destinations: [
            { name: "splunk", kind: "hec", url: receiver.url, tokenFile: path.join(dir, "token"), format: "ocsf" },
          ],
        },
      }),
    );
    server = await testServer("pglite", { env: { STINT_CONFIG_FILE: path.join(dir, "stint.yaml") } });
    await server.siem.start();
    await server.app.listen({ port: 0, host: "127.0.0.1" });
    const { port } = server.app.server.address() as AddressInfo;
    env = { STINT_CONFIG_DIR: dir, HOME: dir, STINT_SERVER: `http://127.0.0.1:${port}` };
  });

  afterAll(async () => {
    await server?.cleanup();
    await receiver?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function run(argv: string[], token: string) {
    return runCliCaptured(argv, { env: { ...env, STINT_TOKEN: token } });
  }

  it("shows each destination's cursor and lag to an auditor; --json is the API's answer; a user is refused", async () => {
    const auditor = (await server.userWithRoles("siem-auditor", ["auditor"])).replace(/^Bearer /, "");
    let table = "";
    for (let i = 0; i < 100; i++) {
      const result = await run(["siem", "status"], auditor);
      expect(result.code, result.stderr).toBe(0);
      table = result.stdout;
      if (/splunk\s+hec\/ocsf\s+\S+\s+(\d+)\/\1\s+0 events, 0s\s+idle/.test(table)) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(table).toMatch(/^NAME\s+KIND\s+ENDPOINT\s+DELIVERED\s+LAG\s+STATE/);
    expect(table).toMatch(
      /splunk\s+hec\/ocsf\s+http:\/\/127\.0\.0\.1:\d+\/services\/collector\/event\s+(\d+)\/\1\s+0 events, 0s\s+idle/,
    );
    const json = await run(["siem", "status", "--json"], auditor);
    const parsed = JSON.parse(json.stdout) as { items: { name: string; deliveredSeq: number; headSeq: number }[] };
    expect(parsed.items.map((d) => d.name)).toEqual(["splunk"]);
    expect(parsed.items[0]!.deliveredSeq).toBe(parsed.items[0]!.headSeq);
    expect(json.stdout + table).not.toContain(TOKEN);
    const user = (await server.userWithRoles("siem-user", ["user"])).replace(/^Bearer /, "");
    const refused = await run(["siem", "status"], user);
    expect(refused.code).toBe(5);
  }, 60_000);
});
