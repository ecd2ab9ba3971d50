import { defineConfig } from "vite";

// The Tauri window loads the built files from ../dist (tauri.conf.json).
export default defineConfig({
  build: { outDir: "dist", emptyOutDir: true, target: "safari15" },
  test: { environment: "node" },
});
