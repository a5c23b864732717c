// Mission control in a real browser: Debian's headless Chromium driven by
// playwright-core. Run by tests/mission_control_browser.rs against `missions demo`:
//
//   node tests/browser/check.mjs <mission page URL> [screenshot.png]
//
// Opens the mission's page, waits for the mission to settle (done, aborted or
// paused) while the page follows it live, checks a `mission` event arrives after
// that without a reload, compares the figures on the page with the API's (fetched
// in the same browser context), does the same for the page as the server renders
// it without JavaScript, and saves a full-page screenshot. Exits 1 on any mismatch.

import { chromium } from "playwright-core";

const [url, shot = "target/mission-control.png"] = process.argv.slice(2);
if (!url) {
  console.error("usage: node check.mjs <mission page URL> [screenshot.png]");
  process.exit(2);
}
const page_url = new URL(url);
const api_url = new URL(page_url.pathname.replace(/^\/missions\//, "/api/missions/"), page_url).href;
const executablePath = process.env.MISSIONS_CHROMIUM || "/usr/bin/chromium";
const SETTLE_MS = Number(process.env.MISSIONS_BROWSER_SETTLE_MS || 240000);

const problems = [];
const log = (...a) => console.log("[browser]", ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// What a person reads on the page, by data-testid.
function readPage() {
  const text = (id, root = document) => {
    const el = root.querySelector(`[data-testid="${id}"]`);
    return el ? el.textContent.trim() : null;
  };
  const num = (id) => {
    const t = text(id);
    return t === null ? null : Number(t);
  };
  return {
    phase: text("phase"),
    paused: text("paused"),
    milestone: { done: num("milestones-done"), total: num("milestones-total") },
    features: { done: num("features-done"), total: num("features-total") },
    assertions: { done: num("assertions-done"), total: num("assertions-total") },
    spent: text("budget-spent"),
    limit: text("budget-limit"),
    tokens: {
      input_tokens: num("tokens-in"),
      output_tokens: num("tokens-out"),
      cache_read_tokens: num("tokens-cache-read"),
      cache_write_tokens: num("tokens-cache-write"),
    },
    contract: [...document.querySelectorAll('[data-testid^="contract-row-"]')].map((row) => ({
      testid: row.dataset.testid,
      id: text("id", row),
      text: text("text", row),
      features: text("covered-by", row),
      status: text("status", row),
      verdicts: row.querySelectorAll('[data-testid^="verdict-"]').length,
    })),
    active_job: text("active-job-key"),
    timeline: document.querySelectorAll('[data-testid="timeline-row"]').length,
    plan_pr: text("plan-pr"),
    roles: [...document.querySelectorAll('[data-testid^="role-"]')].map((r) => r.dataset.testid.slice(5)),
  };
}

// What the API says the page must show, in the page's terms.
function expected(v) {
  return {
    phase: v.phase,
    paused: v.paused ? "paused: " + v.paused : null,
    milestone: v.milestone,
    features: v.features,
    assertions: v.assertions,
    spent: v.budget.spent,
    limit: v.budget.limit ? "$" + v.budget.limit : "no limit",
    tokens: {
      input_tokens: v.budget.tokens.input_tokens,
      output_tokens: v.budget.tokens.output_tokens,
      cache_read_tokens: v.budget.tokens.cache_read_tokens,
      cache_write_tokens: v.budget.tokens.cache_write_tokens,
    },
    contract: v.contract.map((row) => ({
      testid: "contract-row-" + row.id,
      id: row.id,
      text: row.text,
      features: row.features.join(", "),
      status: row.status,
      verdicts: row.verdicts.length,
    })),
    active_job: v.active_job ? v.active_job.key : null,
    timeline: v.timeline.length,
    plan_pr: v.plan_pr === null ? null : "plan #" + v.plan_pr,
    roles: Object.keys(v.budget.by_role),
  };
}

function compare(label, got, want) {
  const g = JSON.stringify(got, null, 1);
  const w = JSON.stringify(want, null, 1);
  if (g !== w) {
    problems.push(`${label}: the page and the API differ\npage: ${g}\napi:  ${w}`);
    return false;
  }
  log(`${label}: the page's figures equal the API's`);
  return true;
}

function check(cond, message) {
  if (!cond) problems.push(message);
  return cond;
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // Root in CI containers: Chromium's sandbox needs user namespaces it may not have.
  // No network but loopback here: nothing in the background may try to call out.
  args: [
    "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  let navigations = 0;
  page.on("framenavigated", (f) => {
    if (f === page.mainFrame()) navigations += 1;
  });

  // A clock the check can run ahead, to watch the active job's elapsed time tick.
  await page.clock.install();

  // The mission appears once the App has seen the labelled issue: until then, 404.
  let response = null;
  for (const deadline = Date.now() + 60000; ; ) {
    response = await page.goto(url, { waitUntil: "load" });
    if (response && response.status() === 200) break;
    if (Date.now() > deadline) throw new Error(`${url} answered ${response && response.status()} for a minute`);
    await sleep(500);
  }
  const csp = response.headers()["content-security-policy"] || "";
  check(/script-src 'self'/.test(csp) && /default-src 'self'/.test(csp), `no strict Content-Security-Policy: "${csp}"`);
  const loads = navigations;

  await page.waitForFunction(() => window.__updates >= 1, null, { timeout: 20000 });
  log("the feed's first `mission` event arrived");
  // Survives only if the page is never reloaded.
  await page.evaluate(() => { window.__marker = "still the same page"; });

  const api = () => page.evaluate(async (u) => {
    const r = await fetch(u, { headers: { accept: "application/json" } });
    if (!r.ok) throw new Error(`${u}: ${r.status}`);
    return r.json();
  }, api_url);

  // Follow the mission until it settles. While a job runs: a screenshot, and its
  // elapsed time must tick client-side (judged only when the same job stays on
  // screen with no event in between).
  const activeJob = () => page.evaluate(() => ({
    key: document.querySelector('[data-testid="active-job-key"]')?.textContent ?? null,
    elapsed: document.querySelector('[data-testid="active-job-elapsed"]')?.textContent ?? null,
    updates: window.__updates,
  }));
  let view = await api();
  let running_shot = false;
  let ticked = null;
  for (const deadline = Date.now() + SETTLE_MS; ; ) {
    if (["done", "aborted"].includes(view.phase) || view.paused) break;
    if (Date.now() > deadline) {
      problems.push(`the mission did not settle within ${SETTLE_MS / 1000}s (phase ${view.phase})`);
      break;
    }
    const before = await activeJob();
    if (before.key !== null) {
      if (!running_shot) {
        await page.screenshot({ path: shot.replace(/\.png$/, "-running.png"), fullPage: true });
        running_shot = true;
      }
      if (ticked === null) {
        // The page's clock, run 5 s ahead at once (timers fire): the demo's jobs are short.
        await page.clock.runFor(5000);
        const after = await activeJob();
        if (after.key === before.key && after.updates === before.updates) {
          ticked = after.elapsed !== before.elapsed;
          log(`the active job ${before.key}'s elapsed time went ${before.elapsed} → ${after.elapsed}`);
        }
      }
    }
    await sleep(300);
    view = await api();
  }
  log(`the mission settled: ${view.phase}${view.paused ? ` (paused: ${view.paused})` : ""}`);
  if (ticked === null) log("no job stayed on screen long enough to watch its elapsed time tick");
  else check(ticked, "the active job's elapsed time did not tick");

  // A live update after that, without a reload.
  const seen = await page.evaluate(() => window.__updates);
  await page.waitForFunction((n) => window.__updates > n, seen, { timeout: 20000 });
  const updates = await page.evaluate(() => window.__updates);
  log(`a live update arrived (${updates} \`mission\` events since load)`);
  check((await page.evaluate(() => window.__marker)) === "still the same page", "the page was reloaded (the marker is gone)");
  check(navigations === loads, `the page navigated ${navigations - loads} more time(s) after load`);
  const live = await page.getByTestId("live").textContent();
  check(live.startsWith("live"), `the live indicator says "${live}"`);

  // The figures, as the script rendered them from the last event, against the API now.
  const settled = await api();
  compare("live page", await page.evaluate(readPage), expected(settled));
  check(settled.contract.length > 0, "the demo mission has no contract to show");
  for (const row of settled.contract) {
    const status = await page.getByTestId(`contract-row-${row.id}`).getByTestId("status").textContent();
    check(status === row.status, `contract row ${row.id}: page says ${status}, API ${row.status}`);
  }
  const chart = page.getByTestId("cost-chart").locator("svg path.series");
  check((await chart.count()) >= (settled.usage.length ? 2 : 0), "the cost chart has no lines");

  await page.screenshot({ path: shot, fullPage: true });
  log(`screenshot: ${shot}`);

  // The page as the server renders it, without JavaScript.
  const plain = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1280, height: 900 } });
  const noscript = await plain.newPage();
  const r = await noscript.goto(url);
  check(r.status() === 200, `without JavaScript: ${r.status()}`);
  const still = await (await plain.request.get(api_url)).json();
  compare("server-rendered page", await noscript.evaluate(readPage), expected(still));
  await plain.close();

  // The list links to the mission.
  await page.goto(new URL("/", page_url).href);
  const row = page.getByTestId("mission-row").filter({ has: page.locator(`a[href="${page_url.pathname}"]`) });
  check((await row.count()) === 1, `the mission list has no row linking to ${page_url.pathname}`);
  await page.screenshot({ path: shot.replace(/\.png$/, "-list.png"), fullPage: true });
  await context.close();
} catch (e) {
  problems.push(`error: ${e.stack || e}`);
} finally {
  await browser.close();
}

if (problems.length) {
  console.error(`[browser] ${problems.length} problem(s):\n` + problems.join("\n"));
  process.exit(1);
}
log("mission control checks passed");
