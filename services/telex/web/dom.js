// Building DOM nodes without HTML strings: every piece of event text goes in as a text node.

/**
 * Create an element. `attrs`: "class", "text" (textContent), "dataset" (object),
 * "on<event>" (listener), anything else an attribute (true = present, null/false = absent).
 * Children: nodes or strings (strings become text nodes, never markup).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/** Append nodes and strings (as text) to `el`, skipping null, undefined and false. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Escape a string for use inside a RegExp. */
export function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * A matcher of whole words or phrases, any case (the gateway's `terms` semantics), or null
 * when `terms` is empty. Returns a global RegExp; group 1 is the matched term.
 */
export function termPattern(terms) {
  const parts = terms.filter(Boolean).map((t) => escapeRegExp(t).replace(/\s+/g, "\\s+"));
  if (!parts.length) return null;
  return new RegExp(`(?<![\\p{L}\\p{N}_])(${parts.join("|")})(?![\\p{L}\\p{N}_])`, "giu");
}

/** Text with every match of `pattern` wrapped in <mark>, as nodes. */
export function marked(text, pattern) {
  if (!pattern) return [text];
  const out = [];
  let last = 0;
  pattern.lastIndex = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > last) out.push(text.slice(last, match.index));
    out.push(h("mark", { text: match[0] }));
    last = match.index + match[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}
