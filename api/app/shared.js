// What several pages use: forms with their user errors shown next to the fields, the connection
// test, the sign-up link's preset settings, and errors of a button's action.

import { gql, ApiError } from "./graphql.js";
import { h, fill, when } from "./dom.js";

// ---------------------------------------------------------------------------------------------
// Forms with their user errors shown next to the fields.

/**
 * A field: { name, label, type, hint, value, options: [[value, label]], required, autocomplete }.
 * `type: "textarea"` makes a multi-line box, `type: "checkbox"` a box ticked when `value`.
 */
export function field(f, prefix = "f") {
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
export function form(testid, fields, submitLabel, onSubmit) {
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

export function clearErrors(el) {
  el.querySelectorAll(".field-error").forEach((e) => e.remove());
  const top = el.querySelector(".form-error");
  top.hidden = true;
  top.replaceChildren();
}

export function formError(el, message) {
  const top = el.querySelector(".form-error");
  top.hidden = false;
  top.append(h("span", message), " ");
}

/** Puts each user error next to its field (the last part of its path), else at the top. */
export function showUserErrors(el, userErrors) {
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
export function actionErrors(app, userErrors) {
  if (!userErrors.length) return false;
  app.notice(userErrors.map((e) => e.message).join("; "), "warn");
  return true;
}

// ---------------------------------------------------------------------------------------------
// Signing up, in, and accepting an invitation.

/** Shows an API error of a button's action in the notice line. */
export function shown(app) {
  return (e) => {
    if (!(e instanceof ApiError)) throw e;
    app.notice(e.message, "warn");
  };
}

export const CHECK_WORDS = { PASS: "OK", WARN: "Warning", FAIL: "Problem", SKIPPED: "Not checked" };

/** Runs the connection test into `checks` (each check with its fix); returns whether all passed. */
export async function runTest(app, connectionId, checks) {
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

// A sign-up link may carry the new connection's settings (`#/signup?preset=<base64url JSON>`,
// e.g. from a reseller or the demo). They are kept in this tab until the wizard makes the
// connection with them.
export const PRESET_KEY = "mlc.preset";

export function decodePreset(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(text.length / 4) * 4, "=");
  const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
  const value = JSON.parse(new TextDecoder().decode(bytes));
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("not an object");
  return value;
}

/** The preset settings kept from the sign-up link, or null. */
export function preset() {
  try {
    return JSON.parse(sessionStorage.getItem(PRESET_KEY) ?? "null");
  } catch {
    return null;
  }
}

export function slug(name) {
  return name.toLowerCase().normalize("NFKD").replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40);
}

// ---------------------------------------------------------------------------------------------
// Runs the server does as jobs (the dry run, the backfill, a reconciliation), followed by polling.

export const RUN_WORDS = { QUEUED: "Waiting to start…", RUNNING: "Running…", SUCCEEDED: "Done", FAILED: "Failed" };
export const running = (r) => r && (r.state === "QUEUED" || r.state === "RUNNING");

/**
 * Calls `tick()` every `ms` until it returns true or `over()` says the page moved on.
 * An API error ends it and is shown in the notice line (a lost session signs out as usual).
 */
export function poll(app, ms, over, tick) {
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
