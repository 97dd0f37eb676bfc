/** The web UI: built into dist/web, served by the Stint server at `/`. */
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import react from "@vitejs/plugin-react";
import { defineConfig, type Plugin } from "vite";

/**
 * Writes `<file>.br` and `<file>.gz` beside every script, style sheet and page of the build (over 1 KiB),
 * at the strongest settings: they are made once per build and served as they are to every browser that
 * accepts them (src/http/web.routes.ts), so no request pays for compressing.
 */
function precompress(): Plugin {
  return {
    name: "stint-precompress",
    apply: "build",
    async writeBundle(options, bundle) {
      const dir = options.dir ?? "";
      for (const name of Object.keys(bundle)) {
        if (!/\.(js|css|html|svg|json)$/.test(name)) continue;
        const file = path.join(dir, name);
        const data = await readFile(file);
        if (data.length < 1024) continue;
        await writeFile(
          `${file}.br`,
          brotliCompressSync(data, {
            params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: data.length },
          }),
        );
        await writeFile(`${file}.gz`, gzipSync(data, { level: 9 }));
      }
    },
  };
}

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/",
  plugins: [react(), precompress()],
  build: {
    outDir: fileURLToPath(new URL("../dist/web", import.meta.url)),
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 800,
    rolldownOptions: {
      output: {
        // Libraries change less often than pages: their chunks stay cached across releases. Charts load
        // only with the Dashboards page (a test checks what each page loads).
        codeSplitting: {
          groups: [
            { name: "react", test: /node_modules[\\/](react|react-dom|scheduler)[\\/]/, priority: 40 },
            { name: "mantine", test: /node_modules[\\/](@mantine[\\/](core|hooks)|@floating-ui)[\\/]/, priority: 30 },
            { name: "zod", test: /node_modules[\\/]zod[\\/]/, priority: 20 },
            { name: "charts", test: /node_modules[\\/](recharts|d3-|@mantine[\\/]charts)/, priority: 10 },
          ],
        },
      },
    },
  },
  server: { proxy: { "/v1": "http://127.0.0.1:8420" } },
});
