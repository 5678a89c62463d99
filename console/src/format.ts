// How numbers are shown, and how each shown number names its source.
//
// Every number an operator reads is an element with `data-metric` (the API path it comes
// from), `data-path` (where in that JSON) and `data-format`; the browser test reads the
// same API and checks what is displayed against it.

export type Format = "int" | "pct" | "money";

const INT = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const MONEY = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

export function formatValue(value: number | null | undefined, format: Format): string {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (format === "pct") return `${(value * 100).toFixed(1)}%`;
  if (format === "money") return MONEY.format(value);
  return INT.format(value);
}

/** A number element bound to its source; `update` rewrites it in place. */
export function metric(source: string, path: string, format: Format, value: number | null | undefined): HTMLElement {
  const el = document.createElement("span");
  el.className = "num";
  el.dataset.metric = source;
  el.dataset.path = path;
  el.dataset.format = format;
  el.textContent = formatValue(value, format);
  return el;
}

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

export function timeAgo(ms: number, now: number = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function clockText(ms: number): string {
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

/** Replace a container's content at once (no intermediate empty state for screen readers). */
export function fill(container: HTMLElement, ...children: Node[]): void {
  container.replaceChildren(...children);
}
