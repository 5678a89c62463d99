// Lifecycle populations: now (exact, from the indexes) and over the last days (snapshots).

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { el, fill, formatValue, metric } from "./format";
import { STATES, type History, type Lifecycle, type State } from "./types";

// Text-safe on white (contrast >= 4.5:1) and told apart by dash pattern too, not colour alone.
export const STATE_COLORS: Record<State, string> = {
  new: "#1d4ed8",
  retained: "#15803d",
  silent: "#a16207",
  churned: "#b91c1c",
  dead: "#4b5563",
};
const DAY_S = 86_400;
const DASHES: Record<State, number[]> = { new: [], retained: [8, 4], silent: [2, 3], churned: [10, 3, 2, 3], dead: [4, 4] };

export function renderStates(container: HTMLElement, now: Lifecycle): void {
  const items = STATES.map((state) =>
    el("li", { class: "state", style: `--state:${STATE_COLORS[state]}` },
      el("span", { class: "state-name" }, state),
      metric("/lifecycle", `counts.${state}`, "int", now.counts[state]),
      el("span", { class: "state-share" }, now.total ? formatValue(now.counts[state] / now.total, "pct") : "–"),
    ),
  );
  items.push(el("li", { class: "state total" }, el("span", { class: "state-name" }, "total"),
    metric("/lifecycle", "total", "int", now.total)));
  fill(container, ...items);
}

export class HistoryChart {
  private plot: uPlot | null = null;
  private days: string[] = [];
  private range: [number, number] = [0, 1];

  constructor(private readonly host: HTMLElement) {
    new ResizeObserver(() => this.plot?.setSize(this.size())).observe(host);
  }

  private size(): { width: number; height: number } {
    return { width: Math.max(280, this.host.clientWidth), height: 240 };
  }

  update(history: History, source: string, span: number, table: HTMLElement, note: HTMLElement): void {
    const days = history.days;
    // The x axis is the whole window asked for, so a young history reads as young.
    const today = Date.parse(`${days.at(-1)?.day ?? new Date(history.as_of).toISOString().slice(0, 10)}T00:00:00Z`) / 1000;
    this.range = [today - (span - 0.5) * DAY_S, today + 0.5 * DAY_S];
    const data: uPlot.AlignedData = [
      days.map((d) => Date.parse(`${d.day}T00:00:00Z`) / 1000),
      ...STATES.map((s) => days.map((d) => d.counts[s])),
    ];
    const sameDays = days.length === this.days.length && days.every((d, i) => d.day === this.days[i]);
    if (this.plot && sameDays) {
      this.plot.setData(data);
    } else {
      this.plot?.destroy();
      this.plot = new uPlot(this.options(), data, this.host);
    }
    this.days = days.map((d) => d.day);
    const first = days[0]?.day;
    note.textContent = days.length <= 1
      ? "History starts when the API first runs: one snapshot per day is kept, so past days appear from tomorrow on."
      : `End-of-day populations since ${first} (today: now).`;
    fill(table, historyTable(history, source));
  }

  private options(): uPlot.Options {
    return {
      ...this.size(),
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      scales: { x: { time: true, range: () => this.range }, y: { range: (_u, _min, max) => [0, Math.max(10, max * 1.1)] } },
      axes: [
        { stroke: "#374151", grid: { stroke: "#e5e7eb" }, ticks: { stroke: "#d1d5db" }, space: 48,
          incrs: [DAY_S, 2 * DAY_S, 7 * DAY_S, 14 * DAY_S, 28 * DAY_S],
          values: (_u, splits) => splits.map((v) => new Date(v * 1000).toISOString().slice(5, 10)) },
        { stroke: "#374151", grid: { stroke: "#e5e7eb" }, ticks: { stroke: "#d1d5db" }, size: 60,
          values: (_u, splits) => splits.map((v) => formatValue(v, "int")) },
      ],
      series: [
        { label: "day", value: (_u, v) => (v === null ? "–" : new Date(v * 1000).toISOString().slice(0, 10)) },
        ...STATES.map((s) => ({
          label: s,
          stroke: STATE_COLORS[s],
          width: 2,
          dash: DASHES[s],
          points: { show: true, size: 6 },
          value: (_u: uPlot, v: number | null) => formatValue(v, "int"),
        })),
      ],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    };
  }
}

function historyTable(history: History, source: string): HTMLTableElement {
  const head = el("tr", {}, el("th", { scope: "col" }, "Day"), ...STATES.map((s) => el("th", { scope: "col" }, s)),
    el("th", { scope: "col" }, "total"));
  const rows = history.days.map((d, i) =>
    el("tr", {}, el("th", { scope: "row" }, d.day),
      ...STATES.map((s) => el("td", {}, metric(source, `days.${i}.counts.${s}`, "int", d.counts[s]))),
      el("td", {}, metric(source, `days.${i}.total`, "int", d.total))),
  );
  return el("table", {}, el("caption", {}, "Users per state at the end of each day"), el("thead", {}, head), el("tbody", {}, ...rows));
}
