// The reminder funnel per trigger type: sent -> delivered -> clicked ->
// payment click -> paid, with recall success.

import { el, fill, formatValue, metric } from "./format";
import type { TriggerSummary, TriggerType } from "./types";

const SOURCE = "/triggers/summary";

const STEPS: { label: string; outcome: string; rate: string; rateLabel: string }[] = [
  { label: "Delivered", outcome: "message_delivered", rate: "delivery_rate", rateLabel: "of sent" },
  { label: "Clicked", outcome: "message_click", rate: "click_through_rate", rateLabel: "of delivered" },
  { label: "Payment click", outcome: "payment_click", rate: "payment_click_rate", rateLabel: "of delivered" },
  { label: "Paid", outcome: "paid", rate: "payment_rate", rateLabel: "of delivered" },
];

// One row: a trigger type, or (under recall) the recalls from one state, `path` its place
// in the summary.
function row(t: TriggerType, path: string, label: HTMLElement): HTMLElement {
  const sent = Math.max(1, t.sent);
  const cells = STEPS.map((s) => {
    const n = t.outcomes[s.outcome] ?? 0;
    const rate = (t as unknown as Record<string, number | null>)[s.rate];
    return el("td", {},
      metric(SOURCE, `${path}.outcomes.${s.outcome}`, "int", n),
      el("span", { class: "rate" }, metric(SOURCE, `${path}.${s.rate}`, "pct", rate), ` ${s.rateLabel}`),
      el("span", { class: "bar small", "aria-hidden": "true" }, el("span", { style: `width:${Math.min(100, (n / sent) * 100).toFixed(2)}%` })));
  });
  return el("tr", {}, label,
    el("td", {}, metric(SOURCE, `${path}.sent`, "int", t.sent),
      el("span", { class: "rate" }, `${formatValue(t.held_out, "int")} held out`)),
    ...cells,
    el("td", {}, metric(SOURCE, `${path}.recall_success_rate`, "pct", t.recall_success_rate),
      el("span", { class: "rate" }, metric(SOURCE, `${path}.holdout_recall_success_rate`, "pct", t.holdout_recall_success_rate), " holdout")));
}

export function renderTriggers(container: HTMLElement, summary: TriggerSummary): void {
  const head = el("tr", {}, el("th", { scope: "col" }, "Trigger type"), el("th", { scope: "col" }, "Sent"),
    ...STEPS.map((s) => el("th", { scope: "col" }, s.label)), el("th", { scope: "col" }, "Recall success"));
  const rows = summary.triggers.flatMap((t, i) => [
    row(t, `triggers.${i}`, el("th", { scope: "row" }, t.type)),
    // recalls by the state they recalled users from: each state gets its own plan
    ...(t.by_origin ?? []).map((o, j) =>
      row(o, `triggers.${i}.by_origin.${j}`, el("th", { scope: "row", class: "origin" }, `from ${o.origin} (${o.plan})`))),
  ]);
  fill(container, el("table", { class: "triggers" }, el("caption", { class: "sr-only" }, "Reminder funnel per trigger type, recalls by the state recalled from"),
    el("thead", {}, head), el("tbody", {}, ...rows)));
}
