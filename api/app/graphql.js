// The GraphQL client: every read and write of the app goes through /graphql (fetch) and
// /graphql/ws (graphql-transport-ws), with the session cookie (HttpOnly: the page never sees it)
// and the session's CSRF token, kept in sessionStorage for this tab. A new tab, or a closed one,
// has no token: the app then asks to sign in again.
//
// The operations are the named ones of frontend-schema/operations/ (validated against the schema
// by scripts/check-graphql.sh), served as one document at /app/operations.graphql; each request
// sends its operation with the fragments it uses.

const CSRF_KEY = "mlc.csrfToken";

/** The session as the page knows it. */
export const session = {
  get csrf() {
    return sessionStorage.getItem(CSRF_KEY);
  },
  start(csrfToken) {
    sessionStorage.setItem(CSRF_KEY, csrfToken);
  },
  clear() {
    sessionStorage.removeItem(CSRF_KEY);
  },
};

/** The session is over (signed out, expired, or this tab has no CSRF token). */
export class SignedOut extends Error {}

/** The API refused the request as a whole (not a user error). */
export class ApiError extends Error {
  constructor(message, codes) {
    super(message);
    this.codes = codes;
  }
}

let definitions = null;

/** Loads the operations document once. */
export async function loadOperations() {
  if (definitions) return;
  const r = await fetch("/app/operations.graphql", { cache: "no-cache" });
  if (!r.ok) throw new Error(`cannot load the app's operations (${r.status})`);
  definitions = parseDefinitions(await r.text());
}

/** Top-level definitions by name: `query X`, `mutation X`, `subscription X`, `fragment X`. */
function parseDefinitions(text) {
  const src = text
    .split("\n")
    .map((l) => l.replace(/#.*$/, ""))
    .join("\n");
  const defs = new Map();
  const head = /\b(query|mutation|subscription|fragment)\s+([A-Za-z_][A-Za-z0-9_]*)/g;
  let m;
  while ((m = head.exec(src))) {
    // The body: from the first `{` outside the variables' parentheses to its closing brace.
    let i = m.index + m[0].length;
    let parens = 0;
    while (i < src.length && !(src[i] === "{" && parens === 0)) {
      if (src[i] === "(") parens++;
      if (src[i] === ")") parens--;
      i++;
    }
    let depth = 0;
    for (; i < src.length; i++) {
      if (src[i] === "{") depth++;
      if (src[i] === "}" && --depth === 0) break;
    }
    defs.set(m[2], src.slice(m.index, i + 1));
    head.lastIndex = i + 1;
  }
  return defs;
}

/** An operation's document: its text and every fragment it uses, once each. */
export function documentFor(name) {
  const op = definitions?.get(name);
  if (!op) throw new Error(`the app has no operation named ${name}`);
  const parts = [op];
  const seen = new Set();
  const queue = [op];
  while (queue.length) {
    for (const [, frag] of queue.pop().matchAll(/\.\.\.\s*(?!on\b)([A-Za-z_][A-Za-z0-9_]*)/g)) {
      if (seen.has(frag)) continue;
      seen.add(frag);
      const text = definitions.get(frag);
      if (!text) throw new Error(`fragment ${frag} is missing`);
      parts.push(text);
      queue.push(text);
    }
  }
  return parts.join("\n");
}

/** Runs a named operation; returns `data`. Throws SignedOut or ApiError. */
export async function gql(name, variables = {}) {
  const headers = { "content-type": "application/json", accept: "application/json" };
  if (session.csrf) headers["x-csrf-token"] = session.csrf;
  let r;
  try {
    r = await fetch("/graphql", {
      method: "POST",
      credentials: "same-origin",
      headers,
      body: JSON.stringify({ query: documentFor(name), operationName: name, variables }),
    });
  } catch {
    throw new ApiError("the service cannot be reached: check your connection and try again", []);
  }
  let body;
  try {
    body = await r.json();
  } catch {
    throw new ApiError(`the service answered ${r.status} without a readable body`, []);
  }
  const errors = body.errors ?? [];
  const codes = errors.map((e) => e.extensions?.code);
  if (r.status === 401 || codes.includes("UNAUTHENTICATED")) {
    throw new SignedOut(errors[0]?.message ?? "your session has ended: sign in again");
  }
  if (r.status === 403 && errors.some((e) => /CSRF/.test(e.message ?? ""))) {
    throw new SignedOut("this tab has lost its session: sign in again");
  }
  if (errors.length) {
    throw new ApiError(errors.map((e) => e.message).join("; "), codes);
  }
  return body.data;
}

/**
 * Subscribes to a named subscription over /graphql/ws; `onData(data)` for each result,
 * `onState("live" | "reconnecting" | "closed", message)` as the socket comes and goes.
 * Reconnects after a dropped socket. Returns a function that ends it.
 */
export function subscribe(name, variables, onData, onState = () => {}) {
  let ws = null;
  let ended = false;
  let retry = null;
  const open = () => {
    const url = new URL("/graphql/ws", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(url, "graphql-transport-ws");
    ws.onopen = () =>
      ws.send(JSON.stringify({ type: "connection_init", payload: { csrfToken: session.csrf } }));
    ws.onmessage = (m) => {
      let msg;
      try {
        msg = JSON.parse(m.data);
      } catch {
        return;
      }
      if (msg.type === "connection_ack") {
        ws.send(
          JSON.stringify({
            id: "1",
            type: "subscribe",
            payload: { query: documentFor(name), operationName: name, variables },
          }),
        );
        onState("live");
      } else if (msg.type === "next" && msg.payload?.data) {
        onData(msg.payload.data);
      } else if (msg.type === "ping") {
        ws.send(JSON.stringify({ type: "pong" }));
      } else if (msg.type === "error") {
        onState("closed", (msg.payload ?? []).map((e) => e.message).join("; "));
      }
    };
    ws.onclose = (e) => {
      if (ended) return;
      // 4403 / 4401: the session is refused; anything else: try again shortly.
      if (e.code === 4403 || e.code === 4401) {
        onState("closed", e.reason || "live updates were refused: sign in again");
        return;
      }
      onState("reconnecting");
      retry = setTimeout(open, 2000);
    };
  };
  open();
  return () => {
    ended = true;
    clearTimeout(retry);
    ws?.close();
  };
}
