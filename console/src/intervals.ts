// Lifecycle per interval (new, returning, resurrecting, dormant) as PostHog and Amplitude
// draw it: stacked bars per day, week or month, dormant users below the axis.

import uPlot from "uplot";
import { el, fill, formatValue, metric } from "./format";
import { KINDS, type Granularity, type Intervals, type Kind } from "./types";

// Text-safe on white (contrast >= 4.5:1); the bars are told apart by their order in the stack too.
export const KIND_COLORS: Record<Kind, string> = {
  new: "#1d4ed8",
  returning: "#15803d",
  resurrecting: "#a16207",
  dormant: "#b91c1c",
};
// How many intervals the panel shows: a month of days, a quarter of weeks, a year of months.
const SPAN: Record<Granularity, number> = { day: 30, week: 13, month: 12 };
const DAYS_PER: Record<Granularity, number> = { day: 1, week: 7, month: 31 };

/** The request for the intervals ending with the clock's (`asOf`, ms): a day past it in UTC
 * covers the clock's local day in any time zone; the API lists none after the clock's. */
export function intervalsPath(g: Granularity, asOf: number): string {
  const to = new Date(asOf + 86_400_000);
  const from = new Date(to.getTime() - (SPAN[g] * DAYS_PER[g] - 1) * 86_400_000);
  const day = (d: Date): string => d.toISOString().slice(0, 10);
  return `/lifecycle/intervals?interval=${g}&from=${day(from)}&to=${day(to)}`;
}

export class IntervalChart {
  private plot: uPlot | null = null;
  private raw: Intervals["intervals"] = [];
  private shape = "";

  constructor(private readonly host: HTMLElement) {
    new ResizeObserver(() => this.plot?.setSize(this.size())).observe(host);
  }

  private size(): { width: number; height: number } {
    return { width: Math.max(280, this.host.clientWidth), height: 260 };
  }

  update(body: Intervals, source: string, table: HTMLElement, note: HTMLElement): void {
    const rows = body.intervals.slice(-SPAN[body.interval]);
    const offset = body.intervals.length - rows.length;
    this.raw = rows;
    // Stacked upwards new, returning, resurrecting (each series is the running total, drawn
    // tallest first so the shorter ones lie on top of it); dormant downwards.
    const x = rows.map((_r, i) => i);
    // A zero is no bar (null), not a hairline at the axis.
    const up = (kinds: Kind[]): (number | null)[] => rows.map((r) => kinds.reduce((sum, k) => sum + r[k], 0) || null);
    const data: uPlot.AlignedData = [
      x,
      up(["new", "returning", "resurrecting"]),
      up(["new", "returning"]),
      up(["new"]),
      rows.map((r) => (r.dormant ? -r.dormant : null)),
    ];
    const shape = `${body.interval}|${rows.map((r) => r.start).join(",")}`;
    if (this.plot && shape === this.shape) {
      this.plot.setData(data);
    } else {
      this.plot?.destroy();
      this.plot = new uPlot(this.options(rows.map((r) => r.start)), data, this.host);
      this.shape = shape;
    }
    note.textContent = `Users per ${body.interval} (${body.time_zone}${body.interval === "week" ? ", weeks from Monday" : ""}): ` +
      "new, returning and resurrecting above the axis, dormant (active in the previous one, not in this one) below it.";
    fill(table, intervalTable(body, rows, offset, source));
  }

  private options(labels: string[]): uPlot.Options {
    const bars = uPlot.paths.bars!({ size: [0.7, 48], align: 0 });
    const stacked: Kind[] = ["resurrecting", "returning", "new", "dormant"];
    return {
      ...this.size(),
      scales: { x: { time: false, range: (_u, min, max) => [min - 0.5, max + 0.5] } },
      axes: [
        { stroke: "#374151", grid: { show: false }, ticks: { stroke: "#d1d5db" }, space: 56,
          values: (_u, splits) => splits.map((v) => (Number.isInteger(v) ? (labels[v] ?? "").slice(5) : "")) },
        { stroke: "#374151", grid: { stroke: "#e5e7eb" }, ticks: { stroke: "#d1d5db" }, size: 60,
          values: (_u, splits) => splits.map((v) => formatValue(v, "int")) },
      ],
      series: [
        { label: "starting", value: (_u, v) => (v === null ? "–" : (labels[v] ?? "–")) },
        ...stacked.map((kind) => ({
          label: kind,
          stroke: KIND_COLORS[kind],
          fill: `${KIND_COLORS[kind]}cc`,
          width: 1,
          paths: bars,
          points: { show: false },
          value: (_u: uPlot, _v: number | null, _s: number, i: number | null) =>
            formatValue(i === null ? null : this.raw[i]?.[kind], "int"),
        })),
      ],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    };
  }
}

function intervalTable(body: Intervals, rows: Intervals["intervals"], offset: number, source: string): HTMLTableElement {
  const head = el("tr", {}, el("th", { scope: "col" }, `${body.interval[0].toUpperCase()}${body.interval.slice(1)} starting`),
    ...KINDS.map((k) => el("th", { scope: "col" }, k)));
  const lines = rows.map((r, i) =>
    el("tr", {}, el("th", { scope: "row" }, r.start),
      ...KINDS.map((k) => el("td", {}, metric(source, `intervals.${offset + i}.${k}`, "int", r[k])))),
  );
  return el("table", {}, el("caption", {}, "Users per interval (dormant: a count of users, drawn below the axis)"),
    el("thead", {}, head), el("tbody", {}, ...lines));
}
