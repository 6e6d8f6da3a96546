// The dashboard in a real browser: Debian's Chromium, headless, driven by playwright-core,
// against `ml-connector demo --dashboard` (both simulators and the connector in one process).
//
// What a finance person does: sign in, read the overview, find an event by its NetSuite ID and
// open it, replay a failed invoice and see it posted, map the waiting product and see its sales
// post. The NetSuite simulator's own state is the proof that each invoice exists exactly once.
// What the pages should show is checked through the GraphQL API, with the owner API key the
// demo makes for its default tenant (`api_key` in its ready file).
//
// Environment: MLC_BIN (the binary; default target/debug/ml-connector), CHROMIUM (default
// /usr/bin/chromium), MLC_SCREENSHOTS_DIR (write screenshots of the main pages there).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { chromium } from "playwright-core";

const repo = resolve(import.meta.dirname, "../..");
const bin = process.env.MLC_BIN ?? join(repo, "target/debug/ml-connector");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const shots = process.env.MLC_SCREENSHOTS_DIR;
const token = randomBytes(32).toString("hex");

let demo, ready, browser, page, scratch, demoOutput = "";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, check, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${demoOutput}`);
    await sleep(300);
  }
}

/** A GraphQL request with the demo's API key; returns `data` (and fails on any error). */
async function graphql(query, variables = {}) {
  const r = await fetch(new URL("/graphql", ready.url), {
    method: "POST",
    headers: { authorization: `Bearer ${ready.api_key}`, "content-type": "application/json" },
    body: JSON.stringify({ query, variables }),
  });
  const body = await r.json();
  assert.equal(r.status, 200, JSON.stringify(body));
  assert.ok(!body.errors, JSON.stringify(body.errors));
  return body.data;
}

let connectionId;

/** The default connection's global ID (the dashboard's connection). */
async function connection() {
  if (!connectionId) {
    const data = await graphql("{ connections { nodes { id handle } } }");
    connectionId = data.connections.nodes.find((c) => c.handle === "default").id;
  }
  return connectionId;
}

/** The default connection's events matching `filter`, newest first (up to 100). */
async function events(filter) {
  const data = await graphql(
    `query($c: ID!, $f: EventFilterInput) { connection(id: $c) {
       events(first: 100, filter: $f) { nodes { id eventId objectId status } } } }`,
    { c: await connection(), f: filter },
  );
  return data.connection.events.nodes;
}

/** One event in full, by its Stripe event ID. */
async function event(eventId) {
  const row = (await events({ stripeId: eventId })).find((e) => e.eventId === eventId);
  assert.ok(row, `${eventId} is listed`);
  const data = await graphql(
    `query($id: ID!) { event(id: $id) { eventId objectId status netsuiteRequest netsuiteResponse
       auditTrail { step } } }`,
    { id: row.id },
  );
  return data.event;
}

/** The default connection's jobs by state. */
async function counts() {
  const data = await graphql(
    "query($c: ID!) { connection(id: $c) { jobCounts { queued running waiting succeeded failed } } }",
    { c: await connection() },
  );
  return data.connection.jobCounts;
}

/** The NetSuite simulator's invoices with this external ID. */
async function netsuiteInvoices(externalId) {
  const state = await (await fetch(`${ready.netsuite_simulator}/_sim/state`)).json();
  return state.records.invoice.filter((r) => r.externalId === externalId);
}

async function shot(name) {
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`), fullPage: false });
}

before(async () => {
  assert.ok(existsSync(bin), `${bin} is missing: run cargo build first`);
  assert.ok(existsSync(chromiumPath), `${chromiumPath} is missing: apt-get install chromium`);
  if (shots) mkdirSync(shots, { recursive: true });
  scratch = mkdtempSync(join(tmpdir(), "mlc-browser-"));
  const readyFile = join(scratch, "ready.json");
  demo = spawn(
    bin,
    ["demo", "--dashboard", "--customers", "12", "--listen", "127.0.0.1:0", "--ready-file", readyFile],
    { env: { ...process.env, MLC__ADMIN__TOKEN: token, MLC__ADMIN__TIME_ZONE: "America/New_York" } },
  );
  demo.stdout.on("data", (d) => (demoOutput += d));
  demo.stderr.on("data", (d) => (demoOutput += d));
  ready = await until("the demo to be ready", () =>
    existsSync(readyFile) && readFileSync(readyFile, "utf8").length > 0
      ? JSON.parse(readFileSync(readyFile, "utf8"))
      : demo.exitCode !== null
        ? Promise.reject(new Error(`demo exited: ${demo.exitCode}\n${demoOutput}`))
        : null,
    180_000);
  assert.ok(ready.api_key?.startsWith("mlck_"), "the demo gives an API key");
  assert.ok(ready.failed > 0, "the demo leaves a failed invoice");
  assert.ok(ready.waiting > 0, "the demo leaves sales waiting for a mapping");
  // A fresh profile each run; the flags keep Chromium off the network (none is reachable here).
  browser = await chromium.launchPersistentContext(join(scratch, "profile"), {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1280, height: 860 },
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  page = await browser.newPage();
});

after(async () => {
  await browser?.close();
  if (demo && demo.exitCode === null) {
    demo.kill("SIGTERM");
    await Promise.race([new Promise((r) => demo.on("exit", r)), sleep(10_000)]);
  }
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

test("signing in: a wrong token is refused, the right one opens the overview", async () => {
  await page.goto(ready.url);
  assert.match(page.url(), /\/login\?next=%2F$/);
  await shot("sign-in");
  await page.fill("input[name=token]", "not-the-token");
  await page.click("button[type=submit]");
  await page.waitForSelector("[data-testid=login-error]");
  await page.fill("input[name=token]", token);
  await page.click("button[type=submit]");
  await page.waitForSelector("[data-testid=count-failed]");
  assert.equal(new URL(page.url()).pathname, "/");
  const failed = await page.textContent("[data-testid=count-failed] .n");
  const waiting = await page.textContent("[data-testid=count-waiting] .n");
  assert.equal(Number(failed), ready.failed);
  assert.equal(Number(waiting), ready.waiting);
  // Health in plain words: the NetSuite token's age, the last NetSuite error.
  const health = await page.textContent("[data-testid=health]");
  assert.match(health, /valid, obtained/);
  assert.match(health, /posting period/);
  // The token is never part of the page; the session cookie is not the token.
  assert.ok(!(await page.content()).includes(token));
  const cookies = await browser.cookies();
  const session = cookies.find((c) => c.name === "mlc_session");
  assert.ok(session && session.httpOnly && session.value !== token);
  await shot("overview");
});

test("finding an event by its NetSuite ID and opening it", async () => {
  // A posted invoice, as the finance person would have it: its NetSuite internal ID. The event
  // that posted it (its siblings only find it already posted) is the one to find: its answer
  // from NetSuite is an invoice's (`posted`; payments are `payment_applied`).
  let detail;
  for (const e of await events({ status: "SUCCEEDED" })) {
    const d = await event(e.eventId);
    if (d.netsuiteResponse?.netsuite_internal_id && d.auditTrail.some((a) => a.step === "posted")) {
      detail = d;
      break;
    }
  }
  assert.ok(detail, "an event that posted an invoice");
  const nsId = detail.netsuiteResponse.netsuite_internal_id;

  await page.click("nav >> text=Events");
  await page.waitForSelector("[data-testid=events]");
  await shot("events");
  await page.fill("input[name=q]", nsId);
  await page.click("[data-testid=filters] button[type=submit]");
  await page.waitForSelector(`tr[data-event-id="${detail.eventId}"]`);
  const rows = await page.$$("[data-testid=events] tbody tr");
  assert.ok(rows.length >= 1);
  await page.click(`tr[data-event-id="${detail.eventId}"] a`);
  await page.waitForSelector("[data-testid=audit]");
  await shot("event");
  assert.equal(await page.getAttribute("[data-testid=event-status] .badge", "data-status"), "succeeded");
  const records = await page.textContent("[data-testid=postings]");
  assert.ok(records.includes(nsId), "the NetSuite record is listed");
  const timeline = await page.textContent("[data-testid=audit]");
  for (const step of ["received", "fetched", "mapped", "posted"]) assert.ok(timeline.includes(step), step);
  // The raw event, the fetched object, the NetSuite request and answer are one click away.
  await page.click("[data-testid=netsuite-request] summary");
  assert.ok((await page.textContent("[data-testid=netsuite-request] pre")).includes("externalId"));
  await page.click("[data-testid=stripe-object] summary");
  assert.ok((await page.textContent("[data-testid=stripe-object] pre")).includes(detail.objectId));
  // Dates in the configured zone.
  assert.match(await page.textContent("[data-testid=audit]"), /\d{2}:\d{2}:\d{2} E[SD]T/);
});

test("replaying a failed invoice posts it once", async () => {
  await page.click("nav >> text=Failed");
  await page.waitForSelector("[data-testid=events]");
  await shot("failed");
  // A failed event that got as far as asking NetSuite (the others wait on the same sale).
  let row, externalId;
  for (const r of await page.$$("[data-testid=events] tbody tr")) {
    const d = await event(await r.getAttribute("data-event-id"));
    if (d.netsuiteRequest?.externalId) {
      [row, externalId] = [r, d.netsuiteRequest.externalId];
      break;
    }
  }
  assert.ok(row, "a failed event with a NetSuite request is listed");
  assert.equal((await netsuiteInvoices(externalId)).length, 0, "not in NetSuite before the replay");
  await row.$("button[data-testid=replay]").then((b) => b.click());
  await page.waitForSelector("[data-testid=notice]");
  assert.match(await page.textContent("[data-testid=notice]"), /queued for replay/);
  // The event page updates to Done once the worker has posted it.
  await until("the replayed event to post", async () => {
    await page.reload();
    return (await page.getAttribute("[data-testid=event-status] .badge", "data-status")) === "succeeded";
  });
  assert.ok((await page.textContent("[data-testid=postings]")).includes(externalId));
  const invoices = await netsuiteInvoices(externalId);
  assert.equal(invoices.length, 1, "exactly one NetSuite invoice");
  // Replaying the rest of the failed list changes nothing more in NetSuite.
  await page.click("nav >> text=Failed");
  const all = await page.$("[data-testid=replay-all]");
  if (all) {
    await all.click();
    await page.waitForSelector("[data-testid=notice]");
  }
  await until("no failed event left", async () => (await counts()).failed === 0);
  assert.equal((await netsuiteInvoices(externalId)).length, 1);
});

test("mapping the waiting product posts its sales", async () => {
  await page.click("nav >> text=Mappings");
  await page.waitForSelector("[data-testid=unmapped]");
  await shot("mappings");
  const row = `tr[data-product="${ready.product}"]`;
  assert.ok(await page.$(row), "the unmapped product is listed");
  assert.match(await page.textContent(row), /EUR|USD|JPY|KWD/);
  const before = await counts();
  assert.ok(before.waiting > 0);
  await page.fill(`${row} input[name=netsuite_item_id]`, ready.item);
  await page.click(`${row} button[data-testid=map]`);
  await page.waitForSelector("[data-testid=notice]");
  assert.match(await page.textContent("[data-testid=notice]"), /released/);
  await until("the waiting sales to post", async () => (await counts()).waiting === 0);
  await page.click("nav >> text=Waiting");
  await page.waitForSelector("[data-testid=empty]");
  // The NetSuite simulator now has invoice lines on the mapped item. Released sales are queued
  // (no longer waiting) before they run, so wait for the invoices themselves.
  const onItem = async () => {
    const state = await (await fetch(`${ready.netsuite_simulator}/_sim/state`)).json();
    return state.records.invoice.filter((inv) =>
      (inv.item?.items ?? []).some((l) => String(l.item?.id) === ready.item));
  };
  await until("invoices on the mapped item", async () => (await onItem()).length > 0);
  assert.ok((await onItem()).length > 0, "invoices were posted on the mapped item");
  await page.click("nav >> text=Mappings");
  await page.waitForSelector("[data-testid=mappings]");
  assert.ok((await page.textContent("[data-testid=mappings]")).includes(ready.product));
  await page.click("nav >> text=Overview");
  await page.waitForSelector("[data-testid=count-failed]");
  assert.equal(Number(await page.textContent("[data-testid=count-waiting] .n")), 0);
  assert.equal(Number(await page.textContent("[data-testid=count-failed] .n")), 0);
});

test("signing out ends the session", async () => {
  await page.click("form.signout button");
  await page.waitForSelector("[data-testid=login]");
  await page.goto(new URL("/failed", ready.url).href);
  assert.match(page.url(), /\/login/);
});
