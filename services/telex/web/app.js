// The live wire: one card per update, newest first, kept current over a WebSocket.
const wire = document.getElementById("wire");
const empty = document.getElementById("empty");
const statusEl = document.getElementById("status");
const cards = new Map(); // update id -> {el, published}

function setStatus(state, text) {
  statusEl.className = `status status--${state}`;
  statusEl.textContent = text;
}

function formatTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function render(event) {
  const u = event.data;
  const el = document.createElement("li");
  el.className = "card fresh";
  el.dataset.id = u.id;
  el.dataset.published = u.published || "";
  const head = document.createElement("header");
  const time = document.createElement("time");
  if (u.published) time.dateTime = u.published;
  time.textContent = formatTime(u.published) || u.time_raw || "";
  if (u.time_raw) time.title = `as written: ${u.time_raw}`;
  const source = document.createElement("span");
  source.className = "source";
  source.textContent = u.source_id;
  head.append(time, source);
  if (event.type === "telex.update.revised") {
    const rev = document.createElement("span");
    rev.className = "revised";
    rev.textContent = "edited";
    head.append(rev);
  }
  el.append(head);
  if (u.title) {
    const h = document.createElement("h2");
    h.textContent = u.title;
    el.append(h);
  }
  for (const para of (u.text || "").split(/\n\n+/)) {
    const p = document.createElement("p");
    p.textContent = para;
    el.append(p);
  }
  return el;
}

function place(event) {
  const u = event.data;
  const el = render(event);
  const old = cards.get(u.id);
  if (old) old.el.remove();
  cards.set(u.id, { el, published: u.published || "" });
  // Newest first by publication time; ties keep arrival order (later arrival on top).
  let before = null;
  for (const child of wire.children) {
    if ((child.dataset.published || "") <= el.dataset.published) { before = child; break; }
  }
  wire.insertBefore(el, before);
  empty.hidden = true;
}

let cursor = null;
let backoff = 500;

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  // Resume from the last cursor: what was missed while away, once, then live.
  const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
  const ws = new WebSocket(`${proto}//${location.host}/v1/stream${query}`);
  ws.onopen = () => { backoff = 500; setStatus("live", "live"); };
  ws.onmessage = (msg) => {
    const frame = JSON.parse(msg.data);
    if (frame.type === "event") {
      cursor = frame.cursor;
      place(frame.event);
    } else if (frame.type === "resync" || frame.type === "live" || frame.type === "heartbeat") {
      cursor = frame.cursor; // a resync means updates were missed: a reload shows them all
    }
  };
  ws.onclose = () => {
    setStatus("reconnecting", "reconnecting…");
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 15000);
  };
}

connect();
