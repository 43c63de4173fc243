// The dashboard: the live wire of one view (a filter), kept current over a WebSocket (/v1/stream).
import { h } from "./dom.js";
import * as filters from "./filters.js";
import { Health } from "./health.js";
import { BACKLOG, Stream } from "./stream.js";
import { Watch } from "./watch.js";
import { languageName, tickAges, Wire } from "./wire.js";

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"),
  statusText: $("status-text"),
  retry: $("retry"),
  wire: $("wire"),
  empty: $("empty"),
  alert: $("alert"),
  newer: $("newer"),
  older: $("older"),
  form: $("filters"),
  clear: $("clear-filters"),
  active: $("active-filters"),
  activeList: $("active-list"),
  count: $("filter-count"),
  panel: $("panel"),
  panelToggle: $("panel-toggle"),
  watchForm: $("watch"),
  watchNote: $("watch-note"),
  announcer: $("announcer"),
  summary: $("summary"),
};

let filter = filters.fromQuery(location.search);
const watch = new Watch();
const wire = new Wire(ui.wire, { watch: () => watch.pattern });
const known = { sources: new Set(), entities: new Set(), languages: new Set() };
let olderCursor = null; // where "Load older" continues from
let backlogCount = 0; // a full backlog means the gateway may hold older updates
let unseen = 0; // updates that arrived while the tab was hidden
let newerCount = 0; // updates that arrived above while the viewer was reading further down
let countdown = null;
let noteTimer = null;
const baseTitle = document.title;

// Connection state ----------------------------------------------------------------------------

function setStatus(state, text, detail = "") {
  ui.status.className = `status status--${state}`;
  ui.status.dataset.state = state;
  ui.statusText.textContent = text;
  ui.status.title = detail;
}

function onState(state, detail) {
  clearInterval(countdown);
  clearTimeout(noteTimer);
  ui.retry.hidden = !(state === "reconnecting" || state === "offline") || !detail.retryAt;
  switch (state) {
    case "connecting":
      setStatus("connecting", "Connecting…");
      break;
    case "loading":
      setStatus("connecting", "Loading recent updates…");
      break;
    case "catching-up":
      setStatus("connecting", "Reconnected · catching up…");
      break;
    case "live": {
      let note = "";
      if (detail.resumed) note = `resumed: ${detail.replayed} missed ${detail.replayed === 1 ? "update" : "updates"}`;
      if (detail.resync) note = "gap: history reloaded";
      const title = "Connected: new updates appear as they are published";
      setStatus("live", note ? `Live · ${note}` : "Live", title);
      if (note) {
        // The note matters for a while, not all day: it moves to the tooltip.
        const at = new Date().toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
        noteTimer = setTimeout(() => setStatus("live", "Live", `${title}\n${at}: ${note}`), 20000);
      }
      break;
    }
    case "unauthorized":
      setStatus("offline", "Not connected · credentials needed");
      askForCredential();
      break;
    case "refused":
      setStatus("offline", "Not connected · change the filters", detail.reason || "");
      break;
    case "offline":
      setStatus("offline", "Offline · waiting for the network", detail.reason || "");
      break;
    case "reconnecting": {
      // The status (a live region) changes once per outage, not at every attempt; the
      // countdown lives in the Retry button, outside it.
      if (!detail.retryAt) {
        if (ui.status.dataset.state !== "reconnecting") setStatus("reconnecting", "Reconnecting…");
        break;
      }
      const text = `Disconnected · ${detail.reason}`;
      if (ui.statusText.textContent !== text) setStatus("reconnecting", text, "");
      const tick = () => {
        const s = Math.max(0, Math.ceil((detail.retryAt - Date.now()) / 1000));
        ui.retry.textContent = s > 0 ? `Retry now (auto in ${s} s)` : "Retrying…";
      };
      tick();
      countdown = setInterval(tick, 1000);
      break;
    }
    default:
      break;
  }
}

// Events ----------------------------------------------------------------------------------------

function learn(data) {
  const add = (set, value, listId, labelFn) => {
    if (!value || set.has(value) || set.size > 500) return;
    set.add(value);
    $(listId).append(h("option", { value, label: labelFn ? labelFn(value) : null }));
  };
  add(known.sources, data.source_id, "known-sources");
  add(known.languages, data.language, "known-languages", languageName);
  for (const e of data.entities || []) if (e.type !== "watch") add(known.entities, e.text, "known-entities");
}

function onEvent(event, { phase, cursor }) {
  const atTop = window.scrollY < 120;
  const result = wire.apply(event);
  if (result.kind === "duplicate") return;
  if (phase === "backlog") {
    if (olderCursor === null) olderCursor = cursor;
    backlogCount += 1;
  }
  learn(result.data);
  showEmpty();
  if (phase === "live") health.observe(result.data.timings?.detected_ms);
  if (phase === "backlog") return;
  // Missed-while-away (replay) and live updates are news to the viewer.
  if (document.visibilityState === "hidden") {
    unseen += 1;
    document.title = `(${unseen}) ${baseTitle}`;
  }
  if (!atTop && result.kind === "created") {
    newerCount += 1;
    ui.newer.textContent = `↑ ${newerCount} newer ${newerCount === 1 ? "update" : "updates"}`;
    ui.newer.hidden = false;
  }
  const matched = watch.pattern ? wire.watchMatches(result.data, watch.pattern) : [];
  if (matched.length && result.kind !== "deleted") {
    watch.alert(result.data, matched);
    announce(`Watched update from ${result.data.source_id}: ${(result.data.title || result.data.text || "").slice(0, 120)}`);
  }
}

function announce(text) {
  // The only live announcement of the wire: watched updates, not every arrival.
  ui.announcer.textContent = "";
  setTimeout(() => (ui.announcer.textContent = text), 50);
}

function showEmpty() {
  const none = wire.size === 0;
  const n = wire.size;
  ui.summary.textContent = `${filters.size(filter) ? "This view" : "All sources"} · ${n} ${n === 1 ? "update" : "updates"}, newest first`;
  ui.empty.hidden = !none;
  ui.empty.textContent = filters.size(filter)
    ? "No updates match this view yet. Matching updates appear here as they arrive."
    : "Waiting for the first update…";
  ui.older.hidden = none || olderCursor === null || backlogCount < BACKLOG;
}

function showAlert(text) {
  if (!text) {
    ui.alert.hidden = true;
    ui.alert.replaceChildren();
    return;
  }
  ui.alert.replaceChildren(
    h("span", { text }),
    h("button", { type: "button", class: "alert__close", "aria-label": "Dismiss", text: "×", onclick: () => showAlert("") }),
  );
  ui.alert.hidden = false;
}

// Credentials: a gateway may require an API key or a token. It is kept for this tab only.
const TOKEN_KEY = "telex.token";
function savedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || null;
  } catch {
    return null;
  }
}

/** Headers for the gateway's HTTP routes, with the credential if there is one. */
function authHeaders() {
  const token = stream.token;
  return token ? { accept: "application/json", authorization: `Bearer ${token}` } : { accept: "application/json" };
}

/** True when the gateway refuses this page's (lack of) credential. */
async function refusedAccess() {
  try {
    const res = await fetch("/v1/updates?limit=1", { headers: authHeaders() });
    return res.status === 401;
  } catch {
    return false;
  }
}

function askForCredential() {
  const input = h("input", { id: "credential", type: "password", autocomplete: "off", "aria-describedby": "credential-hint" });
  const form = h(
    "form",
    { class: "credential" },
    h("label", { for: "credential", text: "API key or token" }),
    input,
    h("button", { type: "submit", class: "button button--primary", text: "Connect" }),
    h("small", { id: "credential-hint", class: "hint", text: "Kept in this tab only." }),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    try {
      sessionStorage.setItem(TOKEN_KEY, token);
    } catch {
      // the credential lasts as long as this page
    }
    stream.token = token;
    showAlert("");
    stream.retryNow();
  });
  ui.alert.replaceChildren(h("span", { text: "This gateway needs credentials." }), form);
  ui.alert.hidden = false;
  input.focus();
}

function historyUrl(before, limit) {
  const params = filters.toParams(filter);
  params.set("limit", String(limit));
  if (before) params.set("before", before);
  return `/v1/updates?${params}`;
}

async function fetchHistory(before, limit) {
  const res = await fetch(historyUrl(before, limit), { headers: authHeaders() });
  if (!res.ok) throw new Error(`history: HTTP ${res.status}`);
  return res.json();
}

async function onResync(reason) {
  showAlert(`Some updates could not be replayed (${reason}). Recent history was reloaded.`);
  try {
    const page = await fetchHistory(null, 100);
    wire.clear();
    olderCursor = page.next;
    backlogCount = page.next ? BACKLOG : 0;
    // Newest first on the page: show the oldest first so that edits land on their update.
    for (const frame of page.updates.slice().reverse()) {
      const result = wire.apply(frame.event);
      if (result.data) learn(result.data);
    }
  } catch (err) {
    showAlert(`Some updates were missed and history could not be reloaded (${err.message}). Reload the page.`);
  }
  showEmpty();
}

async function loadOlder() {
  ui.older.disabled = true;
  try {
    const page = await fetchHistory(olderCursor, 50);
    let added = 0;
    for (const frame of page.updates.slice().reverse()) {
      const result = wire.apply(frame.event);
      if (result.kind !== "duplicate") {
        added += 1;
        learn(result.data);
      }
    }
    olderCursor = page.next;
    if (!page.next) {
      ui.older.hidden = true;
      if (!added) showAlert("No older updates: the gateway keeps only its most recent history in memory.");
    }
  } catch (err) {
    showAlert(`Could not load older updates (${err.message}).`);
  } finally {
    ui.older.disabled = false;
    showEmpty();
  }
}

// Filters ---------------------------------------------------------------------------------------

function fillForm() {
  for (const field of filters.FIELDS) {
    const input = ui.form.elements[field];
    if (input) input.value = (filter[field] || []).join(", ");
  }
  const n = filters.size(filter);
  ui.count.hidden = n === 0;
  ui.count.textContent = String(n);
  ui.active.hidden = n === 0;
  ui.activeList.replaceChildren(
    ...filters.FIELDS.flatMap((field) =>
      (filter[field] || []).map((value) =>
        h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              class: "active__chip",
              "aria-label": `Remove filter ${filters.label(field)} ${value}`,
              onclick: () => applyFilter(filters.withoutValue(filter, field, value)),
            },
            h("span", { class: "active__field", text: filters.label(field) }),
            " ",
            value,
            h("span", { class: "active__x", "aria-hidden": "true", text: " ×" }),
          ),
        ),
      ),
    ),
  );
}

function sameFilter(a, b) {
  return filters.toParams(a).toString() === filters.toParams(b).toString();
}

function applyFilter(next, { push = true } = {}) {
  if (sameFilter(next, filter)) return;
  filter = next;
  if (push) {
    const query = filters.toParams(filter).toString();
    history.pushState(null, "", query ? `?${query}` : location.pathname);
  }
  fillForm();
  showAlert("");
  stream.setFilter(filter);
}

function onSubscribed() {
  wire.clear();
  olderCursor = null;
  backlogCount = 0;
  newerCount = 0;
  ui.newer.hidden = true;
  showEmpty();
}

ui.form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const next = {};
  for (const field of filters.FIELDS) {
    const values = filters.parseList(ui.form.elements[field].value);
    if (values.length) next[field] = field === "languages" ? values.map((v) => v.toLowerCase()) : values;
  }
  applyFilter(next);
  if (window.matchMedia("(max-width: 760px)").matches) togglePanel(false);
});
ui.clear.addEventListener("click", () => applyFilter({}));
window.addEventListener("popstate", () => applyFilter(filters.fromQuery(location.search), { push: false }));

ui.wire.addEventListener("click", (ev) => {
  const chip = ev.target.closest("button[data-field]");
  if (chip) applyFilter(filters.withValue(filter, chip.dataset.field, chip.dataset.value));
});

function togglePanel(open) {
  const show = open ?? ui.panelToggle.getAttribute("aria-expanded") !== "true";
  ui.panelToggle.setAttribute("aria-expanded", String(show));
  ui.panel.classList.toggle("panel--open", show);
  if (show) ui.form.elements.terms.focus();
}
ui.panelToggle.addEventListener("click", () => togglePanel());

// Watch terms -----------------------------------------------------------------------------------

function fillWatch() {
  ui.watchForm.elements.terms.value = watch.terms.join(", ");
  ui.watchForm.elements.sound.checked = watch.sound;
  ui.watchForm.elements.notify.checked = watch.notify;
}

ui.watchForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = ui.watchForm.elements;
  watch.save(f.terms.value, f.sound.checked, f.notify.checked);
  wire.refresh();
  fillWatch();
  if (watch.sound) watch.beep(); // a sample, and browsers only allow audio after a gesture
  const note = await watch.permit();
  ui.watchNote.hidden = !note;
  ui.watchNote.textContent = note;
});

// Reading ----------------------------------------------------------------------------------------

ui.newer.addEventListener("click", () => {
  window.scrollTo({ top: 0, behavior: "smooth" });
  ui.wire.querySelector(".card")?.focus({ preventScroll: true });
});
window.addEventListener(
  "scroll",
  () => {
    if (window.scrollY < 120 && !ui.newer.hidden) {
      ui.newer.hidden = true;
      newerCount = 0;
    }
  },
  { passive: true },
);
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") {
    unseen = 0;
    document.title = baseTitle;
  }
});
ui.older.addEventListener("click", loadOlder);
ui.retry.addEventListener("click", () => stream.retryNow());

function visibleCards() {
  return [...ui.wire.querySelectorAll(".card")].filter((c) => c.offsetParent !== null);
}

document.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const typing = ev.target.closest("input, textarea, select, [contenteditable]");
  if (ev.key === "Escape" && typing) {
    typing.blur();
    return;
  }
  if (typing) return;
  const cards = visibleCards();
  const current = document.activeElement?.closest(".card");
  const index = current ? cards.indexOf(current) : -1;
  const focus = (card) => {
    if (!card) return;
    card.focus({ preventScroll: true });
    card.scrollIntoView({ block: "nearest", behavior: "smooth" });
  };
  switch (ev.key) {
    case "j":
      focus(cards[Math.min(cards.length - 1, index + 1)]);
      break;
    case "k":
      focus(cards[Math.max(0, index - 1)]);
      break;
    case "g":
      window.scrollTo({ top: 0 });
      focus(cards[0]);
      break;
    case "o":
      current?.querySelector(".card__link")?.click();
      break;
    case "d": {
      const details = current?.querySelector(".card__diff");
      if (details) details.open = !details.open;
      break;
    }
    case "/":
      ev.preventDefault();
      if (window.matchMedia("(max-width: 760px)").matches) togglePanel(true);
      ui.form.elements.terms.focus();
      break;
    default:
      return;
  }
});

// Start -----------------------------------------------------------------------------------------

const health = new Health((ids) => {
  for (const id of ids) learn({ source_id: id });
});
const stream = new Stream(filter, {
  onEvent,
  onState,
  onResync,
  onSubscribed,
  refusedAccess,
  onError(frame) {
    if (frame.code === "unknown_subscription") return;
    if (frame.code === "bad_cursor") {
      stream.cursor = null; // start this view afresh rather than retrying a cursor forever
      onResync(frame.error);
      return;
    }
    showAlert(`The gateway refused this view: ${frame.error}`);
  },
});
stream.token = savedToken();
fillForm();
fillWatch();
showEmpty();
health.start();
stream.start();
setInterval(() => tickAges(ui.wire), 30000);
// For tests and the curious: the state of this page.
window.telex = { wire, stream, health };
