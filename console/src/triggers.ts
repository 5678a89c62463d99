// The reminder funnel per trigger type: sent -> delivered -> clicked ->
// payment click -> paid, with recall success.

import { el, fill, formatValue, metric } from "./format";
import type { TriggerSummary } from "./types";

const SOURCE = "/triggers/summary";

const STEPS: { label: string; outcome: string; rate: string; rateLabel: string }[] = [
  { label: "Delivered", outcome: "message_delivered", rate: "delivery_rate", rateLabel: "of sent" },
  { label: "Clicked", outcome: "message_click", rate: "click_through_rate", rateLabel: "of delivered" },
  { label: "Payment click", outcome: "payment_click", rate: "payment_click_rate", rateLabel: "of delivered" },
  { label: "Paid", outcome: "paid", rate: "payment_rate", rateLabel: "of delivered" },
];

export function renderTriggers(container: HTMLElement, summary: TriggerSummary): void {
  const head = el("tr", {}, el("th", { scope: "col" }, "Trigger type"), el("th", { scope: "col" }, "Sent"),
    ...STEPS.map((s) => el("th", { scope: "col" }, s.label)), el("th", { scope: "col" }, "Recall success"));
  const rows = summary.triggers.map((t, i) => {
    const sent = Math.max(1, t.sent);
    const cells = STEPS.map((s) => {
      const n = t.outcomes[s.outcome] ?? 0;
      const rate = (t as unknown as Record<string, number | null>)[s.rate];
      return el("td", {},
        metric(SOURCE, `triggers.${i}.outcomes.${s.outcome}`, "int", n),
        el("span", { class: "rate" }, metric(SOURCE, `triggers.${i}.${s.rate}`, "pct", rate), ` ${s.rateLabel}`),
        el("span", { class: "bar small", "aria-hidden": "true" }, el("span", { style: `width:${Math.min(100, (n / sent) * 100).toFixed(2)}%` })));
    });
    return el("tr", {}, el("th", { scope: "row" }, t.type),
      el("td", {}, metric(SOURCE, `triggers.${i}.sent`, "int", t.sent),
        el("span", { class: "rate" }, `${formatValue(t.held_out, "int")} held out`)),
      ...cells,
      el("td", {}, metric(SOURCE, `triggers.${i}.recall_success_rate`, "pct", t.recall_success_rate)));
  });
  fill(container, el("table", { class: "triggers" }, el("caption", { class: "sr-only" }, "Reminder funnel per trigger type"),
    el("thead", {}, head), el("tbody", {}, ...rows)));
}
