// Segment's browser SDK (@segment/analytics-next, unmodified) in a real browser (Debian's
// Chromium driven by playwright-core), posting to `lifecycle api`'s tracking API. Run by
// tests/e2e/test_segment_browser.py; by hand:
//   API_URL=http://127.0.0.1:8000 WRITE_KEY=... PAGE_PORT=8765 node console/tests/segment.mjs
//
// The SDK's settings are given inline (`cdnSettings`): nothing is fetched from a CDN. The
// page (served here, on PAGE_PORT: its origin must be in LIFECYCLE_CORS_ORIGINS) is viewed
// anonymously, then identifies a user (which merges the anonymous id into it), views a page
// and completes an order. Prints the SDK's requests, the API's answers and the anonymous id
// as JSON; exit code 0 only if every call was answered 200.

import { createServer } from "node:http";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { chromium } from "playwright-core";

const API = (process.env.API_URL ?? "http://127.0.0.1:8000").replace(/\/$/, "");
const WRITE_KEY = process.env.WRITE_KEY ?? "";
const PAGE_PORT = Number(process.env.PAGE_PORT ?? 8765);
const USER = process.env.USER_ID ?? "browser-user-1";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const HERE = dirname(fileURLToPath(import.meta.url));

const ENTRY = `
import { AnalyticsBrowser } from "@segment/analytics-next";
const c = window.LIFECYCLE;
const [analytics] = await AnalyticsBrowser.load(
  {
    writeKey: c.writeKey,
    cdnSettings: {
      integrations: { "Segment.io": { apiKey: c.writeKey, apiHost: c.apiHost + "/v1", protocol: "http" } },
    },
  },
  { disableClientPersistence: true, retryQueue: false },
);
await analytics.page("Home");  // anonymous: under the SDK's anonymousId
window.anonymousId = analytics.user().anonymousId();
await analytics.identify(c.user, { plan: "free" });  // names both ids: the anonymous one merges in
await analytics.page("Pricing");
await analytics.track("Order Completed", { order_id: "o-1", revenue: 42.5, currency: "EUR" });
await analytics.identify(c.user, { plan: "pro", country: "DE", email: "x@example.com" });
window.done = true;
`;

const bundle = await build({
  stdin: { contents: ENTRY, resolveDir: HERE, loader: "js" },
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  write: false,
  logLevel: "error",
});
const script = bundle.outputFiles[0].text;
const page = `<!doctype html><html><head><meta charset="utf-8"><title>shop</title></head><body>
<script>window.LIFECYCLE = ${JSON.stringify({ writeKey: WRITE_KEY, apiHost: API.replace(/^https?:\/\//, ""), user: USER })};</script>
<script type="module" src="/bundle.js"></script></body></html>`;

const server = createServer((req, res) => {
  if (req.url === "/bundle.js") {
    res.writeHead(200, { "content-type": "text/javascript" }).end(script);
  } else {
    res.writeHead(200, { "content-type": "text/html" }).end(page);
  }
});
await new Promise((resolve) => server.listen(PAGE_PORT, "127.0.0.1", resolve));

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const calls = [];
const outside = [];
let anonymousId = null;
try {
  const context = await browser.newContext();
  const tab = await context.newPage();
  tab.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith(`http://127.0.0.1:${PAGE_PORT}`) && !url.startsWith(API)) outside.push(url);
  });
  tab.on("response", async (response) => {
    const url = response.url();
    if (url.startsWith(API)) {
      calls.push({ path: new URL(url).pathname, status: response.status(), body: await response.text().catch(() => "") });
    }
  });
  await tab.goto(`http://127.0.0.1:${PAGE_PORT}/`);
  await tab.waitForFunction(() => window.done === true, null, { timeout: 30_000 });
  const deadline = Date.now() + 15_000;
  while (calls.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  anonymousId = await tab.evaluate(() => window.anonymousId);
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify({ calls, outside, anonymousId }));
const ok = calls.length >= 5 && calls.every((c) => c.status === 200) && outside.length === 0;
process.exit(ok ? 0 : 1);
