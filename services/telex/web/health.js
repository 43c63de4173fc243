// The health strip: source status from /v1/sources, updates per minute and end-to-end latency
// as this browser sees them.
import { h } from "./dom.js";

const SOURCES_EVERY_MS = 10000;
const LATENCY_SAMPLES = 50;
const rel = new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "short" });

function ago(ms) {
  if (!ms) return "never";
  const s = Math.round((ms - Date.now()) / 1000);
  if (Math.abs(s) < 60) return rel.format(s, "second");
  if (Math.abs(s) < 3600) return rel.format(Math.round(s / 60), "minute");
  return rel.format(Math.round(s / 3600), "hour");
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export function formatMs(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60000)} min`;
}

export class Health {
  constructor(onSources) {
    this.arrivals = [];
    this.latencies = [];
    this.onSources = onSources;
    this.el = {
      summary: document.getElementById("sources-summary"),
      item: document.getElementById("health-sources"),
      tbody: document.querySelector("#sources-table tbody"),
      rate: document.getElementById("rate"),
      latency: document.getElementById("latency"),
    };
  }

  start() {
    this.pollSources();
    // Opening the list shows the status of now, not of the last poll.
    document.querySelector(".health__sources").addEventListener("toggle", (ev) => {
      if (ev.target.open) this.pollSources();
    });
    setInterval(() => this.pollSources(), SOURCES_EVERY_MS);
    setInterval(() => this.showRate(), 5000);
  }

  /** Count an update that arrived live; `detectedMs` is when the poller saw it. */
  observe(detectedMs) {
    const now = Date.now();
    this.arrivals.push(now);
    if (typeof detectedMs === "number" && detectedMs > 0) {
      this.latencies.push(Math.max(0, now - detectedMs));
      if (this.latencies.length > LATENCY_SAMPLES) this.latencies.shift();
      const m = median(this.latencies);
      this.el.latency.textContent = formatMs(m);
      this.el.latency.dataset.ms = String(Math.round(m));
    }
    this.showRate();
  }

  showRate() {
    const since = Date.now() - 60000;
    while (this.arrivals.length && this.arrivals[0] < since) this.arrivals.shift();
    this.el.rate.textContent = String(this.arrivals.length);
  }

  async pollSources() {
    let body;
    try {
      const res = await fetch("/v1/sources", { headers: { accept: "application/json" } });
      if (res.status === 404) {
        this.showSources(null, "Source status is served by the poller's own port");
        return;
      }
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      body = await res.json();
    } catch (err) {
      this.showSources(null, `Source status unavailable (${err.message})`);
      return;
    }
    this.showSources(body.sources || [], "");
  }

  showSources(sources, note) {
    const { summary, item, tbody } = this.el;
    item.classList.remove("health__item--bad", "health__item--ok");
    if (sources === null) {
      summary.textContent = "n/a";
      item.title = note;
      tbody.replaceChildren(h("tr", {}, h("td", { colspan: "4", text: note })));
      return;
    }
    this.onSources(sources.map((s) => s.id));
    const polled = sources.filter((s) => s.status);
    const failing = polled.filter((s) => s.status.state !== "ok");
    const paused = sources.filter((s) => s.enabled === false).length;
    const parts = [`${polled.length - failing.length} polling`];
    if (failing.length) parts.push(`${failing.length} failing`);
    if (paused) parts.push(`${paused} paused`);
    summary.textContent = parts.join(" · ");
    item.title = failing.length
      ? `Failing: ${failing.map((s) => `${s.id} (${s.status.last_error || "error"})`).join(", ")}`
      : "Every polled source answers";
    item.classList.add(failing.length ? "health__item--bad" : "health__item--ok");
    tbody.replaceChildren(
      ...sources.map((s) => {
        const st = s.status;
        const state = !st ? (s.enabled === false ? "paused" : "elsewhere") : st.state === "ok" ? "ok" : `failing: ${st.last_error || "error"}`;
        return h(
          "tr",
          { class: st && st.state !== "ok" ? "bad" : "" },
          h("th", { scope: "row", text: s.id }),
          h("td", { text: state }),
          h("td", { text: st ? ago(st.last_poll_ms) : "—" }),
          h("td", { text: st ? String(st.updates_produced) : "—" }),
        );
      }),
    );
  }
}
