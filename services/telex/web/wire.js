// The wire on screen: one card per update (keyed by update id), revisions edit their card in
// place, updates of the same story share a group, newest first by publication time.
import { h, marked } from "./dom.js";

const TYPE_CREATED = "telex.update.created";
const TYPE_REVISED = "telex.update.revised";
const TYPE_DELETED = "telex.update.deleted";
const MAX_TAGS = 5;
const MAX_UPDATES = 2000; // cards kept on screen; the oldest go first
const MAX_EVENT_IDS = 20000; // event ids remembered to drop a frame seen twice

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateFmt = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric" });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });
const languageNames = (() => {
  try {
    return new Intl.DisplayNames(undefined, { type: "language" });
  } catch {
    return null;
  }
})();

/** The language's name in the viewer's language ("English"), or the code. */
export function languageName(code) {
  try {
    return (languageNames && languageNames.of(code)) || code;
  } catch {
    return code;
  }
}

/** A hue for a source id: the same source always gets the same colour. */
function sourceHue(id) {
  let hash = 0;
  for (const ch of id) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % 360;
}

function sortKey(data) {
  const t = data.published ? Date.parse(data.published) : NaN;
  return Number.isNaN(t) ? (data.timings?.first_seen_ms ?? Date.now()) : t;
}

function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

function timeElement(data) {
  const when = data.published ? new Date(data.published) : null;
  const asWritten = data.time_raw ? `As written at the source: ${data.time_raw}` : "No time at the source";
  if (!when || Number.isNaN(when.getTime())) {
    return h("span", { class: "card__time card__time--unknown", title: asWritten, text: data.time_raw || "—" });
  }
  const el = h("time", {
    class: "card__time",
    datetime: data.published,
    title: `${asWritten}\nYour time: ${fullFmt.format(when)}`,
  });
  el.append(h("span", { class: "card__clock", text: timeFmt.format(when) }));
  if (!sameDay(when, new Date())) el.append(h("span", { class: "card__date", text: dateFmt.format(when) }));
  el.append(h("span", { class: "card__ago", text: ago(when.getTime()) }));
  return el;
}

const relFmt = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

/** "3 minutes ago" for the last day; "" for anything older (the date says enough). */
export function ago(ms) {
  const seconds = (ms - Date.now()) / 1000;
  if (seconds < -86400 || seconds > 300) return "";
  if (seconds > -60) return "just now";
  if (seconds > -3600) return relFmt.format(Math.round(seconds / 60), "minute");
  return relFmt.format(Math.round(seconds / 3600), "hour");
}

/** Keep the "minutes ago" of every card current. */
export function tickAges(root) {
  for (const el of root.querySelectorAll("time.card__time")) {
    const span = el.querySelector(".card__ago");
    const text = ago(Date.parse(el.getAttribute("datetime")));
    if (span && span.textContent !== text) span.textContent = text;
  }
}

function paragraphs(text, pattern) {
  return (text || "")
    .split(/\n\s*\n+/)
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) => h("p", {}, marked(p, pattern)));
}

function diffView(diff) {
  const lines = (diff || "").split("\n").filter((l) => l.trim());
  return h(
    "div",
    { class: "diff" },
    lines.map((line) => {
      if (line.startsWith("- ")) return h("del", { class: "diff__line", text: line.slice(2) });
      if (line.startsWith("+ ")) return h("ins", { class: "diff__line", text: line.slice(2) });
      return h("span", { class: "diff__line", text: line });
    }),
  );
}

/** Distinct entities of an update, in order of first mention. */
function distinctEntities(entities) {
  const seen = new Map();
  for (const e of entities || []) {
    const key = e.text.toLowerCase();
    if (!seen.has(key)) seen.set(key, e);
  }
  return [...seen.values()];
}

export class Wire {
  /**
   * `list`: the <ol>. `options.onFilter(field, value)`: a chip was chosen;
   * `options.watch()`: the watch-term RegExp or null.
   */
  constructor(list, options) {
    this.list = list;
    this.options = options;
    this.updates = new Map(); // update id -> {card, data, type, story, key, edits}
    this.stories = new Map(); // story id -> {el, ids: Set, key, seq}
    this.events = new Set(); // event ids already shown: a frame seen twice changes nothing
    this.duplicates = 0;
    this.seq = 0;
  }

  get size() {
    return this.updates.size;
  }

  clear() {
    this.updates.clear();
    this.stories.clear();
    this.events.clear();
    this.list.replaceChildren();
  }

  /**
   * Show one wire event. Returns {kind, card, data}; kind is "created", "revised", "deleted"
   * or "duplicate" (already shown: nothing changes).
   */
  apply(event) {
    const data = event.data;
    if (!data || !data.id) return { kind: "duplicate" };
    if (this.events.has(event.id)) {
      this.duplicates += 1;
      return { kind: "duplicate", data };
    }
    this.events.add(event.id);
    const known = this.updates.get(data.id);
    if (known && event.type === TYPE_CREATED && known.type !== TYPE_CREATED) {
      // A revision got here first (a history page and the live stream crossing): keep it.
      return { kind: "duplicate", data };
    }
    if (known) return this.edit(known, event);
    return this.add(event);
  }

  add(event) {
    const data = event.data;
    const entry = { data, type: event.type, edits: event.type === TYPE_REVISED ? 1 : 0, diffs: [] };
    if (event.type === TYPE_REVISED && data.diff) entry.diffs.push({ diff: data.diff, at: data.timings?.detected_ms });
    entry.key = sortKey(data);
    entry.seq = ++this.seq;
    entry.card = this.render(entry, event);
    this.updates.set(data.id, entry);
    this.place(entry);
    this.trim();
    return { kind: event.type === TYPE_DELETED ? "deleted" : "created", card: entry.card, data };
  }

  edit(entry, event) {
    const data = event.data;
    entry.type = event.type;
    if (event.type === TYPE_DELETED) {
      entry.card.classList.add("card--deleted");
      const meta = entry.card.querySelector(".card__meta");
      if (!meta.querySelector(".badge--deleted")) {
        meta.append(h("span", { class: "badge badge--deleted", text: "Removed at source" }));
      }
      entry.card.dataset.type = "deleted";
      return { kind: "deleted", card: entry.card, data };
    }
    entry.data = data;
    entry.edits += 1;
    if (data.diff) entry.diffs.push({ diff: data.diff, at: data.timings?.detected_ms });
    const fresh = this.render(entry, event);
    const wasOpen = entry.card.querySelector(".card__diff")?.open;
    entry.card.replaceChildren(...fresh.childNodes);
    for (const attr of ["class", "data-type", "data-event-id", "data-edits", "data-hash"]) {
      const v = fresh.getAttribute(attr);
      if (v == null) entry.card.removeAttribute(attr);
      else entry.card.setAttribute(attr, v);
    }
    if (wasOpen) entry.card.querySelector(".card__diff").open = true;
    // Flash again: the edit is news (a reflow restarts the animation).
    entry.card.classList.remove("card--flash");
    void entry.card.offsetWidth;
    entry.card.classList.add("card--flash");
    const key = sortKey(data);
    if (key !== entry.key) {
      entry.key = key;
      this.place(entry);
    }
    return { kind: "revised", card: entry.card, data };
  }

  render(entry, event) {
    const data = entry.data;
    const pattern = this.options.watch();
    const watched = pattern ? this.watchMatches(data, pattern) : [];
    const titleId = `t-${data.id}`;
    const card = h("article", {
      class: `card${watched.length ? " card--watch" : ""}${entry.type === TYPE_DELETED ? " card--deleted" : ""} card--flash`,
      tabindex: "-1",
      "aria-labelledby": titleId,
      dataset: {
        id: data.id,
        eventId: event.id,
        type: entry.type.replace("telex.update.", ""),
        edits: String(entry.edits),
        hash: data.content_hash || "",
        source: data.source_id,
      },
    });
    card.style.setProperty("--source-hue", String(sourceHue(data.source_id || "")));
    const meta = h(
      "header",
      { class: "card__meta" },
      timeElement(data),
      h("button", {
        type: "button",
        class: "source",
        title: `Show only ${data.source_id}`,
        dataset: { field: "sources", value: data.source_id },
        text: data.source_id,
      }),
      data.language
        ? h("button", {
            type: "button",
            class: "lang",
            title: `${languageName(data.language)}: show only this language`,
            "aria-label": `Language ${languageName(data.language)}: show only this language`,
            dataset: { field: "languages", value: data.language },
            text: data.language.toUpperCase(),
          })
        : null,
      entry.edits
        ? h("span", {
            class: "badge badge--edited",
            title: "The source changed this update after publishing it",
            text: entry.edits > 1 ? `Edited ×${entry.edits}` : "Edited",
          })
        : null,
      entry.type === TYPE_DELETED ? h("span", { class: "badge badge--deleted", text: "Removed at source" }) : null,
      watched.length ? h("span", { class: "badge badge--watch", text: `Watch: ${watched.join(", ")}` }) : null,
      data.url
        ? h("a", {
            class: "card__link",
            href: safeUrl(data.url),
            target: "_blank",
            rel: "noopener noreferrer",
            text: "Source ↗",
            "aria-label": `Open this update at ${data.source_id}`,
          })
        : null,
    );
    const heading = data.title
      ? h("h3", { id: titleId, class: "card__title" }, marked(data.title, pattern))
      : h("h3", { id: titleId, class: "visually-hidden", text: `${data.source_id}, ${data.time_raw || ""}` });
    const paras = paragraphs(data.text, pattern);
    const body = h("div", { class: "card__text" }, paras[0]);
    if (paras.length > 1) {
      // Long entries show their first paragraph; the rest is a click away.
      const open = () => Boolean(entry.expanded);
      const moreId = `m-${data.id}`;
      const rest = h("div", { class: "card__more", id: moreId, hidden: !open() }, paras.slice(1));
      const more = paras.length - 1;
      const button = h("button", {
        type: "button",
        class: "card__expand",
        "aria-controls": moreId,
        "aria-expanded": String(open()),
        text: open() ? "Show less" : `Read more · ${more} ${more === 1 ? "paragraph" : "paragraphs"}`,
        onclick: () => {
          entry.expanded = !open();
          rest.hidden = !entry.expanded;
          button.setAttribute("aria-expanded", String(entry.expanded));
          button.textContent = entry.expanded ? "Show less" : `Read more · ${more} ${more === 1 ? "paragraph" : "paragraphs"}`;
        },
      });
      body.append(rest, button);
    }
    const quotes = (data.quotes || []).length
      ? h(
          "ul",
          { class: "quotes", "aria-label": "Quotes" },
          data.quotes.map((q) =>
            h(
              "li",
              {},
              h("q", {}, marked(q.text, pattern)),
              q.speaker ? h("span", { class: "quotes__speaker" }, " — ", h("cite", { text: q.speaker })) : null,
            ),
          ),
        )
      : null;
    const entities = distinctEntities(data.entities);
    const named = new Set(entities.map((e) => e.text.toLowerCase()));
    const tags = (data.tags || []).filter((t) => !named.has(t)).slice(0, MAX_TAGS);
    const chips =
      entities.length || tags.length
        ? h(
            "div",
            { class: "chips" },
            entities.map((e) =>
              h(
                "button",
                {
                  type: "button",
                  class: `chip chip--${e.type}`,
                  dataset: { field: "entities", value: e.text },
                  title: `${e.type}: show only updates about ${e.text}`,
                },
                h("span", { class: "chip__kind", "aria-hidden": "true", text: kindMark(e.type) }),
                h("span", { class: "visually-hidden", text: `${e.type} ` }),
                e.text,
              ),
            ),
            tags.map((t) =>
              h("button", {
                type: "button",
                class: "tag",
                dataset: { field: "tags", value: t },
                title: `Tag: show only updates tagged ${t}`,
                text: `#${t}`,
              }),
            ),
          )
        : null;
    const diffs = entry.diffs.length
      ? h(
          "details",
          { class: "card__diff" },
          h("summary", { text: entry.diffs.length > 1 ? `What changed (${entry.diffs.length} edits)` : "What changed" }),
          entry.diffs
            .slice()
            .reverse()
            .map((d, i) =>
              h(
                "section",
                { class: "diff__edit" },
                entry.diffs.length > 1
                  ? h("h4", { text: `Edit ${entry.diffs.length - i}${d.at ? ` · seen ${timeFmt.format(new Date(d.at))}` : ""}` })
                  : null,
                diffView(d.diff),
              ),
            ),
        )
      : null;
    return append(card, [meta, heading, body, quotes, chips, diffs]);
  }

  watchMatches(data, pattern) {
    const found = new Map();
    const texts = [data.title || "", data.text || "", ...(data.quotes || []).map((q) => q.text)];
    for (const text of texts) {
      for (const m of text.matchAll(pattern)) found.set(m[1].toLowerCase(), m[1]);
    }
    return [...found.values()];
  }

  /** Put an update in its story group and the group in its place (newest first). */
  place(entry) {
    const storyId = entry.story || entry.data.story_id || `solo-${entry.data.id}`;
    entry.story = storyId;
    let story = this.stories.get(storyId);
    if (!story) {
      story = { el: h("li", { class: "story", dataset: { story: storyId } }), ids: [], key: -Infinity, seq: 0 };
      story.list = h("div", { class: "story__cards" });
      story.el.append(story.list);
      this.stories.set(storyId, story);
    }
    if (!story.ids.includes(entry.data.id)) story.ids.push(entry.data.id);
    const members = story.ids.map((id) => this.updates.get(id)).filter(Boolean);
    members.sort((a, b) => b.key - a.key || b.seq - a.seq);
    story.list.replaceChildren(...members.map((m) => m.card));
    story.key = members[0].key;
    story.seq = Math.max(...members.map((m) => m.seq));
    this.decorateStory(story, members);
    // Newest first; equal times keep arrival order, the later arrival on top.
    let before = null;
    for (const child of this.list.children) {
      if (child === story.el) continue;
      const other = this.stories.get(child.dataset.story);
      if (other && (other.key < story.key || (other.key === story.key && other.seq < story.seq))) {
        before = child;
        break;
      }
    }
    if (story.el.nextSibling !== before || story.el.parentNode !== this.list) this.list.insertBefore(story.el, before);
  }

  decorateStory(story, members) {
    const grouped = members.length > 1;
    story.el.classList.toggle("story--grouped", grouped);
    let head = story.el.querySelector(".story__head");
    if (!grouped) {
      head?.remove();
      return;
    }
    const sources = [...new Set(members.map((m) => m.data.source_id))];
    const older = members.length - 1;
    const expanded = story.el.classList.contains("story--open");
    const listId = `s-${story.el.dataset.story}`;
    story.list.id = listId;
    const toggle = h("button", {
      type: "button",
      class: "story__toggle",
      "aria-expanded": String(expanded),
      "aria-controls": listId,
      text: expanded ? "Hide earlier updates" : `Show ${older} earlier ${older === 1 ? "update" : "updates"}`,
      onclick: () => {
        story.el.classList.toggle("story--open");
        this.decorateStory(story, story.ids.map((id) => this.updates.get(id)).filter(Boolean).sort((a, b) => b.key - a.key || b.seq - a.seq));
      },
    });
    const label = h(
      "span",
      { class: "story__label" },
      `Same story · ${members.length} updates${sources.length > 1 ? ` from ${sources.length} sources` : ""}`,
    );
    const fresh = h("div", { class: "story__head" }, label, toggle);
    if (head) head.replaceWith(fresh);
    else story.el.append(fresh);
  }

  /** Re-render every card (the watch terms changed). */
  refresh() {
    for (const entry of this.updates.values()) {
      const fresh = this.render(entry, { id: entry.card.dataset.eventId });
      entry.card.replaceChildren(...fresh.childNodes);
      entry.card.className = fresh.className.replace(" card--flash", "");
    }
  }

  /** Drop the oldest stories beyond the cap, so a screen left open for days stays light. */
  trim() {
    if (this.events.size > MAX_EVENT_IDS) {
      // Insertion order: the oldest ids go first; a frame that old will not come again.
      let drop = this.events.size - MAX_EVENT_IDS / 2;
      for (const id of this.events) {
        if (drop-- <= 0) break;
        this.events.delete(id);
      }
    }
    while (this.updates.size > MAX_UPDATES && this.list.lastElementChild) {
      const el = this.list.lastElementChild;
      const story = this.stories.get(el.dataset.story);
      el.remove();
      if (!story) continue;
      this.stories.delete(el.dataset.story);
      for (const id of story.ids) this.updates.delete(id);
    }
  }
}

function append(el, children) {
  for (const c of children) if (c) el.append(c);
  return el;
}

function kindMark(type) {
  return { person: "●", place: "▲", org: "■", watch: "★" }[type] || "•";
}

/** Only http(s) links go in an href; anything else (javascript:...) becomes inert. */
function safeUrl(url) {
  try {
    const u = new URL(url);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : "#";
  } catch {
    return "#";
  }
}
