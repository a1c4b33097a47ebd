import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// `npm run dev` proxies the API to a gateway on :6095; the built bundle is served by the gateway itself.
const api = ["/synthesize-stream", "/synthesize", "/voices", "/health", "/stats"];

export default defineConfig({
  plugins: [react()],
  server: { proxy: Object.fromEntries(api.map((p) => [p, "http://127.0.0.1:6095"])) },
  test: { environment: "node" },
});
