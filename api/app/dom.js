// Small DOM helpers: elements are built with textContent only (never innerHTML), so nothing a
// Stripe event or a user typed can become markup; and the words shown for states, dates, roles.

/** h("tag.class", { attr: value, onclick: fn }, ...children) */
export function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  if (attrs === null || typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs)) {
    children.unshift(attrs);
    attrs = {};
  }
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's content. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** The zone dates are shown in: the chosen connection's (its posting day boundary), so a
 * finance team sees the dates its books use wherever they open the page; the browser's until
 * one is chosen. */
let zone;

/** Shows dates in `timeZone` (an IANA name); an unknown name keeps the browser's zone. */
export function setTimeZone(timeZone) {
  try {
    new Intl.DateTimeFormat(undefined, { timeZone });
    zone = timeZone;
  } catch {
    zone = undefined;
  }
}

/** A date-time from the API (RFC 3339, UTC) in the connection's time zone. */
export function when(s) {
  if (!s) return "—";
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) return s;
  return d.toLocaleString(undefined, {
    timeZone: zone,
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    timeZoneName: "short",
  });
}

/** Event and job states in plain words. */
export const STATUS_WORDS = {
  QUEUED: "Queued",
  RUNNING: "Running",
  WAITING: "Waiting for you",
  SUCCEEDED: "Done",
  FAILED: "Failed",
  IGNORED: "Not needed",
};

export function badge(status) {
  return h(
    "span.badge",
    { "data-status": String(status).toLowerCase() },
    STATUS_WORDS[status] ?? status,
  );
}

export const CONNECTION_WORDS = {
  DRAFT: "Draft (not posting yet)",
  ACTIVE: "Posting",
  PAUSED: "Paused",
};

export const ROLE_WORDS = {
  OWNER: "Owner (everything)",
  OPERATOR: "Operator (replay, mappings, pause)",
  VIEWER: "Viewer (reads only)",
};

/** What a Stripe event type is about, for a finance person. */
export function eventWords(type) {
  const words = {
    "invoice.paid": "Invoice paid",
    "invoice.payment_succeeded": "Invoice payment succeeded",
    "invoice.finalized": "Invoice finalized",
    "charge.succeeded": "Card payment",
    "charge.refunded": "Refund",
    "payment_intent.succeeded": "Payment",
    "customer.created": "New customer",
    "customer.updated": "Customer changed",
    "product.created": "New product",
    "product.updated": "Product changed",
  };
  return words[type] ?? type;
}

/** A pretty JSON block (text, never markup). */
export function json(value) {
  return h("pre.json", value === null || value === undefined ? "—" : JSON.stringify(value, null, 2));
}

/** A collapsible section (closed by default). */
export function details(testid, title, content, open = false) {
  return h("details", { "data-testid": testid, open }, h("summary", title), content);
}
