// The web dashboard as a GraphQL client: hash routes (#/events, #/event/<id>, …), every read
// and write through /graphql with the session cookie, live updates through /graphql/ws.

import { gql, loadOperations, session, SignedOut, ApiError } from "./graphql.js";
import { h, fill, ROLE_WORDS, setTimeZone } from "./dom.js";
import * as pages from "./pages.js";
import * as wizard from "./wizard.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const noticeBox = document.getElementById("notice");
/** Whether the notice shown survives the next change of page (see `app.go`). */
let keepNotice_ = false;

/** What every page may use: the viewer, the chosen connection, the notice line. */
export const app = {
  viewer: null,
  connections: [],
  connectionId: null,
  /** Cleanups of the current page (subscriptions); run when the page changes. */
  cleanups: [],
  notice(text, kind = "ok") {
    noticeBox.hidden = false;
    noticeBox.className = kind;
    noticeBox.setAttribute("data-testid", "notice");
    fill(noticeBox, text);
  },
  clearNotice() {
    noticeBox.hidden = true;
    noticeBox.replaceChildren();
  },
  /** Goes to a page; `keepNotice`: the notice just shown stays on the next page. */
  go(hash, keepNotice = false) {
    if (location.hash === hash) route();
    else {
      keepNotice_ = keepNotice;
      location.hash = hash;
    }
  },
  get canAct() {
    return app.viewer && app.viewer.role !== "VIEWER";
  },
  get isOwner() {
    return app.viewer?.role === "OWNER";
  },
  connection() {
    return app.connections.find((c) => c.id === app.connectionId) ?? null;
  },
  async refreshShell() {
    const data = await gql("AppShell");
    app.viewer = data.viewer;
    app.connections = data.connections.nodes;
    const kept = sessionStorage.getItem("mlc.connection");
    app.connectionId = app.connections.some((c) => c.id === kept)
      ? kept
      : (app.connections[0]?.id ?? null);
    drawHeader();
  },
  signedOut(message, kind = "warn") {
    session.clear();
    app.viewer = null;
    app.connections = [];
    drawHeader();
    if (message) app.notice(message, kind);
    app.go("#/signin", Boolean(message));
  },
};

const NAV = [
  ["#/", "Overview"],
  ["#/events", "Events"],
  ["#/failed", "Failed"],
  ["#/waiting", "Waiting"],
  ["#/mappings", "Mappings"],
  ["#/connections", "Connections"],
  ["#/team", "Team"],
  ["#/keys", "API keys"],
];

function drawHeader() {
  if (!app.viewer) {
    nav.hidden = true;
    fill(nav);
    fill(who);
    return;
  }
  nav.hidden = false;
  const here = location.hash.split("?")[0] || "#/";
  fill(
    nav,
    NAV.filter(([href]) => href !== "#/keys" || app.isOwner).map(([href, label]) =>
      h("a", { href, "aria-current": here === href ? "page" : undefined }, label),
    ),
  );
  const picker = app.connections.length
    ? h(
        "select",
        {
          "data-testid": "connection-picker",
          "aria-label": "Connection",
          onchange: (e) => {
            app.connectionId = e.target.value;
            sessionStorage.setItem("mlc.connection", app.connectionId);
            route();
          },
        },
        app.connections.map((c) =>
          h("option", { value: c.id, selected: c.id === app.connectionId }, `${c.name} (${c.handle})`),
        ),
      )
    : null;
  fill(
    who,
    picker,
    h("span.user", { "data-testid": "who", title: ROLE_WORDS[app.viewer.role] },
      `${app.viewer.apiKeyName ?? ""} · ${app.viewer.tenantId}`),
    h("button.signout", { type: "button", "data-testid": "sign-out", onclick: signOut }, "Sign out"),
  );
}

async function signOut() {
  try {
    await gql("SignOut");
  } catch (e) {
    if (!(e instanceof SignedOut)) console.warn(e);
  }
  app.signedOut("You are signed out.", "ok");
}

const ROUTES = {
  signin: pages.signIn,
  signup: pages.signUp,
  accept: pages.acceptInvitation,
  link: pages.signInWithLink,
  "": pages.overview,
  events: pages.events,
  failed: (ctx) => pages.events(ctx, "FAILED"),
  waiting: (ctx) => pages.events(ctx, "WAITING"),
  event: pages.event,
  mappings: pages.mappings,
  connections: pages.connections,
  connection: pages.connectionPage,
  setup: wizard.setup,
  team: pages.team,
  keys: pages.apiKeys,
};
const PUBLIC = new Set(["signin", "signup", "accept", "link"]);

/** `#/events?status=FAILED` → { name: "events", rest: [], params }. */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const [name = "", ...rest] = path.split("/").map(decodeURIComponent);
  return { name, rest, params: new URLSearchParams(query) };
}

let generation = 0;

async function route() {
  const mine = ++generation;
  for (const c of app.cleanups.splice(0)) c();
  const { name, rest, params } = parseHash();
  const page = ROUTES[name] ?? pages.notFound;
  try {
    if (!PUBLIC.has(name)) {
      if (!session.csrf) {
        // No session in this tab (a new tab, or signed out): sign in again.
        app.go("#/signin");
        return;
      }
      if (!app.viewer) await app.refreshShell();
    }
    setTimeZone(app.connection()?.timeZone);
    drawHeader();
    const view = h("section", { "data-page": name || "overview" });
    fill(main, view);
    await page({ app, view, rest, params, stale: () => mine !== generation });
  } catch (e) {
    if (mine !== generation) return;
    if (e instanceof SignedOut) {
      app.signedOut(e.message);
      return;
    }
    fill(
      main,
      h("div.error", { "data-testid": "page-error" },
        e instanceof ApiError ? e.message : `Something went wrong: ${e.message}`),
    );
  }
}

window.addEventListener("hashchange", () => {
  if (keepNotice_) keepNotice_ = false;
  else app.clearNotice();
  route();
});

// Mutations elsewhere report a lost session the same way.
window.addEventListener("unhandledrejection", (e) => {
  if (e.reason instanceof SignedOut) app.signedOut(e.reason.message);
});

await loadOperations();
if (!location.hash || location.hash === "#") location.replace("#/");
route();
