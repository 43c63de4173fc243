// The view's filter: the gateway's filter fields, read from and written to the page URL so a
// view can be shared. The query-string names are the gateway's own (comma-separated lists).

export const FIELDS = ["sources", "terms", "entities", "tags", "languages"];

const LABELS = {
  sources: "source",
  terms: "words",
  entities: "entity",
  tags: "tag",
  languages: "language",
};

/** Split a comma-separated list: trimmed, without blanks or repeats (case-insensitive). */
export function parseList(text) {
  const out = [];
  const seen = new Set();
  for (const part of String(text || "").split(",")) {
    const value = part.trim().replace(/\s+/g, " ");
    const key = value.toLowerCase();
    if (value && !seen.has(key)) {
      seen.add(key);
      out.push(value);
    }
  }
  return out;
}

/** The filter in a query string (`location.search`). */
export function fromQuery(search) {
  const params = new URLSearchParams(search);
  const filter = {};
  for (const field of FIELDS) {
    const values = parseList(params.getAll(field).join(","));
    if (values.length) filter[field] = values;
  }
  return filter;
}

/** The query-string parameters of a filter (only the fields that have values). */
export function toParams(filter) {
  const params = new URLSearchParams();
  for (const field of FIELDS) {
    if (filter[field]?.length) params.set(field, filter[field].join(","));
  }
  return params;
}

/** The number of values in a filter. */
export function size(filter) {
  return FIELDS.reduce((n, field) => n + (filter[field]?.length || 0), 0);
}

/** A copy of `filter` with `value` added to `field` (no repeat). */
export function withValue(filter, field, value) {
  const values = filter[field] || [];
  if (values.some((v) => v.toLowerCase() === value.toLowerCase())) return filter;
  return { ...filter, [field]: [...values, value] };
}

/** A copy of `filter` without `value` in `field`. */
export function withoutValue(filter, field, value) {
  const values = (filter[field] || []).filter((v) => v !== value);
  const next = { ...filter, [field]: values };
  if (!values.length) delete next[field];
  return next;
}

/** A short label of a field for people ("entity", "tag"...). */
export function label(field) {
  return LABELS[field] || field;
}
