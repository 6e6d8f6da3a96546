// The onboarding wizard of /app, end to end in Chromium, against `ml-connector demo --dashboard`
// and the second pair of simulators it starts for the wizard (connected to nothing; the ready
// file's `signup_url` carries their settings as the sign-up preset, `wizard` their keys).
//
// A new company signs up from that link and runs the wizard: pastes the Stripe key (the
// simulator then has the webhook endpoint), gives the NetSuite account and client ID, uploads the
// certificate the page shows to the NetSuite simulator (as a person would in NetSuite) and types
// back its ID, sees every check pass, sees the dry run list the product with no NetSuite item,
// maps it (the dry run runs again, without it), goes live with the last 30 days, sees a new
// Stripe invoice arrive on the Events page without a reload, replays a window from the
// connection's page, signs out. A second company then sees none of the first's, and sets its
// Stripe up by hand (no public address: the endpoint's signing secret pasted). Every page runs
// under the CSP: a script error or a violation fails the run.
//
// Environment: see harness.mjs. Screenshots: wizard-stripe.png, wizard-netsuite.png,
// wizard-check.png, wizard-dry-run.png, wizard-live.png.

import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  run, start, stop, watch, asPage as asPageOf, shot as shotOf, fillSignUp, signUp, signOut,
} from "./harness.mjs";

let ready, wizard, page;
const asPage = (query, variables) => asPageOf(page, query, variables);
// The wizard's steps are long: the whole page, so the screenshots show each step in full.
const shot = (name) => shotOf(page, name, true);

/** The wizard's Stripe simulator, with its secret key. */
async function stripe(path, method = "GET") {
  const r = await fetch(new URL(path, wizard.stripe_simulator), {
    method, headers: { authorization: `Bearer ${wizard.stripe_api_key}` },
  });
  assert.ok(r.ok, `${method} ${path}: ${r.status}`);
  return r.json();
}

async function netsuiteState() {
  return (await fetch(new URL("/_sim/state", wizard.netsuite_simulator))).json();
}

before(async () => {
  ready = await start("mlc-wizard-");
  wizard = ready.wizard;
  assert.ok(ready.signup_url?.includes("#/signup?preset="), "the demo gives a sign-up link with a preset");
  for (const k of ["stripe_api_key", "netsuite_account_id", "netsuite_client_id", "netsuite_upload_url",
    "unmapped_item_id", "unmapped_product", "stripe_simulator", "netsuite_simulator"]) {
    assert.ok(wizard?.[k], `ready.wizard.${k}`);
  }
  page = watch(await run.browser.newPage());
});

afterEach(async (t) => {
  if (process.env.MLC_APP_DEBUG && page) {
    console.log(`--- ${t.name}: ${page.url()}\n${await page.textContent("body").catch(() => "")}\n${run.pageErrors.join("\n")}`);
  }
});

after(stop);

let connectionId;

test("sign-up from the wizard link, then Stripe: a wrong key is refused next to its field, the right one makes the webhook", async () => {
  await page.goto(ready.signup_url);
  await page.waitForSelector("[data-testid=preset]");
  await fillSignUp(page, "Northwind Traders", "northwind-traders", "nora@northwind.example");
  // Straight into the wizard, on its first step.
  await page.waitForSelector("[data-testid=wizard-stripe]");
  assert.equal(await page.getAttribute("[data-step=stripe]", "aria-current"), "step");

  await page.fill("[data-testid=stripe-connect] [name=apiKey]", "sk_test_not_a_key_of_this_account");
  await page.click("[data-testid=stripe-connect] button[type=submit]");
  await page.waitForSelector("[data-testid=stripe-connect] [data-field=apiKey] [data-testid=error-apiKey]");

  await page.fill("[data-testid=stripe-connect] [name=apiKey]", wizard.stripe_api_key);
  await page.click("[data-testid=stripe-connect] button[type=submit]");
  await page.waitForSelector("[data-testid=stripe-result]");
  assert.match(await page.textContent("[data-testid=stripe-mode]"), /Test mode/);
  assert.match(await page.textContent("[data-testid=webhook-endpoint]"), /^we_\w+, created now/);
  assert.equal(await page.getAttribute("[data-step=stripe]", "data-done"), "true");

  // The connection was made with the link's preset; Stripe now delivers to its webhook URL.
  const own = await asPage("{ connections { nodes { id handle webhookPath settings } } }");
  const [c] = own.body.data.connections.nodes;
  connectionId = c.id;
  assert.equal(c.settings.stripe.api_base, wizard.stripe_simulator, "the preset's settings");
  const endpoints = await stripe("/v1/webhook_endpoints");
  assert.equal(endpoints.data.filter((e) => e.url.endsWith(c.webhookPath)).length, 1,
    `one endpoint delivering to ${c.webhookPath}: ${JSON.stringify(endpoints.data.map((e) => e.url))}`);
  await shot("wizard-stripe");
  await page.click("[data-testid=wizard-stripe] [data-testid=next]");
});

test("NetSuite: the certificate to upload, its ID typed back", async () => {
  await page.waitForSelector("[data-testid=wizard-netsuite]");
  // A mistyped account ID: the API's words, next to that field.
  await page.fill("[data-testid=netsuite-keypair] [name=accountId]", "not an account");
  await page.fill("[data-testid=netsuite-keypair] [name=clientId]", wizard.netsuite_client_id);
  await page.click("[data-testid=netsuite-keypair] button[type=submit]");
  await page.waitForSelector("[data-testid=netsuite-keypair] [data-field=accountId] [data-testid=error-accountId]");
  assert.match(await page.textContent("[data-testid=error-accountId]"), /Company Information/);
  await page.fill("[data-testid=netsuite-keypair] [name=accountId]", wizard.netsuite_account_id);
  await page.fill("[data-testid=netsuite-keypair] [name=clientId]", wizard.netsuite_client_id);
  await page.click("[data-testid=netsuite-keypair] button[type=submit]");
  await page.waitForSelector("[data-testid=certificate-pem]");
  const pem = await page.textContent("[data-testid=certificate-pem]");
  assert.match(pem, /^-----BEGIN CERTIFICATE-----\n[\s\S]+\n-----END CERTIFICATE-----\n?$/);
  assert.ok((await page.$$("[data-testid=netsuite-steps] li")).length >= 2, "the NetSuite steps, numbered");
  // The same certificate as a file to upload (made in the page: the CSP lets it through).
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("[data-testid=download-pem]")]);
  assert.equal(download.suggestedFilename(), "ml-connector.pem");
  assert.equal(readFileSync(await download.path(), "utf8"), pem);
  await shot("wizard-netsuite");

  // What a person does in NetSuite's M2M setup page, here the simulator's stand-in.
  const r = await fetch(wizard.netsuite_upload_url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ client_id: wizard.netsuite_client_id, certificate_pem: pem }),
  });
  const uploaded = await r.json();
  assert.ok(r.ok, JSON.stringify(uploaded));
  await page.fill("[data-testid=netsuite-certificate] [name=certificateId]", uploaded.certificate_id);
  await page.click("[data-testid=netsuite-certificate] button[type=submit]");
  await page.waitForSelector("[data-testid=netsuite-done]");
  assert.ok((await page.textContent("[data-testid=netsuite-done]")).includes(uploaded.certificate_id));
  await page.click("[data-testid=wizard-netsuite] [data-testid=next]");
});

test("Check: every check passes", async () => {
  await page.waitForSelector("[data-testid=wizard-check]");
  await page.waitForSelector("[data-testid=test-result]", { timeout: 60_000 });
  const checks = await page.$$eval("[data-testid=checks] li", (lis) =>
    lis.map((li) => `${li.dataset.status} ${li.textContent}`));
  assert.ok(checks.length > 0);
  assert.deepEqual(checks.filter((c) => !/^(pass|skipped) /.test(c)), [], "all green");
  assert.equal(await page.getAttribute("[data-testid=test-result]", "data-ok"), "true");
  await shot("wizard-check");
  await page.click("[data-testid=wizard-check] [data-testid=next]");
});

const status = "[data-testid=dry-run-status]";

test("See if we fit: the unmapped product is listed; mapping it runs the dry run again without it", async () => {
  await page.waitForSelector("[data-testid=wizard-dry-run]");
  await page.waitForSelector(`${status}[data-state=succeeded]`, { timeout: 120_000 });
  assert.match(await page.textContent(status), /looked at \d+ invoices and charges/);
  const totals = await page.$$eval("[data-testid=would-post] tbody tr", (rows) => rows.map((r) => r.textContent));
  assert.ok(totals.length > 0, "what would post, per currency");
  const row = `[data-testid=dry-run-unmapped] tr[data-product="${wizard.unmapped_product}"]`;
  await page.waitForSelector(row);
  await shot("wizard-dry-run");

  await page.fill(`${row} input[name=netsuite_item_id]`, wizard.unmapped_item_id);
  await page.click(`${row} button[data-testid=map]`);
  await page.waitForFunction(([status, row]) =>
    document.querySelector(status)?.dataset.state === "succeeded" && !document.querySelector(row),
  [status, row], { timeout: 120_000 });
  assert.match(await page.textContent("[data-testid=notice]"), /mapped/);
  assert.ok(await page.$("[data-testid=wizard-dry-run] [data-testid=next]"), "a way on");
  // Nothing posts yet: the overview says so and leads back to the wizard, at the step left.
  await page.click("nav >> text=Overview");
  await page.click("[data-testid=setup-link] a");
  await page.waitForSelector("[data-step=live][aria-current=step]");
});

test("Go live with the last 30 days; a new Stripe invoice appears on the Events page by itself", async () => {
  await page.waitForSelector("[data-testid=go-live]");
  await page.check("[data-testid=go-live] [name=backfill]");
  await page.click("[data-testid=go-live] button[type=submit]");
  await page.waitForSelector("[data-testid=live-done]");
  await page.waitForSelector("[data-testid=backfill-status][data-state=succeeded]", { timeout: 120_000 });
  assert.match(await page.textContent("[data-testid=backfill-status]"), /\d+ to post/);
  assert.equal(await page.getAttribute("[data-step=live]", "data-done"), "true");
  await shot("wizard-live");

  await page.click("[data-testid=events-link]");
  await page.waitForSelector("[data-testid=events] tbody tr");
  await page.waitForSelector("[data-testid=live][data-state=live]");
  await page.evaluate(() => (window.__noReload = true));
  // A customer's subscription renews in Stripe: its invoice is paid and delivered to us.
  const subs = await stripe("/v1/subscriptions?limit=100");
  const sub = subs.data.find((s) => s.status === "active");
  assert.ok(sub, "an active subscription to renew");
  const renewed = await stripe(`/_sim/subscriptions/${sub.id}/renew`, "POST");
  const invoice = renewed.latest_invoice?.id ?? renewed.latest_invoice;
  assert.match(invoice, /^in_/);
  await page.waitForFunction((invoice) =>
    [...document.querySelectorAll("[data-testid=events] tbody tr")].some((tr) => tr.textContent.includes(invoice)),
  invoice, { timeout: 60_000 });
  assert.equal(await page.evaluate(() => window.__noReload), true, "the page was not reloaded");
  // And the month before it was posted: NetSuite has invoices from Stripe.
  const posted = await (async () => {
    for (let i = 0; i < 200; i++) {
      const s = await netsuiteState();
      if ((s.records.invoice ?? []).length > 0) return s.records.invoice.length;
      await new Promise((r) => setTimeout(r, 300));
    }
    return 0;
  })();
  assert.ok(posted > 0, "the backfill posted invoices to NetSuite");
});

test("the connection's page: settings, credentials, and a window replayed after a preview", async () => {
  await page.click("nav >> text=Connections");
  await page.click("[data-testid=connection-details]");
  await page.waitForSelector("[data-testid=credentials]");
  const creds = await page.$$eval("[data-testid=credentials] tr[data-credential]", (rows) => rows.map((r) => r.dataset.credential));
  for (const name of ["stripe/api_key", "stripe/webhook_secrets"]) assert.ok(creds.includes(name), `${name} in ${creds}`);
  assert.ok((await page.inputValue("[data-testid=settings-edit] [name=settings]")).includes(wizard.stripe_simulator));
  // Not JSON: said next to the field, nothing saved.
  await page.fill("[data-testid=settings-edit] [name=settings]", "{ not json");
  await page.click("[data-testid=settings-edit] button[type=submit]");
  await page.waitForSelector("[data-testid=settings-edit] [data-testid=error-settings]");

  await page.click("[data-testid=replay-window] button[type=submit]");
  await page.waitForSelector("[data-testid=replay-count]");
  assert.match(await page.textContent("[data-testid=replay-count]"), /^\d+ events would be replayed/);
  await page.click("[data-testid=replay-confirm]");
  await page.waitForFunction(() => /0 to go/.test(document.querySelector("[data-testid=replay-progress]")?.textContent ?? ""),
    null, { timeout: 60_000 });
  await signOut(page);
});

test("a second company sees none of the first's", async () => {
  await signUp(page, "Zeta Books", "zeta-books", "zed@zeta.example");
  await page.waitForSelector("[data-testid=wizard-stripe] [name=connectionName]");
  await page.click("nav >> text=Events");
  await page.waitForSelector("[data-testid=no-connections]");
  const own = await asPage("{ connections { nodes { handle } } }");
  assert.deepEqual(own.body.data.connections.nodes, []);
  const theirs = await asPage("query($id: ID!) { connection(id: $id) { handle dryRun { id } } }", { id: connectionId });
  assert.equal(theirs.body.data?.connection, null, JSON.stringify(theirs.body));
});

test("without a public address: the key and the endpoint's signing secret pasted by hand", async () => {
  await page.click("nav >> text=Overview");
  await page.click("[data-testid=no-connections] a");
  await page.waitForSelector("[data-testid=wizard-stripe]");
  await page.click("[data-testid=stripe-self-hosted] summary");
  const form = "[data-testid=stripe-manual]";
  await page.fill(`${form} [name=connectionName]`, "On premises");
  await page.fill(`${form} [name=apiKey]`, wizard.stripe_api_key);
  await page.fill(`${form} [name=webhookSecrets]`, `whsec_${"ab12".repeat(8)}`);
  await page.click(`${form} button[type=submit]`);
  await page.waitForSelector("[data-testid=wizard-stripe] [data-testid=next]");
  assert.match(await page.textContent("[data-testid=notice]"), /saved/);
  // The address to give Stripe by hand is this connection's own.
  const own = await asPage("{ connections { nodes { handle webhookPath credentials { name } } } }");
  const [c] = own.body.data.connections.nodes;
  assert.equal(c.handle, "on-premises");
  assert.deepEqual(c.credentials.map((k) => k.name).sort(), ["stripe/api_key", "stripe/webhook_secrets"]);
  assert.ok((await page.textContent("[data-testid=webhook-address]")).endsWith(c.webhookPath));
  await signOut(page);
  assert.deepEqual(run.pageErrors, [], "no script error or CSP violation");
});
