// The console is built into the Python package, which serves it at /console (and /):
// no CDN, no runtime download; `npm run build` must be re-run when src/ changes
// (tests/e2e/test_console.py checks the committed build is current).
import { defineConfig } from "vite";

export default defineConfig({
  base: "/console/",
  build: {
    outDir: "../service/api/console_static",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 200,
  },
});
