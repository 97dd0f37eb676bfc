/** The web UI: built into dist/web, served by the Stint server at `/`. */
import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/",
  plugins: [react()],
  build: {
    outDir: fileURLToPath(new URL("../dist/web", import.meta.url)),
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 800,
    rollupOptions: {
      output: {
        // Libraries change less often than pages: their chunks stay cached across releases.
        manualChunks(id) {
          if (id.includes("node_modules/recharts") || id.includes("node_modules/d3-")) return "charts";
          if (id.includes("node_modules/@mantine") || id.includes("node_modules/@floating-ui")) return "mantine";
          if (id.includes("node_modules/react") || id.includes("node_modules/scheduler")) return "react";
          if (id.includes("node_modules/zod")) return "zod";
          return undefined;
        },
      },
    },
  },
  server: { proxy: { "/v1": "http://127.0.0.1:8420" } },
});
