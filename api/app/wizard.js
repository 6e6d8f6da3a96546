// The onboarding wizard (#/setup): Stripe, NetSuite, check, "see if we fit", go live.

import { gql } from "./graphql.js";
import { h, fill, when, details } from "./dom.js";
import {
  field, form, showUserErrors, actionErrors, shown, runTest, preset, PRESET_KEY, slug,
  poll, running, RUN_WORDS,
} from "./shared.js";

// It works on one draft connection (made by its first step when there is none), and every step
// can be revisited: the step list shows what is done, from the connection's own state.

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
