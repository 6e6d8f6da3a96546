// The pages. Each gets { app, view, rest, params, stale } and fills `view`; `stale()` says the
// person has moved on to another page while this one was loading.

import { gql, session, subscribe, ApiError } from "./graphql.js";
import {
  h, fill, when, badge, json, details, eventWords, STATUS_WORDS, CONNECTION_WORDS, ROLE_WORDS,
} from "./dom.js";

// ---------------------------------------------------------------------------------------------
// Forms with their user errors shown next to the fields.

/**
 * A field: { name, label, type, hint, value, options: [[value, label]], required, autocomplete }.
 * `type: "textarea"` makes a multi-line box, `type: "checkbox"` a box ticked when `value`.
 */
function field(f, prefix = "f") {
  const id = `${prefix}-${f.name}`;
  const common = { id, name: f.name, required: f.required, autocomplete: f.autocomplete, placeholder: f.placeholder };
  let input;
  if (f.options) {
    input = h("select", { id, name: f.name }, f.options.map(([v, l]) =>
      h("option", { value: v, selected: v === f.value }, l)));
  } else if (f.type === "textarea") {
    input = h("textarea", { ...common, rows: f.rows ?? 8, spellcheck: "false", value: f.value ?? "" });
  } else if (f.type === "checkbox") {
    // The label follows the box, as people expect of a tick box.
    return h("div.field.check", { "data-field": f.name },
      h("input", { id, name: f.name, type: "checkbox", checked: f.value }), " ",
      h("label", { for: id }, f.label), f.hint ? h("p.hint", f.hint) : null);
  } else {
    input = h("input", { ...common, type: f.type ?? "text", value: f.value ?? "" });
  }
  return h("div.field", { "data-field": f.name },
    h("label", { for: id }, f.label), input, f.hint ? h("p.hint", f.hint) : null);
}

/** A form whose submit runs `onSubmit(values, form)`; an ApiError shows at its top. */
function form(testid, fields, submitLabel, onSubmit) {
  const el = h("form", { "data-testid": testid, novalidate: true },
    h("p.form-error", { hidden: true }), fields.map((f) => field(f, `f-${testid}`)),
    h("button", { type: "submit" }, submitLabel));
  el.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(el);
    const button = el.querySelector("button[type=submit]");
    button.disabled = true;
    const values = Object.fromEntries(new FormData(el).entries());
    try {
      await onSubmit(values, el);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      formError(el, err.message);
    } finally {
      button.disabled = false;
    }
  });
  return el;
}

function clearErrors(el) {
  el.querySelectorAll(".field-error").forEach((e) => e.remove());
  const top = el.querySelector(".form-error");
  top.hidden = true;
  top.replaceChildren();
}

function formError(el, message) {
  const top = el.querySelector(".form-error");
  top.hidden = false;
  top.append(h("span", message), " ");
}

/** Puts each user error next to its field (the last part of its path), else at the top. */
function showUserErrors(el, userErrors) {
  for (const e of userErrors) {
    // The field's name: the last part of the path that is not a list index.
    const name = e.field.findLast((part) => !/^\d+$/.test(part)) ?? "";
    const box = el.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
    if (box) box.append(h("p.field-error", { "data-testid": `error-${name}`, role: "alert" }, e.message));
    else formError(el, e.message);
  }
  return userErrors.length > 0;
}

/** A user error of an action (no form): the notice line. */
function actionErrors(app, userErrors) {
  if (!userErrors.length) return false;
  app.notice(userErrors.map((e) => e.message).join("; "), "warn");
  return true;
}

// ---------------------------------------------------------------------------------------------
// Signing up, in, and accepting an invitation.

/** Signed in: a new company goes on to the setup wizard, anyone else to the overview. */
function startSession(app, payload, next = "#/") {
  session.start(payload.csrfToken);
  app.viewer = null;
  app.clearNotice();
  app.go(next);
}

// A sign-up link may carry the new connection's settings (`#/signup?preset=<base64url JSON>`,
// e.g. from a reseller or the demo). They are kept in this tab until the wizard makes the
// connection with them.
const PRESET_KEY = "mlc.preset";

function decodePreset(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(text.length / 4) * 4, "=");
  const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
  const value = JSON.parse(new TextDecoder().decode(bytes));
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("not an object");
  return value;
}

/** The preset settings kept from the sign-up link, or null. */
function preset() {
  try {
    return JSON.parse(sessionStorage.getItem(PRESET_KEY) ?? "null");
  } catch {
    return null;
  }
}

export async function signIn({ app, view }) {
  fill(view,
    h("h1", "Sign in"),
    form("sign-in", [
      { name: "email", label: "Email", type: "email", autocomplete: "username", required: true },
      { name: "password", label: "Password", type: "password", autocomplete: "current-password", required: true },
      { name: "companyId", label: "Company ID (only if you belong to several)", hint: "Leave empty to open the first company you joined." },
    ], "Sign in", async (v, el) => {
      const { signIn } = await gql("SignIn", {
        email: v.email, password: v.password, companyId: v.companyId || null,
      });
      if (!showUserErrors(el, signIn.userErrors)) startSession(app, signIn);
    }),
    h("p", "New here? ", h("a", { href: "#/signup" }, "Create an account for your company")),
    h("p.muted", "For your security, a new tab or window asks you to sign in again."));
}

function slug(name) {
  return name.toLowerCase().normalize("NFKD").replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40);
}

export async function signUp({ app, view, params }) {
  let presetNote = null;
  if (params.get("preset")) {
    try {
      sessionStorage.setItem(PRESET_KEY, JSON.stringify(decodePreset(params.get("preset"))));
      presetNote = h("p.muted", { "data-testid": "preset" },
        "This link comes with settings for your connection: the setup after sign-up uses them.");
    } catch {
      presetNote = h("p.error", "The settings in this link cannot be read: you can still sign up and set up by hand.");
    }
  }
  const f = form("sign-up", [
    { name: "companyName", label: "Company name", required: true },
    { name: "companyId", label: "Company ID", hint: "Lower-case letters, digits, - and _: how the service names your company (e.g. acme).", required: true },
    { name: "email", label: "Your email", type: "email", autocomplete: "username", required: true },
    { name: "password", label: "Password", type: "password", autocomplete: "new-password", required: true,
      hint: "12 characters or more. A few unrelated words make a good one." },
  ], "Create my account", async (v, el) => {
    const { signUp } = await gql("SignUp", v);
    if (!showUserErrors(el, signUp.userErrors)) startSession(app, signUp, "#/setup");
  });
  const name = f.querySelector("[name=companyName]");
  const id = f.querySelector("[name=companyId]");
  id.addEventListener("input", () => (id.dataset.touched = "1"));
  name.addEventListener("input", () => {
    if (!id.dataset.touched) id.value = slug(name.value);
  });
  fill(view, h("h1", "Create an account"), presetNote, f,
    h("p", "Have an account? ", h("a", { href: "#/signin" }, "Sign in")));
}

export async function acceptInvitation({ app, view, params }) {
  fill(view, h("h1", "Join your team"),
    h("p", "Choose a password (or type your own, if you have an account already)."),
    form("accept", [
      { name: "token", label: "Invitation", value: params.get("token") ?? "", required: true },
      { name: "password", label: "Password", type: "password", autocomplete: "new-password", required: true },
    ], "Join", async (v, el) => {
      const { invitationAccept } = await gql("InvitationAccept", v);
      if (!showUserErrors(el, invitationAccept.userErrors)) startSession(app, invitationAccept);
    }));
}

export async function notFound({ view }) {
  fill(view, h("h1", "Not found"), h("p", h("a", { href: "#/" }, "Back to the overview")));
}

// ---------------------------------------------------------------------------------------------
// Overview.

const COUNT_WORDS = [
  ["failed", "Failed", "#/failed"],
  ["waiting", "Waiting for you", "#/waiting"],
  ["queued", "Queued", null],
  ["running", "Running", null],
  ["succeeded", "Done", null],
];

function counts(jobCounts) {
  return h("div.counts", COUNT_WORDS.map(([k, label, href]) =>
    h(href ? "a.count" : "div.count", { href, "data-testid": `count-${k}` },
      h("span.n", String(jobCounts[k])), h("span.label", label))));
}

function noConnection(view) {
  view.append(h("p.empty", { "data-testid": "no-connections" },
    "No connection yet. ", h("a", { href: "#/setup" }, "Connect Stripe to NetSuite"), " to start."));
}

function ago(secs) {
  if (secs === null || secs === undefined) return "—";
  if (secs < 90) return `${secs} seconds ago`;
  if (secs < 5400) return `${Math.round(secs / 60)} minutes ago`;
  return `${Math.round(secs / 3600)} hours ago`;
}

function health(c) {
  const hl = c.health;
  const lastTest = hl.lastTestAt
    ? `${hl.lastTestOk ? "passed" : "failed"} ${when(hl.lastTestAt)}${hl.lastTestMessage ? `: ${hl.lastTestMessage}` : ""}`
    : "never tested";
  const rows = [
    ["Last test", lastTest],
    ["NetSuite login", hl.netsuiteTokenIssuedAt ? `valid, obtained ${ago(hl.netsuiteTokenAgeSecs)}` : "not signed in yet"],
    ["Work in progress", `${hl.queueDepth ?? 0} queued or running`],
  ];
  if (hl.lastStripeError) rows.push(["Last Stripe error", `${when(hl.lastStripeError.at)}: ${hl.lastStripeError.message}`]);
  if (hl.lastNetsuiteError) rows.push(["Last NetSuite error", `${when(hl.lastNetsuiteError.at)}: ${hl.lastNetsuiteError.message}`]);
  else if (hl.lastError) rows.push(["Last error", `${when(hl.lastErrorAt)}: ${hl.lastError}`]);
  return h("dl.health", { "data-testid": "health" }, rows.map(([k, v]) => [h("dt", k), h("dd", v)]));
}

function activity(stats) {
  const max = Math.max(1, ...stats.activity.map((a) => Math.max(a.eventsReceived, a.recordsPosted)));
  const busy = stats.activity.filter((a) => a.eventsReceived || a.recordsPosted);
  return h("table.activity", { "data-testid": "activity" },
    h("caption", `Last 24 hours: ${stats.events} events stored in all`),
    h("thead", h("tr", h("th", "Hour"), h("th", "Stripe events received"), h("th", "NetSuite records posted"))),
    h("tbody", busy.length ? busy.map((a) => h("tr",
      h("td", when(a.hourStart)),
      h("td", h("meter", { min: 0, max, value: a.eventsReceived }), ` ${a.eventsReceived}`),
      h("td", h("meter", { min: 0, max, value: a.recordsPosted }), ` ${a.recordsPosted}`)))
      : h("tr", h("td", { colspan: 3 }, "Nothing in the last 24 hours."))));
}

export async function overview({ app, view, stale }) {
  view.append(h("h1", "Overview"));
  if (!app.connections.length) return noConnection(view);
  // Nothing posts yet: the way on is the setup wizard (owners set connections up).
  if (!app.connections.some((c) => c.status === "ACTIVE")) {
    view.append(h("p.setup-banner", { "data-testid": "setup-link" },
      "Nothing is posting to NetSuite yet. ",
      app.isOwner ? h("a", { href: "#/setup" }, "Finish the setup") : "An owner of your company can finish the setup.",
      app.isOwner ? ": connect Stripe and NetSuite, check, see if we fit, and go live." : null));
  }
  const all = await Promise.all(app.connections.map((c) => gql("ConnectionOverview", { id: c.id, hours: 24 })));
  if (stale()) return;
  for (const { connection: c } of all) {
    if (!c) continue;
    view.append(h("article.card", { "data-connection": c.handle },
      h("h2", `${c.name} `, h("span.state", { "data-state": c.status.toLowerCase() }, CONNECTION_WORDS[c.status])),
      counts(c.jobCounts), health(c), activity(c.stats)));
  }
}

// ---------------------------------------------------------------------------------------------
// Events, the failed and waiting lists, and live updates.

const PAGE = 25;

function eventRow(app, e) {
  const tr = h("tr", { "data-event-id": e.eventId, "data-id": e.id });
  drawEventRow(app, tr, e);
  return tr;
}

function drawEventRow(app, tr, e) {
  const replayable = app.canAct && (e.status === "FAILED" || e.status === "WAITING");
  fill(tr,
    h("td", when(e.receivedAt)),
    h("td", h("a", { href: `#/event/${encodeURIComponent(e.id)}` }, eventWords(e.eventType)),
      h("div.muted", e.eventId)),
    h("td", e.objectId ?? "—"),
    h("td", { "data-testid": "status" }, badge(e.status)),
    h("td", String(e.attempts)),
    h("td.error-text", e.lastError ?? ""),
    h("td", replayable
      ? h("button", { type: "button", "data-testid": "replay", onclick: () => replay(app, e, tr) }, "Replay")
      : null));
}

async function replay(app, e, tr) {
  const { eventReplay } = await gql("EventReplay", { connectionId: app.connectionId, eventId: e.eventId });
  if (actionErrors(app, eventReplay.userErrors)) return;
  app.notice(eventReplay.queued
    ? `${e.eventId} is queued for replay: its status updates here by itself.`
    : `${e.eventId} has nothing left to do.`);
  if (tr && eventReplay.queued) drawEventRow(app, tr, { ...e, status: "QUEUED", lastError: null });
}

function liveBadge() {
  return h("span.live", { "data-testid": "live", "data-state": "connecting" }, "Connecting for live updates…");
}

function setLive(el, state, message) {
  el.setAttribute("data-state", state);
  fill(el, state === "live" ? "Live: updates appear as they happen"
    : state === "reconnecting" ? "Reconnecting…" : `Live updates stopped${message ? `: ${message}` : ""}`);
}

export async function events({ app, view, params, stale }, preset) {
  const title = preset === "FAILED" ? "Failed" : preset === "WAITING" ? "Waiting for you" : "Events";
  view.append(h("h1", title));
  if (preset === "FAILED") view.append(h("p.muted", "Sales NetSuite or Stripe refused. Fix the cause, then replay: what already posted is never posted twice."));
  if (preset === "WAITING") view.append(h("p.muted", "Sales waiting for something only a person can give, usually a product mapping (see Mappings). They post by themselves once it is there."));
  if (!app.connectionId) return noConnection(view);
  const base = preset === "FAILED" ? "#/failed" : preset === "WAITING" ? "#/waiting" : "#/events";
  const filter = {};
  const status = preset ?? params.get("status");
  if (status) filter.status = status;
  if (params.get("type")) filter.eventType = params.get("type");
  if (params.get("stripe")) filter.stripeId = params.get("stripe");
  if (params.get("netsuite")) filter.netsuiteId = params.get("netsuite");
  const after = params.get("after");

  if (!preset) {
    const f = h("form.filters", { "data-testid": "filters" },
      field({ name: "status", label: "Status", value: status ?? "",
        options: [["", "Any"], ...Object.entries(STATUS_WORDS)] }),
      field({ name: "type", label: "Stripe event type", value: params.get("type") ?? "", placeholder: "invoice.paid" }),
      field({ name: "stripe", label: "Stripe ID", value: params.get("stripe") ?? "", placeholder: "evt_…, in_…, ch_…, cus_…" }),
      field({ name: "netsuite", label: "NetSuite ID", value: params.get("netsuite") ?? "", placeholder: "internal ID or stripe_…" }),
      h("button", { type: "submit" }, "Search"));
    f.addEventListener("submit", (e) => {
      e.preventDefault();
      const q = new URLSearchParams();
      for (const [k, v] of new FormData(f).entries()) if (v.trim()) q.set(k, v.trim());
      app.go(`${base}?${q}`);
    });
    view.append(f);
  }
  const live = liveBadge();
  view.append(live);

  const data = await gql("Events", { connectionId: app.connectionId, first: PAGE, after, filter });
  if (stale()) return;
  const page = data.connection?.events;
  if (!page) return view.append(h("p.empty", "This connection is not there any more."));
  const tbody = h("tbody", page.edges.map(({ node }) => eventRow(app, node)));
  const table = h("table.events", { "data-testid": "events" },
    h("thead", h("tr", h("th", "Received"), h("th", "What"), h("th", "Stripe object"),
      h("th", "Status"), h("th", "Attempts"), h("th", "Last error"), h("th", ""))),
    tbody);
  const empty = h("p.empty", { "data-testid": "empty", hidden: page.edges.length > 0 },
    preset === "FAILED" ? "Nothing failed." : preset === "WAITING" ? "Nothing is waiting for you." : "No event matches.");
  view.append(table, empty);
  const q = new URLSearchParams(params);
  const nav = h("p.paging");
  if (after) {
    q.delete("after");
    nav.append(h("a", { href: `${base}?${q}`, "data-testid": "first-page" }, "← First page"), " ");
  }
  if (page.pageInfo.hasNextPage) {
    q.set("after", page.pageInfo.endCursor);
    nav.append(h("a", { href: `${base}?${q}`, "data-testid": "next-page" }, "Next page →"));
  }
  view.append(nav);

  // Live: rows change state in place; new events appear on the first page of a plain list.
  const plain = !after && !filter.eventType && !filter.stripeId && !filter.netsuiteId;
  app.cleanups.push(subscribe("EventUpdated", { connectionId: app.connectionId }, ({ eventUpdated: e }) => {
    const row = tbody.querySelector(`tr[data-id="${CSS.escape(e.id)}"]`);
    if (row) {
      drawEventRow(app, row, e);
      row.classList.add("changed");
    } else if (plain && (!status || e.status === status)) {
      tbody.prepend(eventRow(app, e));
      empty.hidden = true;
    }
  }, (state, message) => setLive(live, state, message)));
}

export async function event({ app, view, rest, stale }) {
  const id = rest[0];
  const draw = async () => {
    const { event: e } = await gql("Event", { id });
    if (stale()) return;
    if (!e) return fill(view, h("h1", "Event not found"), h("p", "This company has no event by that ID."));
    const replayable = app.canAct && e.job && e.job.state !== "RUNNING" && e.job.state !== "QUEUED";
    fill(view,
      h("p", h("a", { href: "#/events" }, "← Events")),
      h("h1", `${eventWords(e.eventType)} `, h("span.muted", e.eventId)),
      h("dl.facts",
        h("dt", "Status"), h("dd", { "data-testid": "event-status" }, badge(e.status)),
        h("dt", "Stripe event type"), h("dd", e.eventType),
        h("dt", "Stripe object"), h("dd", e.objectId ?? "—"),
        h("dt", "Received"), h("dd", when(e.receivedAt)),
        h("dt", "Deliveries from Stripe"), h("dd", String(e.deliveries)),
        e.livemode ? null : [h("dt", "Mode"), h("dd", "Test data")]),
      e.job ? h("section", { "data-testid": "job" }, h("h2", "Posting job"),
        h("dl.facts",
          h("dt", "State"), h("dd", badge(e.job.state)),
          h("dt", "Attempts"), h("dd", `${e.job.attempts} of ${e.job.maxAttempts}`),
          h("dt", "Next try"), h("dd", when(e.job.nextRunAt)),
          h("dt", "Last error"), h("dd.error-text", e.job.lastError ?? "—")),
        replayable ? h("button", { type: "button", "data-testid": "replay",
          onclick: () => replay(app, { eventId: e.eventId, id: e.id }, null) }, "Replay") : null)
        : h("p.muted", "Nothing to post for this event type: it is stored and audited only."),
      h("h2", "What happened"),
      h("table.audit", { "data-testid": "audit" },
        h("thead", h("tr", h("th", "When"), h("th", "Step"), h("th", "Details"))),
        h("tbody", e.auditTrail.map((a) => h("tr", h("td", when(a.at)), h("td", a.step), h("td", a.message))))),
      details("raw-event", "The event as Stripe sent it", json(e.rawEvent)),
      details("stripe-object", "The Stripe object, as fetched from Stripe", json(e.stripeObject)),
      details("netsuite-request", "What was sent to NetSuite", json(e.netsuiteRequest)),
      details("netsuite-response", "NetSuite's answer", json(e.netsuiteResponse)));
  };
  await draw();
  if (app.connectionId) {
    app.cleanups.push(subscribe("EventUpdated", { connectionId: app.connectionId }, ({ eventUpdated }) => {
      if (eventUpdated.id === id) draw();
    }));
  }
}

// ---------------------------------------------------------------------------------------------
// Mappings.

export async function mappings({ app, view, stale }) {
  view.append(h("h1", "Mappings"));
  if (!app.connectionId) return noConnection(view);
  const [u, m] = await Promise.all([
    gql("UnmappedProducts", { id: app.connectionId, first: 50 }),
    gql("ProductMappings", { id: app.connectionId, first: 50 }),
  ]);
  if (stale()) return;
  const unmapped = u.connection?.unmappedProducts.nodes ?? [];
  view.append(h("h2", "Products without a NetSuite item"),
    h("p.muted", "Sales of these products wait until you tell which NetSuite item they are; they post as soon as you do."));
  if (!unmapped.length) view.append(h("p.empty", { "data-testid": "no-unmapped" }, "Every product has its item."));
  else view.append(h("table", { "data-testid": "unmapped" },
    h("thead", h("tr", h("th", "Stripe product"), h("th", "Sales waiting"), h("th", "Amount waiting"),
      h("th", "First seen"), h("th", "NetSuite item"))),
    h("tbody", unmapped.map((p) => {
      const f = h("form.inline",
        h("input", { name: "netsuite_item_id", "aria-label": "NetSuite item internal ID",
          placeholder: "item internal ID", inputmode: "numeric", required: true }),
        h("button", { type: "submit", "data-testid": "map" }, "Map"));
      f.addEventListener("submit", async (e) => {
        e.preventDefault();
        const { productMappingSet: r } = await gql("ProductMappingSet", {
          connectionId: app.connectionId, stripeProductId: p.stripeProductId,
          netsuiteItemId: f.netsuite_item_id.value.trim(),
        });
        if (actionErrors(app, r.userErrors)) return;
        app.notice(`${p.name ?? p.stripeProductId} is mapped: ${r.releasedJobs} waiting sale(s) released, posting now.`);
        app.go("#/mappings");
      });
      return h("tr", { "data-product": p.stripeProductId },
        h("td", p.name ?? "", h("div.muted", p.stripeProductId)),
        h("td", String(p.waitingEventIds.length)),
        h("td", p.waitingAmounts.map((a) => a.display).join(", ") || "—"),
        h("td", when(p.firstSeenAt)),
        h("td", app.canAct ? f : "ask an operator"));
    }))));
  const maps = m.connection?.productMappings.nodes ?? [];
  view.append(h("h2", "Products and their NetSuite items"),
    h("table", { "data-testid": "mappings" },
      h("thead", h("tr", h("th", "Stripe product"), h("th", "NetSuite item"), h("th", "How"), h("th", "Since"))),
      h("tbody", maps.length ? maps.map((x) => h("tr", h("td", x.stripeId), h("td", x.netsuiteId),
        h("td", x.source === "manual" ? "set by a person" : x.source), h("td", when(x.updatedAt))))
        : h("tr", h("td", { colspan: 4 }, "None yet.")))));
}

// ---------------------------------------------------------------------------------------------
// Connections: health, the test ("ping your systems"), pause and resume, a new one.

const CHECK_WORDS = { PASS: "OK", WARN: "Warning", FAIL: "Problem", SKIPPED: "Not checked" };

/** Runs the connection test into `checks` (each check with its fix); returns whether all passed. */
async function runTest(app, connectionId, checks) {
  fill(checks, h("p.muted", "Testing…"));
  const { connectionTest: r } = await gql("ConnectionTest", { connectionId });
  if (actionErrors(app, r.userErrors)) {
    fill(checks);
    return false;
  }
  fill(checks,
    h("p", { "data-testid": "test-result", "data-ok": String(r.result.ok) },
      r.result.ok ? "Everything works." : "Something needs fixing:", " ", h("span.muted", when(r.result.checkedAt))),
    h("ul", r.result.checks.map((k) => h("li", { "data-check": k.code, "data-status": k.status.toLowerCase() },
      h("strong", `${CHECK_WORDS[k.status] ?? k.status}: `), `${k.name}: ${k.message}`,
      k.fix ? h("div.fix", `How to fix: ${k.fix}`) : null))));
  return r.result.ok;
}

export async function connections({ app, view, stale }) {
  const data = await gql("Connections", { first: 25 });
  if (stale()) return;
  const list = data.connections.edges.map((e) => e.node);
  view.append(h("h1", "Connections"),
    h("p.muted", "Each connection posts one Stripe account into one NetSuite account."));
  const box = h("div", { "data-testid": "connections" });
  if (!list.length) box.append(h("p.empty", { "data-testid": "no-connections" }, "No connection yet."));
  for (const c of list) {
    const checks = h("div.checks");
    const test = () => runTest(app, c.id, checks).catch(shown(app));
    const pauseResume = async (op) => {
      const payload = Object.values(await gql(op, { connectionId: c.id }))[0];
      if (actionErrors(app, payload.userErrors)) return;
      app.notice(op === "ConnectionPause" ? `${c.name} is paused: events are kept and post when you resume.`
        : `${c.name} posts again${payload.releasedJobs ? `: ${payload.releasedJobs} waiting sale(s) released` : ""}.`);
      app.viewer = null;
      app.go("#/connections");
    };
    box.append(h("article.card", { "data-handle": c.handle },
      h("h2", `${c.name} `, h("span.muted", c.handle), " ",
        h("span.state", { "data-state": c.status.toLowerCase() }, CONNECTION_WORDS[c.status])),
      h("dl.facts",
        h("dt", "Stripe sends its events to"), h("dd", h("code", c.webhookPath)),
        h("dt", "NetSuite account"), h("dd", c.netsuiteAccount ?? "not set"),
        h("dt", "Created"), h("dd", when(c.createdAt))),
      h("p.links",
        h("a", { href: `#/connection/${encodeURIComponent(c.id)}`, "data-testid": "connection-details" },
          "Settings, credentials and replay"),
        c.status === "DRAFT" && app.isOwner
          ? [" · ", h("a", { href: `#/setup?connection=${encodeURIComponent(c.id)}`, "data-testid": "continue-setup" },
            "Continue the setup")] : null),
      counts(c.jobCounts),
      health({ health: { ...c.health, queueDepth: c.jobCounts.queued + c.jobCounts.running } }),
      app.canAct ? h("p.actions",
        h("button", { type: "button", "data-testid": "test", onclick: test }, "Test"), " ",
        c.status === "ACTIVE"
          ? h("button", { type: "button", onclick: () => pauseResume("ConnectionPause") }, "Pause")
          : h("button", { type: "button", onclick: () => pauseResume("ConnectionResume") }, "Start posting")) : null,
      checks));
  }
  view.append(box);
  if (app.isOwner) {
    view.append(h("h2", "Add a connection"),
      h("p", "The easiest way is ", h("a", { href: "#/setup", "data-testid": "setup-wizard" }, "the setup wizard"),
        ": it connects Stripe and NetSuite step by step, checks them, and shows what would be posted before anything is. Or add a draft here and set it up yourself."),
      form("connection-create", [
        { name: "name", label: "Name", placeholder: "Production", required: true },
        { name: "handle", label: "ID", hint: "Lower-case letters, digits, - and _ (e.g. production).", required: true },
      ], "Add connection", async (v, el) => {
        const { connectionCreate: r } = await gql("ConnectionCreate", { input: { handle: v.handle, name: v.name || null } });
        if (showUserErrors(el, r.userErrors)) return;
        app.notice(`${r.connection.name} is added as a draft. Give Stripe the webhook address ${r.connection.webhookUrl ?? r.connection.webhookPath}, set its credentials, test it, then start posting.`);
        sessionStorage.setItem("mlc.connection", r.connection.id);
        app.viewer = null;
        app.go("#/connections");
      }));
  }
}

// ---------------------------------------------------------------------------------------------
// The setup wizard (#/setup?step=…): Stripe, NetSuite, check, "see if we fit", go live. It works
// on one draft connection (made by its first step when there is none), and every step can be
// revisited: the step list shows what is done, from the connection's own state.

const STEPS = [
  ["stripe", "Stripe"],
  ["netsuite", "NetSuite"],
  ["check", "Check"],
  ["dry-run", "See if we fit"],
  ["live", "Go live"],
];

/** What is done, read from the connection (null: not made yet). */
function stepsDone(c) {
  const creds = new Set((c?.credentials ?? []).map((x) => x.name));
  return {
    stripe: creds.has("stripe/api_key") && creds.has("stripe/webhook_secrets"),
    netsuite: Boolean(c?.netsuiteCertificate?.certificateId) || creds.has("netsuite/token_secret"),
    check: c?.health.lastTestOk === true,
    "dry-run": c?.dryRun?.state === "SUCCEEDED",
    live: c?.status === "ACTIVE",
  };
}

/** The connection the wizard works on: the one asked for, else the chosen draft, else any draft. */
function wizardConnectionId(app, params) {
  const asked = params.get("connection");
  if (asked && app.connections.some((c) => c.id === asked)) {
    app.connectionId = asked;
    sessionStorage.setItem("mlc.connection", asked);
  }
  const chosen = app.connection();
  // Going live makes it active: its last step still shows it (and the backfill).
  if (chosen && (chosen.status === "DRAFT" || asked || params.get("step") === "live")) return chosen.id;
  return app.connections.find((c) => c.status === "DRAFT")?.id ?? null;
}

function stepHref(step) {
  return `#/setup?step=${step}`;
}

/** Keeps the step list in step with a result shown without drawing the page again. */
function markDone(step, done) {
  document.querySelector(`[data-testid=steps] [data-step="${step}"]`)?.setAttribute("data-done", String(done));
}

function nextLink(step, label) {
  return h("p.next", h("a.button", { href: stepHref(step), "data-testid": "next" }, label));
}

/**
 * Calls `tick()` every `ms` until it returns true or `over()` says the page moved on.
 * An API error ends it and is shown in the notice line (a lost session signs out as usual).
 */
function poll(app, ms, over, tick) {
  let timer = null;
  let ended = false;
  const run = async () => {
    if (ended || over()) return;
    let done = true;
    try {
      done = await tick();
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      app.notice(e.message, "warn");
    }
    if (!done && !ended && !over()) timer = setTimeout(run, ms);
  };
  app.cleanups.push(() => {
    ended = true;
    clearTimeout(timer);
  });
  timer = setTimeout(run, ms);
}

export async function setup(ctx) {
  const { app, view, params, stale } = ctx;
  view.append(h("h1", "Connect Stripe to NetSuite"));
  if (!app.isOwner) {
    return view.append(h("p", "Only an owner of your company can set a connection up. Ask one of them."));
  }
  const body = h("div");
  view.append(body);
  // Each draw replaces the last; a poll of an earlier draw stops by itself.
  let drawn = 0;
  const draw = async (extra = {}) => {
    const mine = ++drawn;
    // Drawn again: the same connection (going live makes it active, and it is still shown).
    const id = extra.id ?? wizardConnectionId(app, params);
    const c = id ? (await gql("WizardConnection", { id })).connection : null;
    if (stale() || mine !== drawn) return;
    const done = stepsDone(c);
    // The step asked for, else the first not done. A step drawn again after a change stays
    // (its result is shown there, with a Next button), rather than jumping ahead by itself.
    const asked = extra.step
      ?? (STEPS.some(([s]) => s === params.get("step")) ? params.get("step") : null)
      ?? STEPS.find(([s]) => !done[s])?.[0] ?? "live";
    // Every step but the first needs the connection: before there is one, the first step.
    const step = c ? asked : "stripe";
    const over = () => stale() || mine !== drawn;
    const redraw = (more = {}) => draw({ step, id: c?.id, ...more });
    const stepCtx = { ...ctx, c, done, extra, over, redraw };
    const steps = { stripe: stepStripe, netsuite: stepNetsuite, check: stepCheck, "dry-run": stepDryRun, live: stepLive };
    fill(body,
      h("ol.steps", { "data-testid": "steps" }, STEPS.map(([s, label]) =>
        h("li", { "data-step": s, "data-done": String(done[s]), "aria-current": s === step ? "step" : undefined },
          c || s === "stripe" ? h("a", { href: stepHref(s) }, label) : label))),
      steps[step](stepCtx));
  };
  await draw();
}

/** Makes the wizard's connection, with the sign-up link's preset settings; it, or null. */
async function createConnection(app, name, el) {
  const handle = slug(name) || "production";
  const { connectionCreate: r } = await gql("ConnectionCreate", {
    input: { handle, name: name.trim(), settings: preset() },
  });
  // The ID is made from the name here, so its errors belong next to the name.
  const errors = r.userErrors.map((e) =>
    ["handle", "name"].includes(e.field.at(-1)) ? { ...e, field: ["connectionName"] } : e);
  if (showUserErrors(el, errors)) return null;
  sessionStorage.removeItem(PRESET_KEY);
  sessionStorage.setItem("mlc.connection", r.connection.id);
  await app.refreshShell();
  return r.connection;
}

const NAME_FIELD = {
  name: "connectionName", label: "A name for this connection", value: "Production", required: true,
  hint: "For you and your team, e.g. the company or the Stripe account it posts.",
};

function stepStripe({ app, c, done, extra, redraw }) {
  let connectionId = c?.id ?? null;
  // The first form sent makes the connection: the name is asked no more, its address is known.
  const made = async (v, el) => {
    const created = await createConnection(app, v.connectionName ?? "", el);
    if (!created) return null;
    sec.querySelectorAll("[data-field=connectionName]").forEach((f) => f.remove());
    fill(sec.querySelector("[data-testid=webhook-address]"), webhookAddress(created));
    return created.id;
  };
  const key = c?.credentials.find((x) => x.name === "stripe/api_key");
  const sec = h("section.step", { "data-testid": "wizard-stripe" },
    h("h2", "1. Connect Stripe"),
    h("p", "We read your Stripe invoices and payments with a key of your Stripe account, and ask Stripe to tell us about new ones as they happen (a webhook). We never change anything in Stripe but that webhook."));
  if (key && !extra.stripe) {
    sec.append(h("p.done", { "data-testid": "stripe-done" },
      `Stripe is connected with the key ending in ${key.last4 ?? "…"}, saved ${when(key.setAt)}. Paste another key to change it.`));
  }
  const connect = form("stripe-connect", [
    ...(connectionId ? [] : [NAME_FIELD]),
    { name: "apiKey", label: "Stripe secret key or restricted key", type: "password", autocomplete: "off",
      placeholder: "sk_live_… or rk_live_…", required: true,
      hint: "In Stripe: Developers → API keys. A restricted key (rk_…) that may read invoices, charges, customers, products and balance transactions and write webhook endpoints is enough." },
  ], "Connect Stripe", async (v, el) => {
    connectionId ??= await made(v, el);
    if (!connectionId) return;
    const { stripeConnect: r } = await gql("StripeConnect", { input: { connectionId, apiKey: v.apiKey.trim() } });
    // No public address for Stripe to deliver to: the way on is the self-hosted form below.
    if (r.userErrors.some((e) => e.code === "NOT_CONFIGURED" && e.field.at(-1) === "connectionId")) {
      sec.querySelector("[data-testid=stripe-self-hosted]").open = true;
    }
    if (showUserErrors(el, r.userErrors)) return;
    await redraw({ stripe: r });
  });
  if (extra.stripe) {
    const r = extra.stripe;
    sec.append(h("div.result", { "data-testid": "stripe-result" },
      h("p.done", "Stripe is connected."),
      h("dl.facts",
        h("dt", "Stripe account"), h("dd", r.accountId),
        h("dt", "Mode"), h("dd", { "data-testid": "stripe-mode" }, r.livemode ? "Live: real money" : "Test mode: test data only"),
        h("dt", "Webhook endpoint"), h("dd", { "data-testid": "webhook-endpoint" },
          `${r.webhookEndpointId}, ${r.webhookEndpointCreated ? "created now" : "already there (made earlier)"}`),
        h("dt", "It delivers to"), h("dd", h("code", r.webhookUrl)))));
  }
  if (done.stripe) sec.append(nextLink("netsuite", "Next: NetSuite →"));
  sec.append(connect);

  // Self-hosted without a public address: Stripe cannot be asked to deliver here, so the
  // endpoint is made by hand in Stripe and its signing secret pasted.
  const manual = form("stripe-manual", [
    ...(connectionId ? [] : [NAME_FIELD]),
    { name: "apiKey", label: "Stripe secret key or restricted key", type: "password", autocomplete: "off", required: true },
    { name: "webhookSecrets", label: "The endpoint's signing secret", type: "password", autocomplete: "off",
      placeholder: "whsec_…", required: true, hint: "On the endpoint's page in Stripe: Signing secret → Reveal." },
  ], "Save", async (v, el) => {
    connectionId ??= await made(v, el);
    if (!connectionId) return;
    const { stripeCredentialsSet: r } = await gql("StripeCredentialsSet", {
      input: { connectionId, apiKey: v.apiKey.trim(), webhookSecrets: [v.webhookSecrets.trim()] },
    });
    if (showUserErrors(el, r.userErrors)) return;
    app.notice("The Stripe key and the signing secret are saved.");
    await redraw({ manual: true });
  });
  sec.append(details("stripe-self-hosted", "No public address? (this service runs inside your network)", [
    h("p", "Stripe must reach this service to tell it about new sales. If it cannot ask Stripe to do so itself, make the webhook endpoint in Stripe yourself: Developers → Webhooks → Add endpoint, with the events for invoices, charges, payment intents, customers and products (or all events), and the address:"),
    h("p", h("code", { "data-testid": "webhook-address" }, c ? webhookAddress(c) : "shown here once the connection is made (when you first save)")),
    h("p", "Then paste the key and the endpoint's signing secret here."),
    manual,
  ], Boolean(extra.manual)));
  return sec;
}

/** Where Stripe must deliver: the full URL when this service knows its public address. */
function webhookAddress(c) {
  return c.webhookUrl ?? `https://<this service's address>${c.webhookPath}`;
}

function stepNetsuite({ c, done, redraw }) {
  const ns = c.settings?.netsuite ?? {};
  const cert = c.netsuiteCertificate;
  const sec = h("section.step", { "data-testid": "wizard-netsuite" },
    h("h2", "2. Connect NetSuite"),
    h("p", "We sign in to NetSuite as an integration of your account, with a certificate made here (machine to machine, OAuth 2.0). Its private half never leaves this service; you upload the public half in NetSuite."));
  const keypair = form("netsuite-keypair", [
    { name: "accountId", label: "NetSuite account ID", value: ns.account_id, required: true,
      hint: "Setup → Company → Company Information → Account ID (e.g. 1234567, or 1234567_SB1 for a sandbox)." },
    { name: "clientId", label: "Integration client ID", value: ns.client_id, required: true, autocomplete: "off",
      hint: "Setup → Integration → Manage Integrations → New: tick \"Client credentials (machine to machine)\", save, and copy the client ID NetSuite shows." },
  ], cert ? "Make a new certificate" : "Make the certificate", async (v, el) => {
    const { netsuiteKeyPairGenerate: r } = await gql("NetsuiteKeyPairGenerate", {
      input: { connectionId: c.id, accountId: v.accountId.trim(), clientId: v.clientId.trim() },
    });
    if (!showUserErrors(el, r.userErrors)) await redraw();
  });
  if (!cert) {
    sec.append(keypair);
    return sec;
  }
  // Made already: a new one would have to be uploaded again, so that form is folded away.
  sec.append(
    h("dl.facts",
      h("dt", "NetSuite account"), h("dd", ns.account_id ?? "—"),
      h("dt", "Integration client ID"), h("dd", h("code", ns.client_id ?? "—"))),
    details("netsuite-redo", "Change the account or the integration (makes a new certificate)", [
      h("p.hint", "A new certificate replaces this one: it must then be uploaded in NetSuite again."), keypair]));
  sec.append(
    h("h3", "Upload this certificate in NetSuite"),
    h("div.pem",
      h("pre", { "data-testid": "certificate-pem" }, cert.pem),
      h("div.buttons", copyButton(cert.pem, "copy-pem"), downloadLink(cert.pem, "ml-connector.pem"))),
    h("dl.facts",
      h("dt", "Algorithm"), h("dd", cert.algorithm),
      h("dt", "Fingerprint"), h("dd", h("code", cert.fingerprint)),
      h("dt", "Valid until"), h("dd", when(cert.notAfter))),
    h("ol.howto", { "data-testid": "netsuite-steps" }, cert.steps.map((s) => h("li", s))),
    form("netsuite-certificate", [
      { name: "certificateId", label: "Certificate ID", value: cert.certificateId ?? "", required: true, autocomplete: "off",
        hint: "NetSuite shows it in the list of certificates once uploaded." },
    ], "Save the certificate ID", async (v, el) => {
      const { netsuiteCertificateSet: r } = await gql("NetsuiteCertificateSet", {
        input: { connectionId: c.id, certificateId: v.certificateId.trim() },
      });
      if (!showUserErrors(el, r.userErrors)) await redraw();
    }));
  if (done.netsuite) {
    sec.append(h("p.done", { "data-testid": "netsuite-done" }, `NetSuite is set: certificate ID ${cert.certificateId}.`),
      nextLink("check", "Next: check →"));
  }
  return sec;
}

/** A link that saves `text` as a file named `filename`. */
function downloadLink(text, filename) {
  const url = URL.createObjectURL(new Blob([text], { type: "application/x-pem-file" }));
  return h("a.button.secondary", { href: url, download: filename, "data-testid": "download-pem" }, `Download ${filename}`);
}

/** A Copy button for `text`; where the clipboard is refused, the text is selected instead. */
function copyButton(text, testid) {
  return h("button.secondary", { type: "button", "data-testid": testid, onclick: async (e) => {
    const button = e.currentTarget;
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      const pre = button.parentElement.querySelector("pre");
      getSelection().selectAllChildren(pre);
      button.textContent = "Selected: press Ctrl+C (⌘C)";
    }
  } }, "Copy");
}

function stepCheck({ app, c }) {
  const checks = h("div.checks", { "data-testid": "checks" });
  const after = h("div");
  const run = async () => {
    fill(after);
    const ok = await runTest(app, c.id, checks);
    markDone("check", ok);
    if (ok) after.append(nextLink("dry-run", "Next: see if we fit →"));
    else after.append(h("p", "Fix what is marked above (earlier steps can be opened from the list), then check again."));
  };
  const sec = h("section.step", { "data-testid": "wizard-check" },
    h("h2", "3. Check"),
    h("p", "We try everything the connection needs: the Stripe key, the webhook, signing in to NetSuite, and what the settings point at. Nothing is written anywhere."),
    checks, after,
    h("button.secondary", { type: "button", "data-testid": "check-again", onclick: () => run().catch(shown(app)) }, "Check again"));
  run().catch(shown(app));
  return sec;
}

const RUN_WORDS = { QUEUED: "Waiting to start…", RUNNING: "Running…", SUCCEEDED: "Done", FAILED: "Failed" };
const running = (r) => r && (r.state === "QUEUED" || r.state === "RUNNING");

function moneyList(amounts) {
  return amounts.map((a) => a.display).join(", ") || "—";
}

function stepDryRun({ app, c, over }) {
  const status = h("p.progress", { "data-testid": "dry-run-status" });
  const results = h("div");
  let polling = false;
  const show = (d) => {
    status.setAttribute("data-state", d?.state.toLowerCase() ?? "none");
    if (!d) return fill(status, "Not run yet.");
    fill(status,
      d.state === "SUCCEEDED" ? `Done: looked at ${d.scanned} invoices and charges since ${when(d.since)}.`
        : d.state === "FAILED" ? `The dry run failed: ${d.error ?? "no reason given"}`
          : `${RUN_WORDS[d.state]} Looked at ${d.scanned} invoices and charges so far.`);
    fill(results, d.state === "SUCCEEDED" ? dryRunResults(app, c, d, start) : null);
    markDone("dry-run", d.state === "SUCCEEDED");
  };
  const follow = () => {
    if (polling) return;
    polling = true;
    poll(app, 1000, over, async () => {
      const { connection } = await gql("WizardProgress", { id: c.id });
      if (over()) return true;
      show(connection?.dryRun);
      polling = running(connection?.dryRun);
      return !polling;
    });
  };
  async function start() {
    fill(status, "Starting…");
    const { dryRunStart: r } = await gql("DryRunStart", { input: { connectionId: c.id, days: 30 } });
    if (actionErrors(app, r.userErrors)) return show(c.dryRun);
    show(r.dryRun);
    if (running(r.dryRun)) follow();
  }
  const sec = h("section.step", { "data-testid": "wizard-dry-run" },
    h("h2", "4. See if we fit"),
    h("p", "We read the last 30 days of your Stripe sales and show what would be posted to NetSuite, and what needs a decision from you first. Nothing is written to NetSuite."),
    status, results,
    h("button.secondary", { type: "button", "data-testid": "dry-run-again", onclick: () => start().catch(shown(app)) }, "Run it again"));
  // The first visit starts one; later visits show the last (and follow it if it still runs).
  if (!c.dryRun) start().catch(shown(app));
  else {
    show(c.dryRun);
    if (running(c.dryRun)) follow();
  }
  return sec;
}

/** Shows an API error of a button's action in the notice line. */
function shown(app) {
  return (e) => {
    if (!(e instanceof ApiError)) throw e;
    app.notice(e.message, "warn");
  };
}

function dryRunResults(app, c, d, restart) {
  const out = [];
  out.push(h("h3", "What would be posted"),
    d.wouldPost.length
      ? h("table", { "data-testid": "would-post" },
        h("thead", h("tr", h("th", "Currency"), h("th", "Sales"), h("th.num", "Gross"), h("th.num", "Stripe fees"), h("th.num", "Net"))),
        h("tbody", d.wouldPost.map((t) => h("tr", { "data-currency": t.currency },
          h("td", t.currency), h("td", String(t.count)), h("td.num", t.gross.display),
          h("td.num", t.fees.display), h("td.num", t.net.display)))))
      : h("p.empty", "No sale in these days."),
    d.notPosted ? h("p.muted", `${d.notPosted} other invoices and charges post nothing (unpaid, failed, or paying an invoice already counted).`) : null);

  // Products without a NetSuite item: their sales would wait. Mapping one runs the check again.
  out.push(h("h3", "Products without a NetSuite item"));
  if (!d.unmappedProducts.length) out.push(h("p.empty", { "data-testid": "dry-run-no-unmapped" }, "Every product has its NetSuite item."));
  else {
    out.push(h("p.muted", "Sales of these products would wait until you say which NetSuite item they are."),
      h("table", { "data-testid": "dry-run-unmapped" },
        h("thead", h("tr", h("th", "Stripe product"), h("th", "Sales"), h("th", "Amount"), h("th", "NetSuite item"))),
        h("tbody", d.unmappedProducts.map((p) => h("tr", { "data-product": p.stripeProductId },
          h("td", p.name ?? "", h("div.muted", p.stripeProductId)),
          h("td", String(p.sales)), h("td", moneyList(p.amounts)),
          h("td", mapForm(app, "netsuite_item_id", "NetSuite item internal ID", async (value) => {
            const { productMappingSet: r } = await gql("ProductMappingSet", {
              connectionId: c.id, stripeProductId: p.stripeProductId, netsuiteItemId: value,
            });
            if (actionErrors(app, r.userErrors)) return;
            app.notice(`${p.name ?? p.stripeProductId} is mapped to item ${value}: looking again.`);
            await restart();
          })))))));
  }

  // Customers: those NetSuite has no match for and that would not be made need a person; the
  // ones that would be made are listed folded, to map to an existing customer if need be.
  const customerRows = (list) => h("tbody", list.map((k) => h("tr", { "data-customer": k.stripeCustomerId },
    h("td", k.name ?? "", k.email ? h("div.muted", k.email) : null, h("div.muted", k.stripeCustomerId)),
    h("td", String(k.sales)), h("td", moneyList(k.amounts)),
    h("td", mapForm(app, "netsuite_customer_id", "NetSuite customer internal ID", async (value) => {
      const { customerMappingSet: r } = await gql("CustomerMappingSet", {
        input: { connectionId: c.id, stripeCustomerId: k.stripeCustomerId, netsuiteCustomerId: value },
      });
      if (actionErrors(app, r.userErrors)) return;
      app.notice(`${k.name ?? k.stripeCustomerId} is matched to customer ${value}: looking again.`);
      await restart();
    })))));
  const customerHead = h("thead", h("tr", h("th", "Stripe customer"), h("th", "Sales"), h("th", "Amount"),
    h("th", "Existing NetSuite customer (internal ID)")));
  const needed = d.unmatchedCustomers.filter((k) => !k.willBeCreated);
  const made = d.unmatchedCustomers.filter((k) => k.willBeCreated);
  out.push(h("h3", "Customers"));
  if (needed.length) {
    out.push(h("p.muted", "NetSuite has no customer for these, and they cannot be made by themselves: give the internal ID of the NetSuite customer to use."),
      h("table", { "data-testid": "dry-run-customers" }, customerHead, customerRows(needed)));
  } else {
    out.push(h("p.empty", { "data-testid": "dry-run-no-customers" }, "Every customer is known in NetSuite, or will be made there."));
  }
  if (made.length) {
    out.push(details("dry-run-new-customers", `${made.length} new customer(s) would be made in NetSuite`, [
      h("p.muted", "If one of them is in NetSuite already, give its internal ID so it is not made twice."),
      h("table", customerHead.cloneNode(true), customerRows(made))]));
  }

  if (d.problems.length) {
    out.push(h("h3", "Other things to fix"),
      h("ul", { "data-testid": "dry-run-problems" }, d.problems.map((p) =>
        h("li", h("code", p.stripeObjectId), `: ${p.message}`))));
  }
  out.push(nextLink("live", "Next: go live →"));
  return out;
}

/** A one-field inline form (an internal ID) whose submit runs `save(value)`. */
function mapForm(app, name, label, save) {
  const f = h("form.inline",
    h("input", { name, "aria-label": label, placeholder: "internal ID", inputmode: "numeric", required: true }),
    h("button", { type: "submit", "data-testid": "map" }, "Map"));
  f.addEventListener("submit", async (e) => {
    e.preventDefault();
    const value = f.elements[name].value.trim();
    if (!value) return f.elements[name].focus();
    f.querySelector("button").disabled = true;
    try {
      await save(value);
    } catch (err) {
      shown(app)(err);
    } finally {
      f.querySelector("button").disabled = false;
    }
  });
  return f;
}

function stepLive({ app, c, done, over, redraw }) {
  const sec = h("section.step", { "data-testid": "wizard-live" }, h("h2", "5. Go live"));
  if (c.status !== "ACTIVE") {
    sec.append(
      h("p", "From now on, each new Stripe invoice and payment is posted to NetSuite as it happens, once."),
      done.check ? null : h("p.warn", { "data-testid": "not-checked" },
        "The check has not passed yet: sales may fail to post until what it marks is fixed. ",
        h("a", { href: stepHref("check") }, "Check again")),
      form("go-live", [
        { name: "backfill", type: "checkbox", label: "Also post the sales of the last 30 days", value: false,
          hint: "Leave it unticked if those sales are in NetSuite already (entered by hand): they would be there twice." },
      ], "Go live", async (v, el) => {
        const { connectionGoLive: r } = await gql("ConnectionGoLive", {
          input: { connectionId: c.id, backfillDays: v.backfill ? 30 : 0 },
        });
        if (showUserErrors(el, r.userErrors)) return;
        await app.refreshShell();
        await redraw();
      }));
    return sec;
  }
  const status = h("p.progress", { "data-testid": "backfill-status" });
  const show = (b) => {
    status.setAttribute("data-state", b?.state.toLowerCase() ?? "none");
    fill(status, !b ? "No earlier sales were asked for."
      : b.state === "SUCCEEDED" ? `The last ${b.days} days are queued: looked at ${b.scanned} invoices and charges, ${b.queued} to post.`
        : b.state === "FAILED" ? `Posting the last ${b.days} days failed: ${b.error ?? "no reason given"}`
          : `${RUN_WORDS[b.state]} Looked at ${b.scanned} invoices and charges, ${b.queued} queued to post so far.`);
  };
  show(c.backfill);
  if (running(c.backfill)) {
    poll(app, 1000, over, async () => {
      const { connection } = await gql("WizardProgress", { id: c.id });
      if (over()) return true;
      show(connection?.backfill);
      return !running(connection?.backfill);
    });
  }
  sec.append(
    h("p.done", { "data-testid": "live-done" }, `${c.name} is live: new Stripe sales are posted to NetSuite as they happen.`),
    status,
    h("p", h("a", { href: "#/events", "data-testid": "events-link" }, "Follow the sales on the Events page →")));
  return sec;
}

// ---------------------------------------------------------------------------------------------
// One connection (#/connection/<id>): its settings, its credentials, and replaying a window of
// its events. Owners change settings and credentials; operators replay; viewers read.

const CREDENTIAL_WORDS = {
  "stripe/api_key": "Stripe key",
  "stripe/webhook_secrets": "Stripe webhook signing secrets",
  "netsuite/private_key_pem": "NetSuite private key (certificate)",
  "netsuite/consumer_secret": "NetSuite consumer secret",
  "netsuite/token_secret": "NetSuite token secret",
};

export async function connectionPage({ app, view, rest, stale }) {
  const id = rest[0];
  const { connection: c } = await gql("ConnectionSetup", { id });
  if (stale()) return;
  if (!c) return fill(view, h("h1", "Connection not found"), h("p", h("a", { href: "#/connections" }, "← Connections")));
  const again = () => app.go(location.hash);
  view.append(
    h("p", h("a", { href: "#/connections" }, "← Connections")),
    h("h1", `${c.name} `, h("span.state", { "data-state": c.status.toLowerCase() }, CONNECTION_WORDS[c.status])),
    c.status === "DRAFT" && app.isOwner
      ? h("p", h("a", { href: `#/setup?connection=${encodeURIComponent(c.id)}` }, "Continue the setup →")) : null,
    h("dl.facts",
      h("dt", "ID"), h("dd", c.handle),
      h("dt", "Stripe sends its events to"), h("dd", h("code", c.webhookUrl ?? c.webhookPath)),
      h("dt", "NetSuite account"), h("dd", c.netsuiteAccount ?? "not set")));

  // Settings: the JSON the connection overrides of the configuration (never a secret).
  view.append(h("h2", "Settings"));
  if (app.isOwner) {
    view.append(form("settings-edit", [
      { name: "settings", type: "textarea", label: "Settings (JSON)", value: JSON.stringify(c.settings, null, 2), rows: 12,
        hint: "The stripe, netsuite, posting and reference keys this connection sets for itself. No secrets here: they go in the credentials below." },
    ], "Save settings", async (v, el) => {
      let settings;
      try {
        settings = JSON.parse(v.settings);
      } catch (e) {
        return showUserErrors(el, [{ field: ["settings"], message: `This is not valid JSON: ${e.message}` }]);
      }
      const { connectionUpdate: r } = await gql("ConnectionUpdate", { input: { connectionId: c.id, settings } });
      if (showUserErrors(el, r.userErrors)) return;
      app.notice("The settings are saved.");
      again();
    }));
  } else {
    view.append(h("div", { "data-testid": "settings" }, json(c.settings)));
  }

  // Credentials: described by fingerprint and last characters; the secrets are write-only.
  view.append(h("h2", "Credentials"),
    h("table", { "data-testid": "credentials" },
      h("thead", h("tr", h("th", "What"), h("th", "Fingerprint"), h("th", "Ends in"), h("th", "Values"), h("th", "Set"))),
      h("tbody", c.credentials.length ? c.credentials.map((k) => h("tr", { "data-credential": k.name },
        h("td", CREDENTIAL_WORDS[k.name] ?? k.name), h("td", h("code", k.fingerprint ?? "—")),
        h("td", k.last4 ? `…${k.last4}` : "—"), h("td", String(k.values)), h("td", when(k.setAt))))
        : h("tr", h("td", { colspan: 5 }, "None stored yet.")))));
  if (app.isOwner) view.append(...credentialForms(app, c, again));

  if (app.canAct) view.append(...replayWindow(app, c));
}

function credentialForms(app, c, again) {
  const saved = (what) => {
    app.notice(`${what} saved.`);
    again();
  };
  const stripeSet = async (input, el, what) => {
    const { stripeCredentialsSet: r } = await gql("StripeCredentialsSet", { input: { connectionId: c.id, ...input } });
    if (!showUserErrors(el, r.userErrors)) saved(what);
  };
  return [
    details("set-stripe-key", "Change the Stripe key", form("stripe-key", [
      { name: "apiKey", label: "Stripe secret or restricted key", type: "password", autocomplete: "off", required: true },
    ], "Save the key", (v, el) => stripeSet({ apiKey: v.apiKey.trim() }, el, "The Stripe key is"))),
    details("rotate-webhook", "Roll the webhook signing secret", [
      h("p.muted", "After \"Roll secret\" on the endpoint in Stripe, paste the new secret. The previous one keeps working until you drop it, so deliveries Stripe signed before the roll still verify."),
      form("webhook-rotate", [
        { name: "newSecret", label: "New signing secret", type: "password", autocomplete: "off", placeholder: "whsec_…", required: true },
        { name: "dropPrevious", type: "checkbox", label: "Stop accepting the previous secret now" },
      ], "Save the new secret", async (v, el) => {
        const { webhookSecretRotate: r } = await gql("WebhookSecretRotate", {
          input: { connectionId: c.id, newSecret: v.newSecret.trim(), dropPrevious: Boolean(v.dropPrevious) },
        });
        if (!showUserErrors(el, r.userErrors)) saved("The new signing secret is");
      })]),
    details("set-webhook-secrets", "Replace the webhook signing secrets", form("webhook-secrets", [
      { name: "webhookSecrets", type: "textarea", rows: 3, label: "Signing secrets, newest first, one a line", required: true },
    ], "Replace the secrets", (v, el) => stripeSet({
      webhookSecrets: v.webhookSecrets.split(/\s+/).filter(Boolean),
    }, el, "The signing secrets are"))),
    details("set-netsuite", "Set NetSuite credentials by hand", [
      h("p.muted", "The setup makes NetSuite's certificate for you. Here you can paste a private key of your own (machine to machine), or token-based authentication's secrets."),
      form("netsuite-credentials", [
        { name: "privateKeyPem", type: "textarea", rows: 6, label: "Private key (PEM)", placeholder: "-----BEGIN PRIVATE KEY-----" },
        { name: "consumerSecret", type: "password", autocomplete: "off", label: "Consumer secret (token-based authentication)" },
        { name: "tokenSecret", type: "password", autocomplete: "off", label: "Token secret (token-based authentication)" },
      ], "Save", async (v, el) => {
        // Only what was typed: an empty box leaves that credential as it is.
        const input = { connectionId: c.id };
        for (const k of ["privateKeyPem", "consumerSecret", "tokenSecret"]) if (v[k].trim()) input[k] = v[k].trim();
        const { netsuiteCredentialsSet: r } = await gql("NetsuiteCredentialsSet", { input });
        if (!showUserErrors(el, r.userErrors)) saved("The NetSuite credentials are");
      })]),
  ];
}

/** `datetime-local` value (the browser's time) ↔ RFC 3339 UTC. */
function localInput(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
const rfc3339 = (local) => (local ? new Date(local).toISOString() : null);

const REPLAY_STATUS = [["", "Any not running (done ones are checked again)"],
  ["FAILED", "Failed only"], ["WAITING", "Waiting for you only"]];

function replayWindow(app, c) {
  const preview = h("div", { "data-testid": "replay-preview" });
  const dayAgo = new Date(Date.now() - 24 * 3600 * 1000);
  const f = form("replay-window", [
    { name: "since", type: "datetime-local", label: "From", value: localInput(dayAgo), required: true },
    { name: "until", type: "datetime-local", label: "Until (empty: now)", hint: "At most 14 days after the start." },
    { name: "status", label: "Which events", options: REPLAY_STATUS, value: "" },
  ], "Preview", async (v, el) => {
    const input = { connectionId: c.id, since: rfc3339(v.since), until: rfc3339(v.until) };
    if (v.status) input.filter = { status: v.status };
    // A dry run first: the person sees how many events, and in which states, before any is queued.
    const { eventsReplay: r } = await gql("EventsReplay", { input: { ...input, dryRun: true } });
    if (showUserErrors(el, r.userErrors)) return fill(preview);
    const m = r.batch.matchedByState;
    if (!r.batch.events) return fill(preview, h("p.empty", "No event in this window to replay."));
    const key = crypto.randomUUID();
    fill(preview, h("div.result",
      h("p", { "data-testid": "replay-count" }, `${r.batch.events} events would be replayed: ${m.failed} failed, ${m.waiting} waiting, ${m.queued} queued, ${m.succeeded} done (checked again, not posted twice).`),
      h("button", { type: "button", "data-testid": "replay-confirm", onclick: async (e) => {
        e.currentTarget.disabled = true;
        try {
          const { eventsReplay: q } = await gql("EventsReplay", { input: { ...input, dryRun: false, idempotencyKey: key } });
          if (actionErrors(app, q.userErrors)) return;
          followBatch(app, preview, q.batch);
        } catch (err) {
          shown(app)(err);
        }
      } }, `Replay these ${r.batch.events} events`)));
  });
  return [h("h2", "Replay a window"),
    h("p.muted", "Runs the events received in a time window through posting again, e.g. after fixing a setting. What already posted is never posted twice."),
    f, preview];
}

/** The batch's progress, live, until nothing of it is queued or running. */
function followBatch(app, box, batch) {
  const line = h("p.progress", { "data-testid": "replay-progress" });
  const show = (p) => fill(line, `${batch.events} queued for replay: ${p.succeeded} done, ${p.failed} failed, ${p.waiting} waiting, ${p.queued + p.running} to go.`);
  show(batch.progress);
  fill(box, line);
  if (!batch.id) return;
  app.cleanups.push(subscribe("ReplayProgress", { batchId: batch.id }, ({ replayProgress }) => show(replayProgress)));
}

// ---------------------------------------------------------------------------------------------
// Team and API keys.

const ROLE_OPTIONS = [["VIEWER", ROLE_WORDS.VIEWER], ["OPERATOR", ROLE_WORDS.OPERATOR], ["OWNER", ROLE_WORDS.OWNER]];

export async function team({ app, view, stale }) {
  const { members } = await gql("Members");
  if (stale()) return;
  view.append(h("h1", "Team"),
    h("table", { "data-testid": "members" },
      h("thead", h("tr", h("th", "Email"), h("th", "Role"), h("th", "Joined"))),
      h("tbody", members.map((m) => h("tr", h("td", m.email), h("td", ROLE_WORDS[m.role] ?? m.role), h("td", when(m.joinedAt)))))));
  if (!app.isOwner) return;
  const shown = h("div");
  view.append(h("h2", "Invite someone"),
    form("invite", [
      { name: "email", label: "Their email", type: "email", required: true },
      { name: "role", label: "Role", options: ROLE_OPTIONS, value: "VIEWER" },
    ], "Invite", async (v, el) => {
      const { memberInvite: r } = await gql("MemberInvite", v);
      if (showUserErrors(el, r.userErrors)) return;
      const link = `${location.origin}/app/#/accept?token=${encodeURIComponent(r.token)}`;
      fill(shown, h("div.secret", { "data-testid": "invite-link" },
        h("p", `Send this link to ${v.email}. It is shown only now, works once, until ${when(r.expiresAt)}:`),
        h("code", link)));
      el.reset();
    }), shown);
}

export async function apiKeys({ app, view, stale }) {
  if (!app.isOwner) return fill(view, h("h1", "API keys"), h("p", "Only owners manage API keys."));
  const { apiKeys: keys } = await gql("ApiKeys");
  if (stale()) return;
  const shown = h("div");
  view.append(h("h1", "API keys"),
    h("p.muted", "Keys let your own programs use the GraphQL API at /graphql. A key is shown once, when it is made."),
    h("table", { "data-testid": "api-keys" },
      h("thead", h("tr", h("th", "Name"), h("th", "Role"), h("th", "Key"), h("th", "Made"), h("th", "Last used"), h("th", ""))),
      h("tbody", keys.length ? keys.map((k) => h("tr", { "data-key": k.name },
        h("td", k.name), h("td", ROLE_WORDS[k.role] ?? k.role), h("td", h("code", `${k.prefix}…${k.last4}`)),
        h("td", when(k.createdAt)), h("td", when(k.lastUsedAt)),
        h("td", h("button", { type: "button", "data-testid": "revoke", onclick: async () => {
          const { apiKeyRevoke: r } = await gql("ApiKeyRevoke", { id: k.id });
          if (actionErrors(app, r.userErrors)) return;
          app.notice(`${k.name} is revoked: programs using it are refused from now on.`);
          app.go("#/keys");
        } }, "Revoke"))))
        : h("tr", h("td", { colspan: 6 }, "No key yet.")))),
    h("h2", "Make a key"),
    form("key-create", [
      { name: "name", label: "Name", placeholder: "accounting-scripts", required: true },
      { name: "role", label: "Role", options: ROLE_OPTIONS, value: "VIEWER" },
    ], "Make key", async (v, el) => {
      const { apiKeyCreate: r } = await gql("ApiKeyCreate", v);
      if (showUserErrors(el, r.userErrors)) return;
      fill(shown, h("div.secret", { "data-testid": "new-secret" },
        h("p", `The key ${r.apiKey.name}: copy it now, it is shown only this once.`), h("code", r.secret)));
      el.reset();
    }), shown);
}

// ---------------------------------------------------------------------------------------------
// A one-time sign-in link (#/link?token=…, e.g. from `ml-connector demo --dashboard`).

export async function signInWithLink({ app, view, params }) {
  const token = params.get("token") ?? "";
  // The token leaves the address bar and the history at once: it works once anyway.
  history.replaceState(null, "", "#/link");
  fill(view, h("h1", "Signing you in…"));
  const { signInWithLink } = await gql("SignInWithLink", { token });
  if (!signInWithLink.userErrors.length) {
    startSession(app, signInWithLink);
    return;
  }
  fill(view, h("h1", "This link does not sign you in"),
    h("p.form-error", { "data-testid": "link-error", role: "alert" },
      signInWithLink.userErrors.map((e) => e.message).join("; ")),
    h("p", h("a", { href: "#/signin" }, "Sign in with your password")));
}
