import { svelte } from "@sveltejs/vite-plugin-svelte";
import { defineConfig } from "vitest/config";

// The backend serves dist/ at `/`; `npm run dev` proxies the API to a running backend.
const backend = process.env.WEBUI_BACKEND_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [svelte()],
  build: { target: "es2022", sourcemap: false, chunkSizeWarningLimit: 400 },
  server: { proxy: { "/api": { target: backend, ws: true } } },
  test: { include: ["src/**/*.test.ts"], environment: "node" },
});
