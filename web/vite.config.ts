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
