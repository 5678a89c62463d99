// The funnels of one channel (or all): the core path or a named funnel, users per step and conversion.

import { el, fill, formatValue, metric } from "./format";
import type { FunnelList, FunnelStage } from "./types";

/** The API path of a funnel: "" is the core path (`/funnel`), any other a named funnel. */
export function funnelPath(name: string, channel: string): string {
  const query = channel ? `?channel=${encodeURIComponent(channel)}` : "";
  return name ? `/funnels/${encodeURIComponent(name)}${query}` : `/funnel${query}`;
}

/** `key` is where the steps are in the source's JSON: `stages` (core path) or `steps` (named). */
export function renderFunnel(container: HTMLElement, stages: FunnelStage[], source: string, key: string): void {
  const top = Math.max(1, stages[0]?.users ?? 0);
  const items = stages.map((stage, i) => {
    const share = stage.users / top;
    const conv = i === 0 ? "start" : `${formatValue(stage.conversion_from_previous, "pct")} of previous`;
    const nth = stage.nth > 1 ? ` #${stage.nth}` : "";
    return el("li", { class: "stage" },
      el("div", { class: "stage-head" },
        el("span", { class: "stage-name" }, stage.name, el("span", { class: "stage-event" }, ` (${stage.event}${nth})`)),
        metric(source, `${key}.${i}.users`, "int", stage.users)),
      el("div", { class: "bar", "aria-hidden": "true" }, el("span", { style: `width:${(share * 100).toFixed(2)}%` })),
      el("div", { class: "stage-conv" },
        i === 0 ? conv : metric(source, `${key}.${i}.conversion_from_previous`, "pct", stage.conversion_from_previous),
        i === 0 ? "" : " of the previous step"),
    );
  });
  fill(container, ...items);
}

/** What a funnel counts, in words: its order and window. */
export function describeFunnel(list: FunnelList | null, name: string): string {
  const found = list?.funnels.find((f) => f.name === (name || "core"));
  if (!found || !name) return "Users who reached each stage, in any order; conversion from the previous stage.";
  const order = found.order === "strict" ? "each step at or after the previous one" : "steps in any order";
  const window = found.window ? `, within ${found.window} of entering` : "";
  return `Users at each step or further: ${order}${window}; conversion from the previous step.`;
}

/** Keep a selector's options in step with the values the API knows, without moving focus. */
export function syncOptions(select: HTMLSelectElement, values: string[], label: (v: string) => string): void {
  const have = new Set(Array.from(select.options, (o) => o.value));
  for (const value of values) {
    if (!have.has(value)) select.append(new Option(label(value), value));
  }
}

export function syncChannels(select: HTMLSelectElement, channels: string[]): void {
  syncOptions(select, channels, (ch) => (ch === "-" ? "(no channel)" : ch));
}
