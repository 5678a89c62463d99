// The console: reads the API every few seconds and redraws each panel in place.
//
// Query parameters: `refresh` (seconds between reads, default 5) and `days` (history
// length, default 14). Panels fail on their own: one endpoint down leaves the rest live.

import { forgetKey, getJson, installKeyPrompt } from "./api";
import { AudiencesPanel } from "./audiences";
import { clockText } from "./format";
import { describeFunnel, funnelPath, renderFunnel, syncChannels, syncOptions } from "./funnel";
import { renderGlance } from "./glance";
import { IntervalChart, intervalsPath } from "./intervals";
import { HistoryChart, renderStates } from "./lifecycle";
import { renderTriggers } from "./triggers";
import type { Audiences, Funnel, FunnelList, Granularity, History, Indicators, Intervals, Lifecycle, NamedFunnel, Ops, TriggerSummary } from "./types";
import "./style.css";

const params = new URLSearchParams(location.search);
const REFRESH_S = Math.max(1, Number(params.get("refresh")) || 5);
const DAYS = Math.min(90, Math.max(1, Number(params.get("days")) || 14));
const HISTORY = `/lifecycle/history?days=${DAYS}`;

function byId<T extends HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} missing from index.html`);
  return node as T;
}

const status = byId<HTMLParagraphElement>("status");
const channelSelect = byId<HTMLSelectElement>("funnel-channel");
const funnelSelect = byId<HTMLSelectElement>("funnel-name");
const pauseButton = byId<HTMLButtonElement>("pause");
const chart = new HistoryChart(byId("history-chart"));
const intervalSelect = byId<HTMLSelectElement>("interval-kind");
const intervalChart = new IntervalChart(byId("intervals-chart"));
const audiences = new AudiencesPanel(byId("audiences"));
byId("history-days").textContent = String(DAYS);

let paused = false;
let timer: number | undefined;
let running: Promise<void> | null = null;

installKeyPrompt((refused) => {
  const dialog = byId<HTMLDialogElement>("key-dialog");
  const input = byId<HTMLInputElement>("key-input");
  byId("key-error").textContent = refused ? "The API refused that key; enter the right one." : "";
  input.value = "";
  return new Promise((resolve) => {
    const done = (): void => {
      const key = input.value.trim();
      if (!key) return;
      dialog.removeEventListener("close", done);
      resolve(key);
    };
    dialog.addEventListener("close", done);
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
});

// The key dialog cannot be dismissed without a key: every panel needs one.
byId<HTMLDialogElement>("key-dialog").addEventListener("cancel", (e) => e.preventDefault());

function panelError(id: string, error: unknown): void {
  byId(id).replaceChildren(Object.assign(document.createElement("p"), { className: "error", textContent: String(error) }));
}

async function settle<T>(promise: Promise<T>): Promise<T | Error> {
  try {
    return await promise;
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}

async function refresh(): Promise<void> {
  const channel = channelSelect.value;
  const funnelName = funnelSelect.value;
  const funnelSource = funnelPath(funnelName, channel);
  const granularity = intervalSelect.value as Granularity;
  const lifecycle = getJson<Lifecycle>("/lifecycle");
  // The intervals up to the clock's: asked once the clock is known (it may be an event clock in the past).
  const perInterval = lifecycle.then(async (n) => {
    const source = intervalsPath(granularity, n.as_of);
    return { source, body: await getJson<Intervals>(source) };
  });
  const [now, history, indicators, funnel, funnels, triggers, ops, aud, intervals] = await Promise.all([
    settle(lifecycle),
    settle(getJson<History>(HISTORY)),
    settle(getJson<Indicators>("/indicators")),
    settle(getJson<Funnel | NamedFunnel>(funnelSource)),
    settle(getJson<FunnelList>("/funnels")),
    settle(getJson<TriggerSummary>("/triggers/summary")),
    settle(getJson<Ops>("/ops")),
    settle(getJson<Audiences>("/audiences")),
    settle(perInterval),
  ]);
  if (now instanceof Error) panelError("states", now);
  else renderStates(byId("states"), now);
  if (history instanceof Error) panelError("history-note", history);
  else chart.update(history, HISTORY, DAYS, byId("history-table"), byId("history-note"));
  if (indicators instanceof Error) panelError("glance", indicators);
  else {
    renderGlance(byId("glance"), byId("ops-note"), indicators, ops);
    syncChannels(channelSelect, (indicators.by_channel ?? []).map((c) => c.channel));
  }
  if (!(funnels instanceof Error)) {
    syncOptions(funnelSelect, funnels.funnels.map((f) => f.name).filter((n) => n !== "core"), (n) => n);
  }
  if (channelSelect.value === channel && funnelSelect.value === funnelName) {
    if (funnel instanceof Error) panelError("funnel", funnel);
    else if ("stages" in funnel) renderFunnel(byId("funnel"), funnel.stages, funnelSource, "stages");
    else renderFunnel(byId("funnel"), funnel.steps, funnelSource, "steps");
    byId("funnel-note").textContent = describeFunnel(funnels instanceof Error ? null : funnels, funnelName);
  }
  if (intervalSelect.value === granularity) {
    if (intervals instanceof Error) panelError("intervals-note", intervals);
    else intervalChart.update(intervals.body, intervals.source, byId("intervals-table"), byId("intervals-note"));
  }
  if (triggers instanceof Error) panelError("triggers", triggers);
  else renderTriggers(byId("triggers"), triggers);
  if (aud instanceof Error) audiences.showError(aud);
  else audiences.update(aud);
  const failed = [now, history, indicators, funnel, triggers, ops, intervals].filter((r) => r instanceof Error).length;
  const asOf = now instanceof Error ? "" : ` Clock ${clockText(now.as_of)}.`;
  status.textContent = `${failed ? `${failed} panel(s) failed to load. ` : ""}Updated ${new Date().toLocaleTimeString("en-GB")}` +
    `${paused ? " (paused)" : `, every ${REFRESH_S} s`}.${asOf}`;
  document.body.dataset.state = "ready";
  document.body.dataset.updated = String(Date.now());
}

/** One read at a time; the next is scheduled when this one ends, so a slow API is never piled on. */
function cycle(): Promise<void> {
  window.clearTimeout(timer);
  if (!running) {
    running = refresh()
      .catch((error: unknown) => {
        status.textContent = `Update failed: ${String(error)}`;
      })
      .finally(() => {
        running = null;
        if (!paused) timer = window.setTimeout(() => void cycle(), REFRESH_S * 1000);
      });
  }
  return running;
}

for (const select of [channelSelect, funnelSelect, intervalSelect]) {
  select.addEventListener("change", () => void (running ? running.then(cycle) : cycle()));
}
pauseButton.addEventListener("click", () => {
  paused = !paused;
  pauseButton.setAttribute("aria-pressed", String(paused));
  pauseButton.textContent = paused ? "Resume live updates" : "Pause live updates";
  void cycle();
});
byId("change-key").addEventListener("click", () => {
  forgetKey();
  void cycle();
});

void cycle();
