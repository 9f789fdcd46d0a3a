// The dashboard in Debian's chromium (headless, driven over the DevTools
// protocol by puppeteer-core): every page loads without console errors,
// shows the demo's accounts, positions and decisions, takes a new decision
// from the stream without a reload, and a pause from the page (confirmed)
// pauses the account. Prints one JSON line with what it saw; screenshots go
// to ARTIFACTS. Usage: node dashboard.mjs BASE_URL TOKEN ARTIFACTS
import puppeteer from "puppeteer-core";

const [base, token, artifacts] = process.argv.slice(2);
const out = { errors: [], pages: {}, steps: [] };
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const step = (s) => out.steps.push(s);
try {
  const page = await browser.newPage();
  page.on("console", (m) => { if (m.type() === "error") out.errors.push("console: " + m.text()); });
  page.on("pageerror", (e) => out.errors.push("page: " + e.message));
  page.on("requestfailed", (r) => { if (!r.url().includes("/api/v1/stream")) out.errors.push("request failed: " + r.url()); });
  const external = [];
  page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("ws") && !r.url().startsWith("data:")) external.push(r.url()); });
  page.on("dialog", (d) => { step("dialog: " + d.message()); d.accept(); });
  await page.setViewport({ width: 1280, height: 900 });
  const first = await page.goto(base + "/", { waitUntil: "networkidle0" });
  out.first_load = { status: first && first.status(), type: first && first.headers()["content-type"] };
  await page.waitForSelector("#token", { timeout: 10000 }).catch(async () => {
    out.first_load.body = (await page.content()).slice(0, 300);
  });
  await page.type("#token", token);
  await page.click("#token-form button");
  await page.waitForFunction(() => document.body.dataset.loaded === "overview", { timeout: 20000 });
  await page.waitForFunction(() => document.querySelector("#live").textContent === "live", { timeout: 20000 });
  step("signed in, stream live");
  out.pages.overview = await page.evaluate(() => ({
    accounts: [...document.querySelectorAll("#accounts .card")].map((c) => c.dataset.account),
    equity: [...document.querySelectorAll("#accounts [data-field=equity]")].map((e) => e.textContent),
    positions: document.querySelectorAll("#positions tbody tr td:nth-child(2)").length,
    position_symbols: [...document.querySelectorAll("#positions tbody tr")].map((r) => r.children[1] && r.children[1].textContent),
    decisions: document.querySelectorAll("#feed-short li").length,
    curves: document.querySelectorAll("#equity polyline").length,
  }));
  await page.screenshot({ path: artifacts + "/dashboard-overview.png", fullPage: true });
  // a new decision arrives over the stream: the feed changes without a reload
  const firstBefore = await page.evaluate(() => { const li = document.querySelector("#feed li"); return li ? li.dataset.account + li.dataset.cycle : ""; });
  const navs = [];
  page.on("framenavigated", () => navs.push(1));
  await page.waitForFunction((before) => {
    const li = document.querySelector("#feed li");
    return li && (li.dataset.account + li.dataset.cycle) !== before;
  }, { timeout: 30000 }, firstBefore);
  out.live_update = { reloaded: navs.length > 0 };
  step("a new decision appeared");
  // click a decision: its prompt and answer
  await page.evaluate(() => document.querySelector("#feed-short li").click()); // the feed re-renders as decisions come
  await page.waitForSelector("#detail[open] #detail-answer", { timeout: 10000 });
  out.detail = await page.evaluate(() => ({ answer: document.querySelector("#detail-answer").textContent.length,
                                            prompt: document.querySelector("#detail-prompt").textContent.length }));
  await page.screenshot({ path: artifacts + "/dashboard-decision.png" });
  await page.evaluate(() => document.querySelector("#detail .close").click());
  // every other page loads
  for (const tab of ["decisions", "diary", "health", "research"]) {
    await page.evaluate((t) => { location.hash = "#" + t; }, tab);
    await page.waitForFunction((t) => document.body.dataset.loaded === t, { timeout: 15000 }, tab);
    out.pages[tab] = await page.evaluate(() => ({
      rows: document.querySelectorAll("section:not([hidden]) li, section:not([hidden]) tbody tr").length,
      experiments: [...document.querySelectorAll("table.leaderboard")].map((t) => t.dataset.experiment),
      variants: document.querySelectorAll("table.leaderboard tbody tr").length }));
    await page.screenshot({ path: `${artifacts}/dashboard-${tab}.png`, fullPage: true });
  }
  // pause from the page
  await page.evaluate(() => { location.hash = "#overview"; });
  await page.waitForFunction(() => document.body.dataset.loaded === "overview", { timeout: 15000 });
  const target = process.env.PAUSE_ACCOUNT || "trend";
  await page.evaluate((t) => document.querySelector(`button[data-action=pause][data-account=${t}]`).click(), target);
  await page.waitForSelector(`.card[data-account=${target}] .pill.warn`, { timeout: 15000 });
  step("paused " + target);
  await page.screenshot({ path: artifacts + "/dashboard-paused.png", fullPage: true });
  // a phone
  await page.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true });
  await page.reload({ waitUntil: "networkidle0" });
  await page.waitForFunction(() => document.body.dataset.loaded === "overview", { timeout: 20000 });
  out.phone = await page.evaluate(() => ({ width: document.documentElement.scrollWidth, cards: document.querySelectorAll("#accounts .card").length }));
  await page.screenshot({ path: artifacts + "/dashboard-phone.png", fullPage: true });
  out.external = external;
} catch (e) {
  out.failed = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
