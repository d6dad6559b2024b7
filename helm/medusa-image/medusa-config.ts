// Configuration of the medusa-store chart's default image. Everything that
// differs between stores comes from the environment the chart sets; nothing
// here is secret.
import { defineConfig, Modules } from "@medusajs/framework/utils"

const redisUrl = process.env.REDIS_URL
const backendUrl = process.env.MEDUSA_BACKEND_URL || "http://localhost:9000"

module.exports = defineConfig({
  projectConfig: {
    databaseUrl: process.env.DATABASE_URL,
    redisUrl,
    workerMode: (process.env.MEDUSA_WORKER_MODE as "shared" | "worker" | "server") || "shared",
    http: {
      storeCors: process.env.STORE_CORS!,
      adminCors: process.env.ADMIN_CORS!,
      authCors: process.env.AUTH_CORS!,
      jwtSecret: process.env.JWT_SECRET,
      cookieSecret: process.env.COOKIE_SECRET,
    },
    // Medusa marks the session cookie Secure in production; a store served
    // over plain http (a laptop cluster) sets MEDUSA_COOKIE_SECURE=false so
    // that the admin can sign in.
    cookieOptions: {
      secure: process.env.MEDUSA_COOKIE_SECURE !== "false",
    },
  },
  admin: {
    disable: process.env.DISABLE_MEDUSA_ADMIN === "true",
  },
  modules: [
    {
      resolve: "@medusajs/medusa/file",
      options: {
        providers: [
          {
            resolve: "@medusajs/medusa/file-local",
            id: "local",
            // The chart mounts the uploads volume at ./static.
            options: { upload_dir: "static", backend_url: `${backendUrl}/static` },
          },
        ],
      },
    },
    // One Redis for the event bus, the cache, the workflow engine and locks,
    // so several replicas (or a server and a worker) share their state.
    ...(redisUrl
      ? [
          { key: Modules.EVENT_BUS, resolve: "@medusajs/medusa/event-bus-redis", options: { redisUrl } },
          { key: Modules.CACHE, resolve: "@medusajs/medusa/cache-redis", options: { redisUrl } },
          {
            key: Modules.WORKFLOW_ENGINE,
            resolve: "@medusajs/medusa/workflow-engine-redis",
            options: { redis: { redisUrl } },
          },
          {
            key: Modules.LOCKING,
            resolve: "@medusajs/medusa/locking",
            options: {
              providers: [
                { id: "locking-redis", resolve: "@medusajs/medusa/locking-redis", is_default: true, options: { redisUrl } },
              ],
            },
          },
        ]
      : []),
  ],
})
