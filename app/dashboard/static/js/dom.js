// Building the page: elements from plain data, and the formats every view shares.
// Text from the API is always set as text (text nodes, attributes), never parsed as HTML.

/**
 * An element: h("p", {class: "note"}, "text", child, ...). Attributes whose value is null,
 * undefined or false are left out; `on*` functions become listeners; `dataset` sets data-*.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name === "class") {
      el.className = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace what `el` holds. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const NUMBER = new Intl.NumberFormat("en", { maximumFractionDigits: 2 });
const ONE_DECIMAL = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });
const DATE = new Intl.DateTimeFormat("en-GB", { day: "numeric", month: "short", year: "numeric" });
const DATE_TIME = new Intl.DateTimeFormat("en-GB", {
  day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit",
});

/** A number as the dashboard shows it (at most 2 decimals); "–" when there is none. */
export function num(value) {
  return value === null || value === undefined ? "–" : NUMBER.format(value);
}

/** A share 0–1 as a percentage with one decimal ("68.3%"). */
export function percent(share) {
  return share === null || share === undefined ? "–" : `${ONE_DECIMAL.format(100 * share)}%`;
}

/** A percentage already in 0–100. */
export function pct(value) {
  return value === null || value === undefined ? "–" : `${ONE_DECIMAL.format(value)}%`;
}

/** "2026-11-23" (a calendar day, as the API sends dates) → "23 Nov 2026". */
export function day(isoDate) {
  if (!isoDate) return "–";
  const [y, m, d] = isoDate.split("-").map(Number);
  return DATE.format(new Date(y, m - 1, d));
}

const SHORT = new Intl.DateTimeFormat("en-GB", {
  day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
});

/** A recent moment, briefly: "22 Nov, 14:05" (the browser's time zone). */
export function shortMoment(timestamp) {
  return timestamp ? SHORT.format(new Date(timestamp)) : "–";
}

/** An RFC 3339 timestamp in the browser's time zone. */
export function moment(timestamp) {
  return timestamp ? DATE_TIME.format(new Date(timestamp)) : "–";
}

/** Today in the browser's time zone, as the API writes dates ("2026-11-23"). */
export function today() {
  const now = new Date();
  const pad = (n) => String(n).padStart(2, "0");
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
}

/** A UCUM unit as a person reads it. */
export function unitLabel(unit) {
  return { "{score}": "points", deg: "°" }[unit] ?? unit;
}

/** A value with its unit as a person reads it: "1 point", "4 points", "3.5 cm", "40°". */
export function quantity(value, unit) {
  if (value === null || value === undefined) return "–";
  const label = unitLabel(unit);
  if (label === "points") return `${num(value)} ${value === 1 ? "point" : "points"}`;
  if (label === "°" || label === "%") return `${num(value)}${label}`;
  return `${num(value)} ${label}`;
}

const LABELS = { "non-responder": "non-responder", "intra-articular": "intra-articular" };

/** A code as words: "partial-responder" → "partial responder". */
export function words(code) {
  return code ? (LABELS[code] ?? code.replaceAll("-", " ")) : "–";
}

/** A status badge: text first (colour only repeats it). */
export function badge(code, kind = code) {
  return h("span", { class: `badge badge-${kind}` }, words(code));
}

/** A notice: kind "info", "error" or "success"; live so screen readers hear it. */
export function notice(kind, ...children) {
  return h(
    "div",
    { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" },
    ...children,
  );
}
