// The console in a real browser (Debian's Chromium driven by playwright-core), against a
// running API. Run by tests/e2e/test_console.py; by hand:
//   CONSOLE_URL=http://127.0.0.1:8000 API_KEY=... node console/tests/browser.mjs
//
// Checks, in order: the page asks for the API key and keeps it; every number it shows
// equals the API's answer (each number names its endpoint and JSON path); every control
// has an accessible name and is reached with Tab; text contrast is at least WCAG AA; the
// channel selector (driven by the keyboard) changes the funnel to that channel's; events
// sent to the collector appear without a reload; the export button downloads exactly the
// audience's users; the page fits laptop widths. Screenshots go to SCREENSHOT_DIR. Exit code 0 only if all passed.

import { strict as assert } from "node:assert";
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BASE = (process.env.CONSOLE_URL ?? "http://127.0.0.1:8000").replace(/\/$/, "");
const KEY = process.env.API_KEY ?? "";
const SHOTS = process.env.SCREENSHOT_DIR ?? "";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const REFRESH_S = Number(process.env.CONSOLE_REFRESH ?? 1);
const LIVE_USERS = Number(process.env.LIVE_USERS ?? 7);
const TIMEOUT = 30_000;

const INT = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const MONEY = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

/** How the page must show an API value (the console's own format, stated independently). */
function shown(value, format) {
  if (value === null || value === undefined) return "–";
  if (format === "pct") return `${(value * 100).toFixed(1)}%`;
  if (format === "money") return MONEY.format(value);
  return INT.format(value);
}

async function api(path, init = {}) {
  const headers = { ...(init.headers ?? {}), ...(KEY ? { "X-API-Key": KEY } : {}) };
  const response = await fetch(BASE + path, { ...init, headers });
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response;
}

const getJson = async (path) => (await api(path)).json();

function dig(body, path) {
  return path.split(".").reduce((node, part) => (node === null || node === undefined ? undefined : node[part]), body);
}

function log(message) {
  process.stdout.write(`browser: ${message}\n`);
}

/** Wait for the page's next completed refresh (after `since`, ms on the page's clock). */
async function nextRefresh(page) {
  const since = Number(await page.evaluate(() => document.body.dataset.updated ?? 0));
  await page.waitForFunction((t) => Number(document.body.dataset.updated ?? 0) > t, since, { timeout: TIMEOUT });
}

/** Every shown number against the API, read right after a refresh; retried while data moves. */
async function numbersMatch(page, mustHave) {
  let last = "";
  for (let attempt = 0; attempt < 5; attempt++) {
    await nextRefresh(page);
    const items = await page.$$eval("[data-metric]", (els) =>
      els.map((e) => ({ source: e.dataset.metric, path: e.dataset.path, format: e.dataset.format, text: e.textContent })),
    );
    const sources = [...new Set(items.map((i) => i.source))];
    const bodies = Object.fromEntries(await Promise.all(sources.map(async (s) => [s, await getJson(s)])));
    const wrong = items.filter((i) => shown(dig(bodies[i.source], i.path), i.format) !== i.text);
    for (const source of mustHave) {
      assert.ok(sources.some((s) => s.startsWith(source)), `no number on the page comes from ${source}`);
    }
    if (!wrong.length) return items;
    last = wrong.slice(0, 5).map((w) => `${w.source} ${w.path}: shown ${w.text}, API ${shown(dig(bodies[w.source], w.path), w.format)}`).join("; ");
    log(`attempt ${attempt + 1}: ${wrong.length} of ${items.length} numbers differ (data moving?): ${last}`);
  }
  throw new Error(`numbers on the page differ from the API: ${last}`);
}

async function accessibleControls(page, audiences) {
  const checks = [
    page.getByRole("combobox", { name: "Channel" }),
    page.getByRole("combobox", { name: "Funnel" }),
    page.getByRole("button", { name: "Pause live updates" }),
    page.getByRole("button", { name: "API key…" }),
    page.getByRole("link", { name: "Skip to the dashboard" }),
  ];
  for (const locator of checks) assert.equal(await locator.count(), 1, `control missing or unnamed: ${locator}`);
  if (audiences.length) {
    assert.equal(await page.getByRole("button", { name: /^Export audience / }).count(), audiences.length);
  }
  const unnamed = await page.$$eval("button, select, input, a[href], summary", (els) =>
    els.filter((e) => e.offsetParent !== null && !(e.getAttribute("aria-label") || e.textContent.trim() || (e.id && document.querySelector(`label[for="${e.id}"]`))))
      .map((e) => e.outerHTML.slice(0, 80)),
  );
  assert.deepEqual(unnamed, [], "controls without a name");
  // Tab order reaches every control, from the skip link on.
  await page.evaluate(() => document.activeElement?.blur());
  await page.locator("body").focus();
  const reached = new Set();
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press("Tab");
    const id = await page.evaluate(() => {
      const a = document.activeElement;
      return a ? a.id || a.dataset.audience || a.textContent.trim().slice(0, 30) || a.tagName : "";
    });
    reached.add(id);
  }
  for (const id of ["Skip to the dashboard", "pause", "change-key", "funnel-name", "funnel-channel", "Show the history as a table", "interval-kind", "Show the intervals as a table", ...audiences.map((a) => a.name)]) {
    assert.ok(reached.has(id), `Tab never reaches ${id} (reached: ${[...reached].join(", ")})`);
  }
}

/** WCAG 2 contrast of every visible text against its first opaque background. */
async function contrastIsReadable(page) {
  const bad = await page.evaluate(() => {
    const rgb = (c) => (c.match(/[\d.]+/g) ?? []).map(Number);
    const lum = ([r, g, b]) => {
      const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
      for (let n = el; n; n = n.parentElement) {
        const c = rgb(getComputedStyle(n).backgroundColor);
        if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    const out = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let t = walker.nextNode(); t; t = walker.nextNode()) {
      const el = t.parentElement;
      if (!t.textContent.trim() || !el || el.closest(".sr-only, .skip, script, style, dialog:not([open])")) continue;
      const style = getComputedStyle(el);
      if (style.visibility === "hidden" || el.getClientRects().length === 0) continue;
      const [a, b] = [lum(rgb(style.color).slice(0, 3)), lum(background(el))];
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      const size = parseFloat(style.fontSize);
      const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
      if (ratio < (large ? 3 : 4.5)) out.push(`${t.textContent.trim().slice(0, 30)} (${ratio.toFixed(2)})`);
    }
    return out;
  });
  assert.deepEqual(bad, [], "text below WCAG AA contrast");
}

async function main() {
  const downloads = mkdtempSync(join(tmpdir(), "console-downloads-"));
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    // playwright starts Chromium with a fresh, temporary profile of its own
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, acceptDownloads: true });
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    const external = [];
    page.on("request", (r) => { if (!r.url().startsWith(BASE) && !r.url().startsWith("blob:") && !r.url().startsWith("data:")) external.push(r.url()); });
    await page.goto(`${BASE}/?refresh=${REFRESH_S}`);

    if (KEY) {
      const dialog = page.getByRole("dialog", { name: "API key needed" });
      await dialog.waitFor({ timeout: TIMEOUT });
      await page.getByRole("textbox", { name: "API key" }).fill("not-the-key");
      await page.keyboard.press("Enter");
      await page.getByText("The API refused that key").waitFor({ timeout: TIMEOUT });
      await page.getByRole("textbox", { name: "API key" }).fill(KEY);
      await page.keyboard.press("Enter");
      await dialog.waitFor({ state: "hidden", timeout: TIMEOUT });
      log("the page asked for the API key, refused a wrong one and kept the right one");
    }
    await page.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: TIMEOUT });
    const marker = await page.evaluate(() => (window.__loadedOnce = Math.random()));

    const items = await numbersMatch(page, ["/lifecycle", "/lifecycle/history", "/lifecycle/intervals", "/indicators", "/funnel", "/triggers/summary", "/ops"]);
    log(`${items.length} numbers on the page equal the API's`);
    await accessibleControls(page, []);
    await contrastIsReadable(page);
    log("controls are named and reached with Tab; text contrast >= 4.5:1 (3:1 large)");
    for (const width of [1280, 1366]) {
      await page.setViewportSize({ width, height: 800 });
      await nextRefresh(page);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px on a ${width}px wide screen`);
    }
    await page.setViewportSize({ width: 1440, height: 900 });
    log("fits 1280 and 1366 px wide laptop screens without sideways scrolling");

    // The interval selector: the chart and its table become the months' (and back to weeks).
    await page.selectOption("#interval-kind", "month");
    await page.waitForSelector('#intervals-table [data-metric^="/lifecycle/intervals?interval=month"]', { state: "attached", timeout: TIMEOUT });
    await numbersMatch(page, ["/lifecycle/intervals?interval=month"]);
    await page.selectOption("#interval-kind", "week");
    log("the interval selector switches lifecycle per interval to months, numbers equal to the API's");

    // The channel selector, by keyboard: the funnel becomes that channel's.
    const allUsers = (await getJson("/funnel")).stages.map((s) => s.users);
    await page.focus("#funnel-channel");
    await page.keyboard.press("ArrowDown");
    const channel = await page.$eval("#funnel-channel", (s) => s.value);
    assert.ok(channel, "the channel selector has no channel to choose");
    const source = `/funnel?channel=${encodeURIComponent(channel)}`;
    await page.waitForSelector(`#funnel [data-metric="${source}"]`, { timeout: TIMEOUT });
    const shownUsers = await page.$$eval(`#funnel [data-metric="${source}"][data-path$=".users"]`, (els) => els.map((e) => e.textContent));
    const channelUsers = (await getJson(source)).stages.map((s) => s.users);
    assert.deepEqual(shownUsers, channelUsers.map((n) => shown(n, "int")), "funnel of the channel");
    assert.notDeepEqual(channelUsers, allUsers, "the channel's funnel equals all channels'");
    await numbersMatch(page, [source]);
    log(`channel ${channel}: funnel ${channelUsers.join(" > ")} (all channels: ${allUsers.join(" > ")})`);
    if (SHOTS) mkdirSync(SHOTS, { recursive: true });
    if (SHOTS) await page.locator("section[aria-labelledby=h-funnel]").screenshot({ path: join(SHOTS, "console-funnel-channel.png") });

    // The funnel selector, by keyboard: a named funnel of the same channel (GET /funnels/{name}).
    const named = (await getJson("/funnels")).funnels.filter((f) => f.name !== "core");
    assert.ok(named.length > 0, "GET /funnels lists no named funnel");
    await page.focus("#funnel-name");
    await page.keyboard.press("ArrowDown");
    const name = await page.$eval("#funnel-name", (s) => s.value);
    assert.equal(name, named[0].name, "the funnel selector does not offer the named funnels in order");
    const namedSource = `/funnels/${name}?channel=${encodeURIComponent(channel)}`;
    await page.waitForSelector(`#funnel [data-metric="${namedSource}"]`, { timeout: TIMEOUT });
    const namedUsers = (await getJson(namedSource)).steps.map((s) => s.users);
    await numbersMatch(page, [namedSource]);
    const note = await page.$eval("#funnel-note", (e) => e.textContent);
    assert.ok(note.includes(named[0].order === "strict" ? "at or after the previous one" : "any order"), note);
    log(`funnel ${name}, channel ${channel}: ${namedUsers.join(" > ")} (${note})`);
    await page.selectOption("#funnel-name", "");

    // Live: new users sent to the collector appear without a reload.
    const before = await getJson("/lifecycle");
    const ts = before.as_of + 1000; // the clock (wall or event time) plus a second
    const run = Date.now().toString(36);
    const events = Array.from({ length: LIVE_USERS }, (_, i) => ({
      event_id: `console-live-${run}-${i}`, user_id: `console-live-${run}-${i}`, type: "visit", ts: ts + i, channel,
    }));
    const posted = await (await api("/v1/events", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(events) })).json();
    assert.equal(posted.accepted, LIVE_USERS, JSON.stringify(posted));
    const total = page.locator('[data-metric="/lifecycle"][data-path="total"]');
    await page.waitForFunction(
      ([want]) => document.querySelector('[data-metric="/lifecycle"][data-path="total"]')?.textContent === want,
      [shown(before.total + LIVE_USERS, "int")], { timeout: 60_000 },
    );
    assert.equal(await page.evaluate(() => window.__loadedOnce), marker, "the page was reloaded");
    log(`live: total ${shown(before.total, "int")} -> ${await total.textContent()} without a reload`);
    await numbersMatch(page, ["/lifecycle"]);

    // Audiences (GET /audiences): shown with their sizes, each with an export button.
    const audiences = (await getJson("/audiences")).audiences;
    assert.ok(audiences.length > 0, "GET /audiences lists no audience");
    await page.selectOption("#funnel-channel", "");
    await numbersMatch(page, ["/audiences", "/funnel"]);
    await accessibleControls(page, audiences);
    await contrastIsReadable(page);
    if (SHOTS) {
      mkdirSync(SHOTS, { recursive: true });
      await page.screenshot({ path: join(SHOTS, "console-overview.png"), fullPage: true });
    }

    // Export: the button downloads the audience's users, as the API streams them.
    const audience = audiences[0];
    const [download] = await Promise.all([
      page.waitForEvent("download", { timeout: TIMEOUT }),
      page.getByRole("button", { name: `Export audience ${audience.name} (NDJSON)` }).click(),
    ]);
    assert.equal(download.suggestedFilename(), `${audience.name}.ndjson`);
    const file = join(downloads, download.suggestedFilename());
    await download.saveAs(file);
    const lines = readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
    const served = (await (await api(`/audiences/${encodeURIComponent(audience.name)}/users?format=ndjson`)).text())
      .split("\n").filter(Boolean).map((l) => JSON.parse(l));
    const ids = (rows) => rows.map((r) => r.user_id).sort();
    assert.ok(lines.length > 0, `audience ${audience.name} exported no users`);
    assert.deepEqual(ids(lines), ids(served), "downloaded users differ from the API's");
    const size = (await getJson("/audiences")).audiences.find((a) => a.name === audience.name).size;
    assert.equal(lines.length, size, "downloaded users differ from the audience's size");
    await page.getByText(`downloaded ${audience.name}.ndjson`).waitFor({ timeout: TIMEOUT });
    log(`export: ${audience.name}.ndjson with ${lines.length} users (size ${size})`);
    if (SHOTS) await page.locator("section[aria-labelledby=h-audiences]").screenshot({ path: join(SHOTS, "console-export.png") });

    assert.deepEqual(errors, [], "errors in the page");
    assert.deepEqual(external, [], "requests outside the API (the page must work offline)");
    log("all checks passed");
  } finally {
    await browser.close();
    rmSync(downloads, { recursive: true, force: true });
  }
}

main().catch((error) => {
  process.stderr.write(`browser: FAILED: ${error?.stack ?? error}\n`);
  process.exit(1);
});
