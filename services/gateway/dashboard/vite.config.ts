/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The gateway (`make dev`) serves the REST API, the OpenAPI document and the
// OIDC sign-in (/auth/…) on port 3000; `npm run dev` proxies them so the
// dashboard hot-reloads against it. The identity provider sends the browser
// back to the callback URL the gateway is configured with, so an OIDC sign-in
// started here may end on the gateway's own port.
const gateway = "http://localhost:3000";

export default defineConfig({
  plugins: [react()],
  // Absolute asset URLs: the gateway serves the dashboard at its root, and
  // index.html, served for any unknown path, must find its assets from there.
  base: "/",
  server: {
    proxy: {
      "/v1": { target: gateway, changeOrigin: true },
      "/openapi.json": { target: gateway, changeOrigin: true },
      "/auth": { target: gateway, changeOrigin: true },
    },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    // One small app: a single JS and a single CSS file keep the committed dist/ lean.
    chunkSizeWarningLimit: 400,
  },
  test: {
    environment: "jsdom",
    setupFiles: ["./src/test/setup.ts"],
    include: ["src/**/*.test.{ts,tsx}", "scripts/**/*.test.ts"],
    restoreMocks: true,
  },
});
