// Named audiences (who to act on) with their sizes and an export of their users as NDJSON.

import { download, HttpError } from "./api";
import { el, fill, metric } from "./format";
import type { Audiences } from "./types";

/** `state=silent,churned entered_since=7d`: the same names as GET /audiences/users's parameters. */
function filterText(filters: Record<string, unknown>): string {
  return Object.entries(filters)
    .filter(([, v]) => v !== null && v !== undefined && !(Array.isArray(v) && v.length === 0))
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(",") : String(v)}`)
    .join(" ");
}

export class AudiencesPanel {
  private names = "";

  constructor(private readonly container: HTMLElement) {}

  showError(error: unknown): void {
    this.names = "";
    const text = error instanceof HttpError && error.status === 404
      ? "This API serves no audiences (GET /audiences answered 404)."
      : `Audiences could not be read: ${String(error)}`;
    fill(this.container, el("p", { class: "note" }, text));
  }

  /** Rebuilt only when the set of audiences changes, so a focused export button keeps focus. */
  update(body: Audiences): void {
    const names = body.audiences.map((a) => a.name).join("\n");
    if (names === this.names) {
      body.audiences.forEach((a, i) => {
        const cell = this.container.querySelector<HTMLElement>(`[data-path="audiences.${i}.size"]`);
        if (cell) cell.replaceWith(metric("/audiences", `audiences.${i}.size`, "int", a.size));
      });
      return;
    }
    this.names = names;
    const rows = body.audiences.map((a, i) => {
      const status = el("span", { class: "export-status", role: "status" });
      const button = el("button", { type: "button", class: "export", "data-audience": a.name,
        "aria-label": `Export audience ${a.name} (NDJSON)` }, "Export");
      button.addEventListener("click", () => void this.exportAudience(a.name, button, status));
      return el("tr", {}, el("th", { scope: "row" }, el("code", {}, a.name)), el("td", {}, a.description),
        el("td", {}, el("code", { class: "filters" }, filterText(a.filters))),
        el("td", { class: "right" }, metric("/audiences", `audiences.${i}.size`, "int", a.size)),
        el("td", {}, button, status));
    });
    const head = el("tr", {}, el("th", { scope: "col" }, "Audience"), el("th", { scope: "col" }, "Who"), el("th", { scope: "col" }, "Filters"),
      el("th", { scope: "col", class: "right" }, "Users"), el("th", { scope: "col" }, "Export"));
    fill(this.container, el("table", {}, el("caption", { class: "sr-only" }, "Named audiences"),
      el("thead", {}, head), el("tbody", {}, ...rows)));
  }

  private async exportAudience(name: string, button: HTMLButtonElement, status: HTMLElement): Promise<void> {
    button.disabled = true;
    status.textContent = " exporting…";
    try {
      const path = `/audiences/${encodeURIComponent(name)}/users?format=ndjson`;
      const bytes = await download(path, `${name}.ndjson`);
      status.textContent = ` downloaded ${name}.ndjson (${bytes.toLocaleString("en-US")} bytes)`;
    } catch (error) {
      status.textContent = ` export failed: ${String(error)}`;
    } finally {
      button.disabled = false;
    }
  }
}
