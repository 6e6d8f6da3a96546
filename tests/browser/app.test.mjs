// The web dashboard at /app, a GraphQL client, in a real browser: Debian's Chromium, headless,
// driven by playwright-core, against `ml-connector demo --dashboard` with sign-up open.
//
// A new company signs up in the app, adds a connection and sees it, opens its events, signs
// out; a second company signs up and sees none of the first's. Then the demo's own person
// (`app_email`/`app_password` in the ready file) signs in to the default company, which has live
// data: replays a failed invoice from the Failed list and sees it turn Done without a reload,
// opens the event, invites a viewer (who sees no Replay button, and no form on the connection's
// page), maps the waiting product. The NetSuite simulator's state is the proof that the invoice
// exists once. Every page runs under the CSP: a violation or a script error fails the run. The
// setup wizard has its own file, wizard.test.mjs.
//
// Environment: see harness.mjs (MLC_BIN, CHROMIUM, MLC_SCREENSHOTS_DIR, MLC_APP_DEBUG).

import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import {
  run, start, stop, watch, graphql, asPage as asPageOf, shot as shotOf, signUp as signUpOn, signOut as signOutOf,
  chromiumPath, PASSWORD,
} from "./harness.mjs";

let ready, page;
const pageErrors = run.pageErrors;
const asPage = (query, variables) => asPageOf(page, query, variables);
const shot = (name) => shotOf(page, `app-${name}`);
const signUp = (company, id, email) => signUpOn(page, company, id, email);
const signOut = () => signOutOf(page);

async function defaultConnection() {
  const data = await graphql("{ connections { nodes { id handle } } }");
  return data.connections.nodes.find((c) => c.handle === "default").id;
}

async function netsuiteInvoices(externalId) {
  const state = await (await fetch(`${ready.netsuite_simulator}/_sim/state`)).json();
  return state.records.invoice.filter((r) => r.externalId === externalId);
}

before(async () => {
  ready = await start("mlc-app-");
  assert.equal(ready.app_email, "demo@example.com");
  assert.ok(ready.app_password?.length >= 12, "the demo gives its person a password");
  assert.ok(run.output.includes(ready.app_password), "and prints it");
  assert.ok(ready.failed > 0 && ready.waiting > 0, "the demo leaves work to do");
  page = watch(await run.browser.newPage());
});

// On a failure, what the page showed (and what went wrong in it) is in the output.
afterEach(async (t) => {
  if (process.env.MLC_APP_DEBUG && page) {
    console.log(`--- ${t.name}: ${page.url()}\n${await page.textContent("body").catch(() => "")}\n${pageErrors.join("\n")}`);
  }
});

after(stop);

test("/app is served under a strict CSP and asks to sign in", async () => {
  const r = await fetch(ready.app_url);
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /^text\/html/);
  const csp = r.headers.get("content-security-policy");
  for (const part of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"]) {
    assert.ok(csp.includes(part), `${part} in ${csp}`);
  }
  assert.equal(r.headers.get("x-content-type-options"), "nosniff");
  const html = await r.text();
  assert.ok(!/<script(?![^>]*\bsrc=)[^>]*>/.test(html), "no inline script");
  assert.ok(!/style=|<style/.test(html), "no inline style");
  await page.goto(ready.app_url);
  await page.waitForSelector("[data-testid=sign-in]");
  assert.match(page.url(), /#\/signin$/);
});

let firstConnectionId;

test("a new company signs up, adds a connection, opens its events, signs out", async () => {
  await page.goto(`${ready.app_url}#/signup`);
  await page.waitForSelector("[data-testid=sign-up]");
  // A guessable password: the API's words, next to the field.
  await page.fill("[name=companyName]", "Acme Books");
  await page.fill("[name=email]", "ana@acme.example");
  await page.fill("[name=password]", "password1234");
  await page.click("[data-testid=sign-up] button[type=submit]");
  await page.waitForSelector("[data-field=password] [data-testid=error-password]");
  assert.match(await page.textContent("[data-testid=error-password]"), /choose another password/);

  await signUp("Acme Books", "acme-books", "ana@acme.example");
  // A new company lands on the setup wizard; the overview points back to it.
  await page.waitForSelector("[data-testid=wizard-stripe]");
  await page.click("nav >> text=Overview");
  await page.waitForSelector("[data-testid=no-connections] a[href='#/setup']");

  await page.click("nav >> text=Connections");
  await page.waitForSelector("[data-testid=connection-create]");
  await page.fill("[data-testid=connection-create] [name=name]", "Production");
  await page.fill("[data-testid=connection-create] [name=handle]", "Not Valid!");
  await page.click("[data-testid=connection-create] button[type=submit]");
  await page.waitForSelector("[data-testid=error-handle]");
  await page.fill("[data-testid=connection-create] [name=handle]", "production");
  await page.click("[data-testid=connection-create] button[type=submit]");
  await page.waitForSelector("[data-testid=connections] [data-handle=production]");
  assert.match(await page.textContent("[data-handle=production]"), /Draft/);
  assert.match(await page.textContent("[data-handle=production]"), /\/webhooks\/stripe\/whc_/);
  // "Test": every check with its fix (nothing is configured yet).
  await page.click("[data-handle=production] [data-testid=test]");
  await page.waitForSelector("[data-handle=production] [data-testid=test-result]");
  assert.match(await page.textContent("[data-handle=production] .checks"), /How to fix/);
  await shot("connections");

  const shell = await asPage("{ connections { nodes { id handle } } }");
  firstConnectionId = shell.body.data.connections.nodes[0].id;

  await page.click("nav >> text=Events");
  await page.waitForSelector("[data-testid=events]");
  await page.waitForSelector("[data-testid=empty]");
  await page.waitForSelector("[data-testid=live][data-state=live]");
  await signOut();
  // Signed out: the session no longer opens the API.
  const after = await asPage("{ viewer { tenantId } }");
  assert.equal(after.status, 401);
});

test("a second company sees none of the first's", async () => {
  await signUp("Zeta Books", "zeta-books", "zed@zeta.example");
  await page.click("nav >> text=Overview");
  await page.waitForSelector("[data-testid=no-connections]");
  await page.click("nav >> text=Connections");
  await page.waitForSelector("[data-testid=connections] [data-testid=no-connections]");
  assert.equal(await page.$("[data-handle=production]"), null);
  const own = await asPage("{ connections { nodes { handle } } members { email } }");
  assert.deepEqual(own.body.data.connections.nodes, []);
  assert.deepEqual(own.body.data.members, [{ email: "zed@zeta.example" }]);
  const theirs = await asPage("query($id: ID!) { connection(id: $id) { handle } }", { id: firstConnectionId });
  assert.equal(theirs.body.data.connection, null);
  await signOut();
});

let failedRow;

test("the demo company: replaying a failed invoice turns it Done without a reload", async () => {
  await page.goto(`${ready.app_url}#/signin`);
  await page.waitForSelector("[data-testid=sign-in]");
  await page.fill("[name=email]", ready.app_email);
  await page.fill("[name=password]", "not-the-password-at-all");
  await page.click("[data-testid=sign-in] button[type=submit]");
  await page.waitForSelector("[data-testid=error-password]");
  await page.fill("[name=password]", ready.app_password);
  await page.click("[data-testid=sign-in] button[type=submit]");
  await page.waitForSelector("[data-testid=count-failed]");
  assert.equal(Number(await page.textContent("[data-connection=default] [data-testid=count-failed] .n")), ready.failed);
  assert.equal(Number(await page.textContent("[data-connection=default] [data-testid=count-waiting] .n")), ready.waiting);
  assert.match(await page.textContent("[data-connection=default] [data-testid=health]"), /NetSuite login/);
  await shot("overview");

  await page.click("nav >> text=Failed");
  await page.waitForSelector("[data-testid=events] tbody tr");
  await page.waitForSelector("[data-testid=live][data-state=live]");
  // The failed event that got as far as asking NetSuite (its siblings wait on the same sale).
  const c = await defaultConnection();
  const failed = await graphql(
    `query($c: ID!) { connection(id: $c) { events(first: 100, filter: { status: FAILED }) {
       nodes { id eventId } } } }`, { c });
  let externalId;
  for (const e of failed.connection.events.nodes) {
    const d = await graphql("query($id: ID!) { event(id: $id) { netsuiteRequest } }", { id: e.id });
    if (d.event.netsuiteRequest?.externalId) {
      [failedRow, externalId] = [e, d.event.netsuiteRequest.externalId];
      break;
    }
  }
  assert.ok(failedRow, "a failed event with a NetSuite request");
  assert.equal((await netsuiteInvoices(externalId)).length, 0, "not in NetSuite before the replay");
  const row = `[data-testid=events] tr[data-event-id="${failedRow.eventId}"]`;
  await page.waitForSelector(row);
  await shot("failed");
  await page.evaluate(() => (window.__noReload = true));
  await page.click(`${row} button[data-testid=replay]`);
  await page.waitForSelector("[data-testid=notice]");
  assert.match(await page.textContent("[data-testid=notice]"), /queued for replay/);
  // The subscription brings the new state into the row.
  await page.waitForSelector(`${row} .badge[data-status=succeeded]`, { timeout: 60_000 });
  assert.equal(await page.evaluate(() => window.__noReload), true, "the page was not reloaded");
  assert.equal((await netsuiteInvoices(externalId)).length, 1, "exactly one NetSuite invoice");

  // Its page: the audit timeline, what went to NetSuite.
  await page.click(`${row} a`);
  await page.waitForSelector("[data-testid=audit]");
  assert.equal(await page.getAttribute("[data-testid=event-status] .badge", "data-status"), "succeeded");
  const timeline = await page.textContent("[data-testid=audit]");
  for (const step of ["received", "replayed", "posted"]) assert.ok(timeline.includes(step), step);
  // Dates in the connection's zone (the demo posts in UTC), not the browser's (Los Angeles here).
  assert.match(timeline, /:\d\d [AP]M UTC/);
  assert.doesNotMatch(timeline, / P[SD]T/);
  await page.click("[data-testid=netsuite-request] summary");
  assert.ok((await page.textContent("[data-testid=netsuite-request] pre")).includes(externalId));
  await shot("event");
});

test("an invited viewer reads but has no Replay button", async () => {
  await page.click("nav >> text=Team");
  await page.waitForSelector("[data-testid=members]");
  assert.match(await page.textContent("[data-testid=members]"), /demo@example\.com/);
  await page.fill("[data-testid=invite] [name=email]", "vi@example.com");
  await page.selectOption("[data-testid=invite] [name=role]", "VIEWER");
  await page.click("[data-testid=invite] button[type=submit]");
  await page.waitForSelector("[data-testid=invite-link] code");
  const link = await page.textContent("[data-testid=invite-link] code");
  assert.match(link, /\/app\/#\/accept\?token=mli_/);

  // The viewer, in a browser of their own (its own cookies).
  const other = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ["--no-sandbox", "--disable-gpu"] });
  try {
    const vp = await other.newPage();
    watch(vp);
    await vp.goto(link);
    await vp.waitForSelector("[data-testid=accept]");
    await vp.fill("[name=password]", PASSWORD);
    await vp.click("[data-testid=accept] button[type=submit]");
    await vp.waitForSelector("[data-page=overview]");
    await vp.click("nav >> text=Waiting");
    await vp.waitForSelector("[data-testid=events] tbody tr");
    assert.equal(await vp.$("button[data-testid=replay]"), null, "no Replay for a viewer");
    assert.equal(await vp.$("nav >> text=API keys"), null);
    // The connection's page: its settings and credentials to read, and no form to change them.
    await vp.click("nav >> text=Connections");
    await vp.click("[data-handle=default] [data-testid=connection-details]");
    await vp.waitForSelector("[data-testid=credentials]");
    assert.ok(await vp.$("[data-testid=settings] pre"), "the settings, to read");
    for (const f of ["settings-edit", "stripe-key", "webhook-rotate", "netsuite-credentials", "replay-window", "reconcile"]) {
      assert.equal(await vp.$(`[data-testid=${f}]`), null, `no ${f} form for a viewer`);
    }
  } finally {
    await other.close();
  }
});

test("the connection's page reconciles a period and names each sale not in NetSuite", async () => {
  await page.click("nav >> text=Connections");
  await page.click("[data-handle=default] [data-testid=connection-details]");
  await page.waitForSelector("[data-testid=reconcile]");
  // The demo's sales are today's (UTC); the browser is in Los Angeles: a window around today.
  const day = (n) => new Date(Date.now() + n * 86_400_000).toISOString().slice(0, 10);
  await page.fill("[data-testid=reconcile] [name=from]", day(-2));
  await page.fill("[data-testid=reconcile] [name=to]", day(1));
  await page.click("[data-testid=reconcile] button[type=submit]");
  await page.waitForSelector("[data-testid=reconcile-status][data-state=succeeded]", { timeout: 120_000 });
  await page.waitForSelector("[data-testid=reconcile-table] tbody tr");
  const c = await defaultConnection();
  const api = await graphql(
    `query($c: ID!) { connection(id: $c) { reconciliation { from to clean
       differences { stripeObjectId term } currencies { currency } } } }`, { c });
  const r = api.connection.reconciliation;
  assert.equal(r.from, day(-2));
  // The product still waiting for its item: its sales are not in NetSuite, each one named.
  assert.equal(r.clean, false);
  assert.ok(r.differences.some((d) => d.term === "sales"), JSON.stringify(r.differences));
  const shownObjects = await page.$$eval("[data-testid=reconcile-differences] li",
    (lis) => lis.map((l) => l.getAttribute("data-object")));
  assert.deepEqual(shownObjects, r.differences.map((d) => d.stripeObjectId));
  const currencies = await page.$$eval("[data-testid=reconcile-table] tr[data-term=sales]",
    (trs) => trs.map((t) => t.getAttribute("data-currency")));
  assert.deepEqual(currencies, r.currencies.map((x) => x.currency));
  assert.match(await page.textContent("[data-testid=reconcile-status]"), /difference/);
  await shot("reconcile");
});

test("mapping the waiting product releases its sales", async () => {
  await page.click("nav >> text=Mappings");
  await page.waitForSelector("[data-testid=unmapped]");
  const row = `tr[data-product="${ready.product}"]`;
  assert.match(await page.textContent(row), /EUR|USD|JPY|KWD/);
  await page.fill(`${row} input[name=netsuite_item_id]`, ready.item);
  await page.click(`${row} button[data-testid=map]`);
  await page.waitForSelector("[data-testid=notice]");
  assert.match(await page.textContent("[data-testid=notice]"), /released/);
  await page.waitForSelector("[data-testid=mappings]");
  assert.ok((await page.textContent("[data-testid=mappings]")).includes(ready.product));
  await page.click("nav >> text=API keys");
  await page.fill("[data-testid=key-create] [name=name]", "scripts");
  await page.click("[data-testid=key-create] button[type=submit]");
  await page.waitForSelector("[data-testid=new-secret] code");
  assert.match(await page.textContent("[data-testid=new-secret] code"), /^mlck_/);
  await signOut();
  assert.deepEqual(pageErrors, [], "no script error or CSP violation");
});
