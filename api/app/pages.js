// The pages. Each gets { app, view, rest, params, stale } and fills `view`; `stale()` says the
// person has moved on to another page while this one was loading.

import { gql, session, subscribe } from "./graphql.js";
import {
  field, form, showUserErrors, actionErrors, shown, runTest, PRESET_KEY, decodePreset, slug,
  poll, running, RUN_WORDS,
} from "./shared.js";
import {
  h, fill, when, badge, json, details, eventWords, STATUS_WORDS, CONNECTION_WORDS, ROLE_WORDS,
} from "./dom.js";

/** Signed in: a new company goes on to the setup wizard, anyone else to the overview. */
function startSession(app, payload, next = "#/") {
  session.start(payload.csrfToken);
  app.viewer = null;
  app.clearNotice();
  app.go(next);
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

  view.append(...await reconcileSection(app, c, stale));
  if (app.canAct) view.append(...replayWindow(app, c));
}

const TERM_WORDS = [["sales", "Sales"], ["fees", "Stripe fees"], ["refunds", "Refunds"],
  ["creditNotes", "Credit notes"], ["disputes", "Disputes"], ["net", "Net revenue"]];

/** `YYYY-MM-DD` of a date in the browser's calendar. */
const isoDay = (d) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;

/**
 * Stripe against NetSuite for a period: the latest reconciliation's report, and (operators and
 * owners) a form to run one; a run is followed until it ends.
 */
async function reconcileSection(app, c, stale) {
  const { connection } = await gql("ConnectionReconciliation", { id: c.id });
  const status = h("p.progress", { "data-testid": "reconcile-status" });
  const results = h("div", { "data-testid": "reconcile-results" });
  let polling = false;
  const show = (r) => {
    status.setAttribute("data-state", r?.state.toLowerCase() ?? "none");
    status.setAttribute("data-clean", String(r?.clean ?? ""));
    if (!r) return fill(status, "No reconciliation has run yet.");
    const period = `${r.from} to ${r.to}`;
    fill(status,
      r.state === "SUCCEEDED"
        ? (r.clean ? `${period}: no difference. Every Stripe sale, fee, refund, credit note and dispute is in NetSuite at its amount.`
          : `${period}: ${r.differences.length} difference(s), each named below with its Stripe object.`)
        : r.state === "FAILED" ? `The reconciliation of ${period} failed: ${r.error ?? "no reason given"}`
          : `${RUN_WORDS[r.state]} ${r.scanned} Stripe balance transactions read so far.`);
    fill(results, r.state === "SUCCEEDED" ? reconcileReport(r) : null);
  };
  const follow = () => {
    if (polling) return;
    polling = true;
    poll(app, 1000, stale, async () => {
      const { connection: now } = await gql("ConnectionReconciliation", { id: c.id });
      if (stale()) return true;
      show(now?.reconciliation);
      polling = running(now?.reconciliation);
      return !polling;
    });
  };
  show(connection?.reconciliation);
  if (running(connection?.reconciliation)) follow();
  const today = new Date();
  const first = new Date(today.getFullYear(), today.getMonth(), 1);
  const out = [h("h2", "Reconcile"),
    h("p.muted", `Stripe's balance against what is in NetSuite, per currency and to the cent, for whole days in ${connection?.timeZone ?? "the connection's time zone"}. It only reads.`),
    status, results];
  if (app.canAct) {
    out.splice(2, 0, form("reconcile", [
      { name: "from", type: "date", label: "From", value: isoDay(first), required: true },
      { name: "to", type: "date", label: "To (included)", value: isoDay(today), required: true },
    ], "Reconcile", async (v, el) => {
      const { reconciliationStart: r } = await gql("ReconciliationStart", { input: { connectionId: c.id, from: v.from, to: v.to } });
      if (showUserErrors(el, r.userErrors)) return;
      show(r.reconciliation);
      if (running(r.reconciliation)) follow();
    }));
  }
  return out;
}

function reconcileReport(r) {
  const table = h("table", { "data-testid": "reconcile-table" },
    h("thead", h("tr", h("th", "Currency"), h("th", ""), h("th.num", "Stripe"), h("th.num", "NetSuite"), h("th.num", "Difference"))),
    h("tbody", r.currencies.flatMap((c) => TERM_WORDS.map(([key, words], i) => {
      const t = c[key];
      const off = Number(t.difference.amount) !== 0;
      return h("tr", { "data-currency": c.currency, "data-term": key, "data-differs": String(off) },
        h("td", i === 0 ? c.currency : ""), h("td", words),
        h("td.num", t.stripe.display), h("td.num", t.netsuite.display), h("td.num", t.difference.display));
    }))));
  const differences = r.differences.length
    ? h("ul", { "data-testid": "reconcile-differences" }, r.differences.map((d) =>
      h("li", { "data-object": d.stripeObjectId, "data-term": d.term },
        h("code", d.stripeObjectId), ` (${d.term}): Stripe ${d.stripe.display}, NetSuite ${d.netsuite.display}, `,
        h("code", d.netsuiteExternalId), `. ${d.message}`)))
    : null;
  const payouts = r.payouts.length
    ? h("table", { "data-testid": "reconcile-payouts" },
      h("thead", h("tr", h("th", "Payout"), h("th.num", "Stripe"), h("th.num", "NetSuite deposit"), h("th", "Deposit"))),
      h("tbody", r.payouts.map((p) => h("tr", { "data-payout": p.payoutId, "data-differs": String(Number(p.difference.amount) !== 0) },
        h("td", h("code", p.payoutId)), h("td.num", p.stripe.display), h("td.num", p.netsuite.display),
        h("td", p.depositExternalId ? h("code", p.depositExternalId) : "none")))))
    : null;
  const notPosted = r.notPosted.length
    ? h("div", h("p.muted", "Not posted by the connector (amounts in the settlement currency):"),
      h("ul", { "data-testid": "reconcile-not-posted" }, r.notPosted.map((n) =>
        h("li", `${n.kind}: ${n.count} (${n.amounts.map((a) => a.display).join(", ")})`))))
    : null;
  return [table, payouts, differences, notPosted];
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
