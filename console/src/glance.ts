// "At a glance": the result indicators operators watch and the pipeline's health.

import { clockText, el, fill, metric, timeAgo, type Format } from "./format";
import type { Indicators, Ops } from "./types";

function tile(label: string, value: HTMLElement, hint = "", tone = ""): HTMLElement {
  return el("div", { class: `tile ${tone}`.trim() }, el("span", { class: "tile-label" }, label), value,
    ...(hint ? [el("span", { class: "tile-hint" }, hint)] : []));
}

function m(source: string, path: string, format: Format, value: number | null | undefined): HTMLElement {
  return metric(source, path, format, value);
}

export function renderGlance(container: HTMLElement, note: HTMLElement, ind: Indicators, ops: Ops | Error): void {
  const tiles = [
    tile("Users", m("/indicators", "users", "int", ind.users)),
    tile("Active today (DAU)", m("/indicators", "active.dau", "int", ind.active.dau)),
    tile("Active 7 days (WAU)", m("/indicators", "active.wau", "int", ind.active.wau)),
    tile("Active 30 days (MAU)", m("/indicators", "active.mau", "int", ind.active.mau)),
    tile("Payment rate", m("/indicators", "payment_rate", "pct", ind.payment_rate), "payers / registered"),
    tile("GMV", m("/indicators", "gmv", "money", ind.gmv)),
    tile("Average order value", m("/indicators", "aov", "money", ind.aov)),
  ];
  if (ops instanceof Error) {
    tiles.push(tile("Pipeline", el("span", { class: "num" }, "unavailable"), ops.message, "bad"));
    fill(note, document.createTextNode(""));
  } else {
    const lag = ops.lag;
    tiles.push(
      tile("Dead letters (DLQ)", m("/ops", "dlq_events", "int", ops.dlq_events), "rejected events", ops.dlq_events ? "warn" : ""),
      tile("Consumer lag", lag ? m("/ops", "lag.total", "int", lag.total) : el("span", { class: "num" }, "–"),
        lag ? "messages not yet applied" : "broker not reachable", lag === null || lag.total > 1000 ? "warn" : ""),
      tile("Events applied", m("/ops", "events_applied", "int", ops.events_applied)),
      tile("Trigger outbox", m("/ops", "outbox_pending", "int", ops.outbox_pending), "waiting for Kafka"),
      tile("Last commit", ops.last_commit_ms === null
        ? el("span", { class: "num" }, "never")
        : el("time", { class: "num", datetime: new Date(ops.last_commit_ms).toISOString(), title: clockText(ops.last_commit_ms),
            "data-ms": String(ops.last_commit_ms) }, timeAgo(ops.last_commit_ms))),
    );
    const parts = lag ? Object.entries(lag.partitions).map(([p, n]) => `${p}: ${n}`).join(", ") : "";
    fill(note, document.createTextNode(ops.kafka_error ? `Broker: ${ops.kafka_error}` : `Lag by partition: ${parts}.`));
  }
  fill(container, ...tiles);
}
