// The core path funnel of one channel (or all): users per stage and conversion.

import { el, fill, formatValue, metric } from "./format";
import type { Funnel } from "./types";

export function funnelPath(channel: string): string {
  return channel ? `/funnel?channel=${encodeURIComponent(channel)}` : "/funnel";
}

export function renderFunnel(container: HTMLElement, funnel: Funnel, source: string): void {
  const top = Math.max(1, funnel.stages[0]?.users ?? 0);
  const items = funnel.stages.map((stage, i) => {
    const share = stage.users / top;
    const conv = i === 0 ? "start" : `${formatValue(stage.conversion_from_previous, "pct")} of previous`;
    const nth = stage.nth > 1 ? ` #${stage.nth}` : "";
    return el("li", { class: "stage" },
      el("div", { class: "stage-head" },
        el("span", { class: "stage-name" }, stage.name, el("span", { class: "stage-event" }, ` (${stage.event}${nth})`)),
        metric(source, `stages.${i}.users`, "int", stage.users)),
      el("div", { class: "bar", "aria-hidden": "true" }, el("span", { style: `width:${(share * 100).toFixed(2)}%` })),
      el("div", { class: "stage-conv" },
        i === 0 ? conv : metric(source, `stages.${i}.conversion_from_previous`, "pct", stage.conversion_from_previous),
        i === 0 ? "" : " of the previous stage"),
    );
  });
  fill(container, ...items);
}

/** Keep the selector's options in step with the channels the store knows, without moving focus. */
export function syncChannels(select: HTMLSelectElement, channels: string[]): void {
  const have = new Set(Array.from(select.options, (o) => o.value));
  for (const ch of channels) {
    if (!have.has(ch)) select.append(new Option(ch === "-" ? "(no channel)" : ch, ch));
  }
}
