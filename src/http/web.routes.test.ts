/**
 * The web UI's files as a browser gets them (issue 17 finding 3): scripts, styles and the page go out
 * brotli- or gzip-compressed when the browser says it accepts that, compressed once at build, and as they
 * are otherwise; every compressed copy is the file it stands for.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testServer, type TestServer } from "../testing/server.js";
import { WEB_DIR } from "./web.routes.js";

const assets = path.join(WEB_DIR, "assets");
const built = () => readdirSync(assets);

let server: TestServer;
beforeAll(async () => {
  server = await testServer();
});
afterAll(async () => {
  await server.cleanup();
});

describe("the web UI's files", () => {
  it("the build leaves a .br and a .gz beside every script and style sheet over 1 KiB, each decompressing to it", () => {
    const sources = built().filter((f) => /\.(js|css)$/.test(f) && statSync(path.join(assets, f)).size >= 1024);
    expect(sources.length).toBeGreaterThan(3);
    for (const file of sources) {
      const original = readFileSync(path.join(assets, file));
      const br = readFileSync(path.join(assets, `${file}.br`));
      const gz = readFileSync(path.join(assets, `${file}.gz`));
      expect(brotliDecompressSync(br).equals(original), file).toBe(true);
      expect(gunzipSync(gz).equals(original), file).toBe(true);
      expect(br.length, file).toBeLessThan(original.length);
    }
  });

  it("a browser that accepts brotli gets brotli, one that accepts gzip only gets gzip, others the file as it is", async () => {
    const react = built().find((f) => /^react-.*\.js$/.test(f));
    expect(react).toBeDefined();
    const original = readFileSync(path.join(assets, react!));
    const get = (encoding?: string) =>
      server.app.inject({
        method: "GET",
        url: `/assets/${react}`,
        headers: encoding === undefined ? {} : { "accept-encoding": encoding },
      });

    const br = await get("gzip, deflate, br, zstd");
    expect(br.statusCode).toBe(200);
    expect(br.headers["content-encoding"]).toBe("br");
    expect(String(br.headers["content-type"])).toMatch(/javascript/);
    expect(String(br.headers.vary)).toMatch(/accept-encoding/i);
    expect(String(br.headers["cache-control"])).toContain("immutable");
    expect(br.rawPayload.length).toBeLessThan(original.length / 2);
    expect(brotliDecompressSync(br.rawPayload).equals(original)).toBe(true);

    const gz = await get("gzip");
    expect(gz.headers["content-encoding"]).toBe("gzip");
    expect(gunzipSync(gz.rawPayload).equals(original)).toBe(true);

    for (const plain of [undefined, "identity", "br;q=0, gzip;q=0"]) {
      const res = await get(plain);
      expect(res.statusCode, String(plain)).toBe(200);
      expect(res.headers["content-encoding"], String(plain)).toBeUndefined();
      expect(res.rawPayload.equals(original), String(plain)).toBe(true);
    }
  });

  it("the page keeps its security headers and is revalidated; a path out of the assets is refused", async () => {
    const react = built().find((f) => /^react-.*\.js$/.test(f))!;
    const page = await server.app.inject({ method: "GET", url: "/", headers: { "accept-encoding": "br" } });
    expect(page.statusCode).toBe(200);
    expect(page.headers["content-security-policy"]).toBeDefined();
    expect(page.headers["cache-control"]).toBe("no-cache");
    const traversal = await server.app.inject({ method: "GET", url: `/assets/..%2F${react}` });
    expect(traversal.statusCode).toBe(404);
  });
});
