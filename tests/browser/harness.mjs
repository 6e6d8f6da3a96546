// What the /app browser tests share: `ml-connector demo --dashboard` started for the run (its
// ready file read), Debian's Chromium driven by playwright-core, and small waiting helpers.
//
// Environment: MLC_BIN (the binary; default target/debug/ml-connector), CHROMIUM (default
// /usr/bin/chromium), MLC_SCREENSHOTS_DIR (write screenshots there), MLC_APP_DEBUG (print each
// page's text after each test).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { chromium } from "playwright-core";

export const repo = resolve(import.meta.dirname, "../..");
export const bin = process.env.MLC_BIN ?? join(repo, "target/debug/ml-connector");
export const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const shots = process.env.MLC_SCREENSHOTS_DIR;
export const PASSWORD = "lighthouse-marmalade-quarry-7";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The demo, its output so far, and the browser: filled by `start`. */
export const run = { demo: null, ready: null, output: "", browser: null, scratch: null, pageErrors: [] };

export async function until(what, check, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${run.output}`);
    await sleep(300);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Starts the demo with its dashboard and a persistent Chromium profile; returns the ready file. */
export async function start(prefix) {
  assert.ok(existsSync(bin), `${bin} is missing: run cargo build first`);
  assert.ok(existsSync(chromiumPath), `${chromiumPath} is missing: apt-get install chromium`);
  if (shots) mkdirSync(shots, { recursive: true });
  run.scratch = mkdtempSync(join(tmpdir(), prefix));
  const readyFile = join(run.scratch, "ready.json");
  // A port known before the start, so the service knows its public address (the wizard asks
  // Stripe to deliver webhooks there).
  const addr = `127.0.0.1:${await freePort()}`;
  run.demo = spawn(
    bin,
    ["demo", "--dashboard", "--customers", "12", "--listen", addr, "--ready-file", readyFile],
    {
      env: {
        ...process.env,
        MLC__ADMIN__TOKEN: randomBytes(32).toString("hex"),
        MLC__ADMIN__SIGNUP: "open",
        MLC__ADMIN__PUBLIC_URL: `http://${addr}`,
      },
    },
  );
  run.demo.stdout.on("data", (d) => (run.output += d));
  run.demo.stderr.on("data", (d) => (run.output += d));
  run.ready = await until("the demo to be ready", () =>
    existsSync(readyFile) && readFileSync(readyFile, "utf8").length > 0
      ? JSON.parse(readFileSync(readyFile, "utf8"))
      : run.demo.exitCode !== null
        ? Promise.reject(new Error(`demo exited: ${run.demo.exitCode}\n${run.output}`))
        : null,
    180_000);
  run.browser = await chromium.launchPersistentContext(join(run.scratch, "profile"), {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1280, height: 860 },
    // Not the demo's zone (UTC): the pages must show dates in the connection's zone.
    timezoneId: "America/Los_Angeles",
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  return run.ready;
}

export async function stop() {
  await run.browser?.close();
  if (run.demo && run.demo.exitCode === null) {
    run.demo.kill("SIGTERM");
    await Promise.race([new Promise((r) => run.demo.on("exit", r)), sleep(10_000)]);
  }
  if (run.scratch) rmSync(run.scratch, { recursive: true, force: true });
}

/** Script errors and CSP violations of a page end up in `run.pageErrors`. */
export function watch(p) {
  p.on("console", (m) => {
    // The 401 is the test's own request after signing out (asPage); anything else counts.
    if (m.type() === "error" && !/status of 401/.test(m.text())) {
      run.pageErrors.push(`${p.url()}: ${m.text()} ${JSON.stringify(m.location())}`);
    }
  });
  p.on("pageerror", (e) => run.pageErrors.push(String(e)));
  return p;
}

/** A GraphQL request with the demo's API key (the test's own view); returns `data`. */
export async function graphql(query, variables = {}) {
  const r = await fetch(new URL("/graphql", run.ready.url), {
    method: "POST",
    headers: { authorization: `Bearer ${run.ready.api_key}`, "content-type": "application/json" },
    body: JSON.stringify({ query, variables }),
  });
  const body = await r.json();
  assert.equal(r.status, 200, JSON.stringify(body));
  assert.ok(!body.errors, JSON.stringify(body.errors));
  return body.data;
}

/** A GraphQL query made by the page itself, with its session cookie (no API key). */
export async function asPage(page, query, variables = {}) {
  return page.evaluate(async ([query, variables]) => {
    const r = await fetch("/graphql", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query, variables }),
    });
    return { status: r.status, body: await r.json() };
  }, [query, variables]);
}

/** A screenshot named `name`.png in MLC_SCREENSHOTS_DIR, when set (`fullPage`: all of it). */
export async function shot(page, name, fullPage = false) {
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`), fullPage });
}

/** Fills the sign-up form (the page is on it) and submits it. */
export async function fillSignUp(page, company, id, email) {
  await page.waitForSelector("[data-testid=sign-up]");
  await page.fill("[name=companyName]", company);
  assert.equal(await page.inputValue("[name=companyId]"), id, "the company ID follows the name");
  await page.fill("[name=email]", email);
  await page.fill("[name=password]", PASSWORD);
  await page.click("[data-testid=sign-up] button[type=submit]");
}

/** Signs a new company up; it lands on the setup wizard, signed in. */
export async function signUp(page, company, id, email) {
  await page.goto(`${run.ready.app_url}#/signup`);
  await fillSignUp(page, company, id, email);
  await page.waitForSelector("[data-page=setup]");
  await page.waitForSelector("[data-testid=who]");
  assert.match(await page.textContent("[data-testid=who]"), new RegExp(id));
}

export async function signOut(page) {
  await page.click("[data-testid=sign-out]");
  await page.waitForSelector("[data-testid=sign-in]");
  assert.match(await page.textContent("[data-testid=notice]"), /signed out/);
}
