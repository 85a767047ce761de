// End-to-end test of the web player in a real Chromium (playwright-core driving Debian's
// chromium), against a whole stack that `tests/browser.rs` starts on free ports. It speaks to
// that harness on stdout/stdin: it prints `STOP <edge>` and waits for `STOPPED` to have an edge
// stopped mid-play. Everything else it checks itself; it exits non-zero on the first failure.
//
// Environment: CADENZA_URL (the control plane), CADENZA_CHROMIUM (the browser),
// CADENZA_UPLOAD (a WAV file to upload), CADENZA_SCREENSHOTS (a directory for the PNGs).

import { createInterface } from "node:readline";
import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = env("CADENZA_URL");
const shots = env("CADENZA_SCREENSHOTS");
mkdirSync(shots, { recursive: true });
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const figures = {};

let current = "start";
const step = (name) => {
  current = name;
  console.log(`step: ${name}`);
};
const check = (condition, message) => {
  if (!condition) throw new Error(`${current}: ${message}`);
};

const browser = await chromium.launch({
  executablePath: env("CADENZA_CHROMIUM"),
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
  ],
});

/** A fresh browser profile with a page that records console errors. */
async function session(viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  page.on("pageerror", (error) => errors.push(String(error)));
  page.setDefaultTimeout(20_000);
  return { context, page, errors };
}

const playerState = (page) =>
  page.evaluate(() => {
    const { player, audio } = window.cadenza;
    const state = player.state();
    return {
      ...state,
      track: state.track?.title ?? null,
      currentTime: audio.currentTime,
      mediaError: audio.error ? audio.error.code : null,
      firstAudioMs: player.firstAudioMs.slice(),
      queue: player.queue.map((track) => track.title),
      gainDb: player.gainDb(),
    };
  });

async function waitFor(page, what, predicate, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await playerState(page);
    if (predicate(last)) return last;
    await page.waitForTimeout(100);
  }
  throw new Error(`${current}: ${what} did not happen; player: ${JSON.stringify(last)}`);
}

async function axe(page, name) {
  // Evaluated through the debugging protocol: the page's content security policy (rightly)
  // refuses inline scripts.
  await page.evaluate(readFileSync(require.resolve("axe-core/axe.min.js"), "utf8"));
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const serious = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(
    serious.length === 0,
    `axe on ${name}: ${serious.map((v) => `${v.id} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`).join("; ")}`,
  );
}

const stamp = Date.now().toString(36);
const email = `e2e-${stamp}@example.com`;
const password = "correct horse battery staple";
const title = `Lighthouse Signal ${stamp}`;

// ---- An artist signs up, subscribes and uploads ----
const { page, errors } = await session();
step("sign up");
await page.goto(`${url}/#/signup`);
await page.getByLabel("First name").fill("Ada");
await page.getByLabel("Last name").fill("Lovelace");
await page.getByLabel("Email").fill(email);
await page.getByLabel("Mobile").fill("+44 7700 900123");
await page.getByLabel("Address").fill("12 St James's Square, London");
await page.getByLabel("Password (10 characters or more)").fill(password);
await page.getByLabel("I am").selectOption("artist");
await page.getByRole("button", { name: "Sign up" }).click();
await page.getByRole("heading", { name: "Account" }).waitFor();

step("profile");
await page.getByLabel("Address").fill("10 Downing Street, London");
await page.getByRole("button", { name: "Save profile" }).click();
await page.getByText("Profile saved.").waitFor();
await page.reload();
check((await page.getByLabel("Address").inputValue()) === "10 Downing Street, London", "the address was not saved");

step("subscribe");
await page.getByRole("link", { name: "Choose Premium", exact: true }).click();
await page.getByText("4242 4242 4242 4242").first().waitFor();
await page.getByRole("button", { name: /^Pay/ }).click();
await page.getByText(/Paid\. Welcome to Premium/).waitFor();
await page.getByRole("heading", { name: "Account" }).waitFor();
await page.getByText("Your plan", { exact: true }).first().waitFor();
check(await page.locator(".plan.current h3").textContent() === "Premium", "the current plan is not Premium");
await page.screenshot({ path: `${shots}/account-desktop.png`, fullPage: true });

step("upload");
await page.goto(`${url}/#/upload`);
await page.locator("#upload-file").setInputFiles(env("CADENZA_UPLOAD"));
await page.locator("#upload-title").fill(title);
await page.getByRole("button", { name: "Upload" }).click();
await page.locator("#upload-status a").waitFor({ timeout: 120_000 });
check((await page.locator("#upload-progress").getAttribute("value")) === "100", "the bar did not reach 100");
check((await page.locator("#upload-status").textContent()).startsWith("Ready"), "the track is not ready");
await page.screenshot({ path: `${shots}/upload-desktop.png`, fullPage: true });

step("search as you type");
// The index follows the bus: the new track is searchable within a moment.
let found = false;
for (let i = 0; i < 50 && !found; i++) {
  await page.locator("#search").fill("");
  await page.locator("#search").pressSequentially("lighthuose sig", { delay: 20 }); // a typo
  found = await page
    .locator("#suggestions li", { hasText: title })
    .first()
    .waitFor({ timeout: 1000 })
    .then(() => true, () => false);
}
check(found, "the uploaded track is not suggested");
check((await page.locator("#suggestions mark").count()) > 0, "no highlights");
await page.screenshot({ path: `${shots}/search-desktop.png` });
await page.locator("#search").press("ArrowDown");
check((await page.locator("#search").getAttribute("aria-activedescendant")) === "suggestion-0", "arrow keys do not move");
await page.locator("#search").press("Enter");

step("play");
let state = await waitFor(page, "playback of the uploaded track", (s) => s.track === title && s.currentTime > 1.5 && s.playing);
check(state.mediaError === null && state.error === null, `playback error: ${JSON.stringify(state)}`);
check(state.ad === null, "a premium listener heard an ad");
figures.first_audio_ms = Math.round(state.firstAudioMs[0]);
figures.gain_db = state.gainDb;
console.log(`time to first audio: ${figures.first_audio_ms} ms`);

step("queue and next");
await page.goto(`${url}/#/search?q=waltz`);
await page.getByRole("button", { name: "Add Minor Waltz to the queue" }).click();
await page.locator("#next").click();
state = await waitFor(page, "the next track", (s) => s.track === "Minor Waltz" && s.currentTime > 0.5 && s.playing);
check(state.queue.length === 2, `queue: ${state.queue}`);
figures.first_audio_next_ms = Math.round(state.firstAudioMs[1]);

step("gapless: the next track without a gap");
await page.goto(`${url}/#/search?q=drift`);
await page.getByRole("button", { name: "Play Pentatonic Drift", exact: true }).first().click();
state = await waitFor(page, "Pentatonic Drift", (s) => s.track === "Pentatonic Drift" && s.currentTime > 0.5 && s.playing);
await page.goto(`${url}/#/search?q=waltz`);
await page.getByRole("button", { name: "Add Minor Waltz to the queue" }).click();
const boundary = await page.evaluate(async () => {
  const { player, audio } = window.cadenza;
  // Near the end of the first track (waiting for the seek, which may wait for data itself).
  const seeked = new Promise((resolve) => audio.addEventListener("seeked", resolve, { once: true }));
  player.seek(player.state().duration - 4);
  await seeked;
  let waiting = 0;
  audio.addEventListener("waiting", () => (waiting += 1));
  const samples = [];
  const started = performance.now();
  while (performance.now() - started < 9000) {
    samples.push({ wall: performance.now(), time: audio.currentTime, track: player.state().track?.title ?? null });
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { samples, waiting, src: audio.src.slice(0, 5) };
});
const switched = boundary.samples.findIndex((sample) => sample.track === "Minor Waltz");
check(switched > 0, `the queue did not move on: ${JSON.stringify(boundary.samples.slice(-3))}`);
check(boundary.src === "blob:", "not one MediaSource");
// One clock across the boundary: it never stalls and never goes back to 0.
let worst = 0;
for (let i = 1; i < boundary.samples.length; i++) {
  const [a, b] = [boundary.samples[i - 1], boundary.samples[i]];
  if (b.wall - a.wall > 20 && a.time > 1) {
    check(b.time >= a.time, `the clock went back at the boundary: ${a.time} -> ${b.time}`);
    worst = Math.max(worst, (b.wall - a.wall) / 1000 - (b.time - a.time));
  }
}
const aroundSwitch = boundary.samples.slice(Math.max(1, switched - 10), switched + 10);
check(aroundSwitch.every((sample) => sample.time > 10), "the clock restarted at the next track");
check(boundary.waiting === 0, `the element waited ${boundary.waiting} times`);
check(worst < 0.15, `the audio clock fell ${Math.round(worst * 1000)} ms behind the wall clock`);
figures.gapless_worst_lag_ms = Math.round(worst * 1000);

step("playlist");
await page.goto(`${url}/#/search?q=${encodeURIComponent("lighthouse")}`);
await page.getByRole("button", { name: `Add ${title} to a playlist` }).click();
await page.getByLabel("New playlist name").fill("Road Trip");
await page.getByRole("button", { name: "Create and add" }).click();
await page.getByText("Added to Road Trip.").waitFor();
await page.goto(`${url}/#/search?q=drift`);
await page.getByRole("button", { name: "Add Pentatonic Drift to a playlist" }).click();
await page.getByRole("button", { name: /^Road Trip/ }).click();
// The first add's notice may still be showing; the rows below tell the two apart.
await page.getByText("Added to Road Trip.").last().waitFor();
await page.locator("dialog.picker").waitFor({ state: "detached" });
await page.goto(`${url}/#/playlists`);
await page.getByRole("link", { name: "Road Trip" }).click();
const rows = page.locator(".playlist-row");
await rows.nth(1).waitFor();
check((await rows.nth(0).getAttribute("data-track")) !== null, "no rows");
const firstBefore = await rows.nth(0).locator("button.link").textContent();
check(firstBefore === title, `first is ${firstBefore}`);
// Reorder by keyboard: the first row down one.
await rows.nth(0).focus();
await page.keyboard.press("Alt+ArrowDown");
await page.getByText("Order saved.").waitFor();
await page.screenshot({ path: `${shots}/playlist-desktop.png`, fullPage: true });
await axe(page, "playlist");
await page.reload();
await page.locator(".playlist-row").nth(1).waitFor();
const firstAfter = await page.locator(".playlist-row").nth(0).locator("button.link").textContent();
check(firstAfter === "Pentatonic Drift", `after reload the first is ${firstAfter}`);
state = await playerState(page);
check(state.queue.includes("Minor Waltz"), `the queue was not kept across the reload: ${state.queue}`);

step("home");
await page.goto(`${url}/#/`);
await page.locator("section h2").first().waitFor();
await axe(page, "home");
await page.screenshot({ path: `${shots}/home-desktop.png`, fullPage: true });

step("failover: an edge stopped mid-play");
await page.evaluate(() => localStorage.setItem("cadenza.bufferSeconds", "6"));
await page.reload();
await page.goto(`${url}/#/search?q=${encodeURIComponent("lighthouse")}`);
await page.getByRole("button", { name: `Play ${title}`, exact: true }).first().click();
state = await waitFor(page, "playback before the stop", (s) => s.track === title && s.currentTime > 1 && s.playing);
const primary = state.node;
check(primary, "no node in use");
console.log(`STOP ${primary}`);
const answer = await lines.next();
check(answer.value === "STOPPED", `the harness answered ${answer.value}`);
const stoppedAt = state.currentTime;
state = await waitFor(
  page,
  "playback past the buffer from the fallback",
  (s) => s.currentTime > stoppedAt + 14 && s.node !== primary,
  60_000,
);
check(state.mediaError === null && state.error === null, `error after failover: ${JSON.stringify(state)}`);
figures.failover = `${primary} -> ${state.node}`;
await page.evaluate(() => localStorage.removeItem("cadenza.bufferSeconds"));
// The stopped node's refused connections are logged by the browser; nothing else may be.
const unexpected = errors.filter((e) => !/ERR_CONNECTION_REFUSED|Failed to load resource/.test(e));
check(unexpected.length === 0, `console errors: ${unexpected.join(" | ")}`);
await page.context().close();

// ---- A free listener hears the ad first ----
step("free tier: the ad first");
const free = await session();
// A new listener: on the free package, with no ads heard yet this hour.
await free.page.goto(`${url}/#/signup`);
await free.page.getByLabel("First name").fill("Grace");
await free.page.getByLabel("Last name").fill("Hopper");
await free.page.getByLabel("Email").fill(`free-${stamp}@example.com`);
await free.page.getByLabel("Mobile").fill("+1 202 555 0143");
await free.page.getByLabel("Address").fill("Arlington, Virginia");
await free.page.getByLabel("Password (10 characters or more)").fill(password);
await free.page.getByRole("button", { name: "Sign up" }).click();
await free.page.getByRole("heading", { name: "Account" }).waitFor();
await free.page.goto(`${url}/#/search?q=drift`);
await free.page.getByRole("button", { name: "Play Pentatonic Drift" }).click();
state = await waitFor(free.page, "the ad", (s) => s.ad !== null && s.currentTime > 0.3 && s.playing);
check(await free.page.locator("#ad-badge").isVisible(), "no ad badge");
check(await free.page.locator("#next").isDisabled(), "the ad can be skipped");
await free.page.screenshot({ path: `${shots}/ad-desktop.png` });
state = await waitFor(free.page, "the track after the ad", (s) => s.ad === null && s.track === "Pentatonic Drift" && s.position > 0.5, 40_000);
check(state.mediaError === null, "media error after the ad");
const freeErrors = free.errors.filter((e) => !/Failed to load resource/.test(e));
check(freeErrors.length === 0, `console errors: ${freeErrors.join(" | ")}`);
await free.context.close();

// ---- Phone-sized ----
step("phone layout");
const phone = await session({ width: 390, height: 844 });
await phone.page.goto(`${url}/#/`);
await phone.page.locator("section h2").first().waitFor();
await axe(phone.page, "home on a phone");
await phone.page.screenshot({ path: `${shots}/home-phone.png`, fullPage: true });
await phone.page.goto(`${url}/#/search?q=minor`);
await phone.page.locator("table.tracks").waitFor();
await phone.page.screenshot({ path: `${shots}/search-phone.png`, fullPage: true });
await phone.page.goto(`${url}/#/account`);
await phone.page.getByRole("heading", { name: "Account" }).waitFor();
await phone.page.screenshot({ path: `${shots}/account-phone.png`, fullPage: true });
check(phone.errors.length === 0, `console errors: ${phone.errors.join(" | ")}`);
await phone.context.close();

await browser.close();
console.log(`figures: ${JSON.stringify(figures)}`);
console.log("e2e: passed");
process.exit(0);
