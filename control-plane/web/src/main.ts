// Cadenza's web player: the layout (header with search, navigation, the page, the player bar
// and its queue), the hash router, and the keyboard shortcuts.

import { api, token, User } from "./api";
import { clock, cover, h, icon, mount } from "./dom";
import { Player } from "./player";
import * as views from "./views";

const audio = h("audio", { id: "audio", "aria-hidden": "true" });
const player = new Player(audio);
const main = h("main", { id: "main", tabindex: "-1" });
const accountLink = h("div", { class: "account" });

const ctx: views.Context = {
  main,
  player,
  user: null,
  refreshUser,
  go: (hash: string) => {
    if (location.hash === hash) void route();
    else location.hash = hash;
  },
};

async function refreshUser(): Promise<void> {
  ctx.user = null;
  if (token()) {
    try {
      ctx.user = await api.me();
    } catch {
      ctx.user = null;
    }
  }
  mount(
    accountLink,
    ctx.user
      ? h("a", { href: "#/account", class: "button ghost" }, `${ctx.user.first_name} ${ctx.user.last_name}`)
      : [h("a", { href: "#/login", class: "button ghost" }, "Log in"), h("a", { href: "#/signup", class: "button primary" }, "Sign up")],
  );
  renderNav();
}

// ---- Layout ----

const nav = h("nav", { "aria-label": "Main" });
function renderNav(): void {
  const user: User | null = ctx.user;
  const links: [string, string][] = [
    ["#/", "Home"],
    ["#/search", "Search"],
    ["#/playlists", "Playlists"],
  ];
  if (user && user.role !== "listener") links.push(["#/upload", "Upload"]);
  links.push(["#/account", user ? "Account" : "Plans"]);
  const here = location.hash || "#/";
  mount(
    nav,
    h("ul", {}, links.map(([href, label]) =>
      h("li", {}, h("a", { href, "aria-current": (href === "#/" ? here === "#/" || here === "" : here.startsWith(href)) ? "page" : null }, label)))),
  );
}

const bar = h("section", { class: "player", "aria-label": "Player" });
const queuePanel = h("aside", { class: "queue", id: "queue", "aria-label": "Queue", hidden: true });

document.body.append(
  h("a", { href: "#main", class: "skip" }, "Skip to content"),
  h("header", { class: "top" },
    h("a", { href: "#/", class: "logo", "aria-label": "Cadenza home" }, "Cadenza"),
    views.searchBox(ctx),
    accountLink),
  h("div", { class: "layout" }, nav, main, queuePanel),
  bar,
  audio,
  h("div", { id: "toast", class: "toasts", role: "status", "aria-live": "polite" }),
);

// ---- The player bar ----

const playButton = h("button", { class: "round primary", id: "play-pause", "aria-label": "Play", onclick: () => void player.toggle() }, icon("play"));
const previousButton = h("button", { class: "icon", id: "previous", "aria-label": "Previous track", onclick: () => void player.previous() }, icon("previous"));
const nextButton = h("button", { class: "icon", id: "next", "aria-label": "Next track", onclick: () => void player.next() }, icon("next"));
const shuffleButton = h("button", { class: "icon", id: "shuffle", "aria-label": "Shuffle", "aria-pressed": "false", onclick: () => player.setShuffle(!player.shuffle) }, icon("shuffle"));
const repeatButton = h("button", { class: "icon", id: "repeat", "aria-label": "Repeat: off", onclick: () => player.cycleRepeat() }, icon("repeat"));
const seek = h("input", { type: "range", id: "seek", min: "0", max: "0", step: "0.1", value: "0", "aria-label": "Position" });
const elapsed = h("span", { class: "time", id: "elapsed" }, "0:00");
const total = h("span", { class: "time", id: "duration" }, "0:00");
const volume = h("input", { type: "range", id: "volume", min: "0", max: "1", step: "0.01", value: String(player.getVolume()), "aria-label": "Volume" });
const normalise = h("input", { type: "checkbox", id: "normalise", checked: player.normalise });
const queueButton = h("button", { class: "icon", id: "queue-toggle", "aria-label": "Queue", "aria-expanded": "false", "aria-controls": "queue",
  onclick: () => toggleQueue() }, icon("queue"));
const nowPlaying = h("div", { class: "now" });
let seeking = false;

seek.addEventListener("input", () => {
  seeking = true;
  elapsed.textContent = clock(Number(seek.value));
});
seek.addEventListener("change", () => {
  seeking = false;
  player.seek(Number(seek.value));
});
volume.addEventListener("input", () => player.setVolume(Number(volume.value)));
normalise.addEventListener("change", () => player.setNormalise(normalise.checked));

mount(
  bar,
  nowPlaying,
  h("div", { class: "transport" },
    h("div", { class: "buttons" }, shuffleButton, previousButton, playButton, nextButton, repeatButton),
    h("div", { class: "timeline" }, elapsed, seek, total)),
  h("div", { class: "side" },
    h("label", { class: "inline", title: "Play every track at the same loudness (−14 LUFS)" }, normalise, h("span", {}, "Normalise")),
    volume, queueButton),
);

let shownTrack: string | null = null;
function renderBar(): void {
  const state = player.state();
  const track = state.track;
  if (track?.id !== shownTrack || state.ad !== null) {
    shownTrack = state.ad !== null ? null : track?.id ?? null;
    mount(
      nowPlaying,
      track ? cover(track.title, track.artwork, 64) : null,
      track
        ? h("div", { class: "now-text" },
            state.ad !== null
              ? [h("span", { class: "badge ad", id: "ad-badge" }, "Ad"), h("span", { class: "strong" }, ` ${state.ad}`),
                 h("div", { class: "muted small" }, `Then: ${track.title} — ${track.artist}`)]
              : [h("a", { class: "strong", href: `#/track/${encodeURIComponent(track.id)}`, id: "now-title" }, track.title),
                 h("div", { class: "muted small" }, h("a", { href: `#/artist/${encodeURIComponent(track.artist)}` }, track.artist))])
        : h("span", { class: "muted" }, "Nothing playing"),
    );
  }
  if (playButton.dataset.shows !== String(state.playing)) {
    playButton.dataset.shows = String(state.playing);
    playButton.replaceChildren(icon(state.playing ? "pause" : "play"));
  }
  playButton.setAttribute("aria-label", state.playing ? "Pause" : "Play");
  const locked = state.ad !== null;
  nextButton.disabled = locked;
  previousButton.disabled = locked;
  seek.disabled = locked || !track;
  shuffleButton.setAttribute("aria-pressed", String(player.shuffle));
  repeatButton.setAttribute("aria-label", `Repeat: ${player.repeat}`);
  repeatButton.classList.toggle("on", player.repeat !== "off");
  if (repeatButton.dataset.shows !== player.repeat) {
    repeatButton.dataset.shows = player.repeat;
    repeatButton.replaceChildren(icon(player.repeat === "one" ? "repeatOne" : "repeat"));
  }
  shuffleButton.classList.toggle("on", player.shuffle);
  seek.max = String(state.duration);
  if (!seeking) {
    seek.value = String(state.position);
    elapsed.textContent = locked ? "Ad" : clock(state.position);
  }
  total.textContent = clock(state.duration);
  bar.classList.toggle("in-ad", locked);
  bar.dataset.node = state.node ?? "";
  if (state.error) bar.dataset.error = state.error;
  else delete bar.dataset.error;
  document.title = track && state.playing ? `${track.title} — ${track.artist} · Cadenza` : "Cadenza";
  if (!queuePanel.hidden) renderQueue();
}
player.addEventListener("changed", renderBar);

// ---- The queue ----

function toggleQueue(): void {
  queuePanel.hidden = !queuePanel.hidden;
  queueButton.setAttribute("aria-expanded", String(!queuePanel.hidden));
  if (!queuePanel.hidden) renderQueue();
}

let queueSignature = "";
function renderQueue(): void {
  const signature = `${player.index}|${player.queue.map((t) => t.id).join(",")}`;
  if (signature === queueSignature && queuePanel.childElementCount > 0) return;
  queueSignature = signature;
  let dragged = -1;
  mount(
    queuePanel,
    h("div", { class: "row spread" }, h("h2", {}, "Queue"), h("button", { class: "ghost", id: "queue-clear", onclick: () => player.clear() }, "Clear")),
    h("ol", { class: "queue-list" }, player.queue.map((track, index) => {
      const item = h("li", {
        class: index === player.index ? "current" : "",
        draggable: "true",
        tabindex: "0",
        "aria-label": `${track.title} by ${track.artist}${index === player.index ? ", playing" : ""}. Alt+Up or Alt+Down to move, Delete to remove.`,
        ondragstart: () => (dragged = index),
        ondragover: (event: Event) => event.preventDefault(),
        ondrop: (event: Event) => { event.preventDefault(); if (dragged >= 0) player.move(dragged, index); dragged = -1; },
        onkeydown: (event: KeyboardEvent) => {
          if (event.altKey && event.key === "ArrowUp") { event.preventDefault(); player.move(index, index - 1); }
          else if (event.altKey && event.key === "ArrowDown") { event.preventDefault(); player.move(index, index + 1); }
          else if (event.key === "Delete") { event.preventDefault(); player.remove(index); }
          else if (event.key === "Enter") { event.preventDefault(); void player.playTracks(player.queue, index); }
        },
      },
      h("span", { class: "strong" }, track.title), h("span", { class: "muted small" }, ` ${track.artist}`),
      index !== player.index ? h("button", { class: "icon", "aria-label": `Remove ${track.title} from the queue`, onclick: () => player.remove(index) }, icon("close")) : null);
      return item;
    })),
  );
}

// ---- Routing ----

async function route(): Promise<void> {
  renderNav();
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, search] = hash.split("?");
  const params = new URLSearchParams(search ?? "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const [page, argument] = parts;
  switch (page) {
    case undefined:
      return views.home(ctx);
    case "search":
      return views.searchPage(ctx, params.get("q") ?? "");
    case "track":
      return views.trackPage(ctx, argument);
    case "artist":
      return views.artistPage(ctx, argument);
    case "album":
      return views.albumPage(ctx, argument, params.get("artist"));
    case "playlists":
      return views.playlistsPage(ctx);
    case "playlist":
      return views.playlistPage(ctx, argument);
    case "login":
      return views.logInPage(ctx);
    case "signup":
      return views.signUpPage(ctx);
    case "account":
      return views.accountPage(ctx);
    case "checkout":
      return views.checkoutPage(ctx, argument);
    case "upload":
      return views.uploadPage(ctx);
    default:
      mount(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Go home")));
  }
}
window.addEventListener("hashchange", () => void route());

// ---- Keyboard shortcuts (not while typing) ----

document.addEventListener("keydown", (event) => {
  const target = event.target as HTMLElement;
  if (target.closest("input, textarea, select, [contenteditable], dialog")) return;
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  const state = player.state();
  switch (event.key) {
    case " ":
    case "k":
      if (target.closest("button, a")) return;
      event.preventDefault();
      void player.toggle();
      break;
    case "ArrowRight":
      if (event.shiftKey) void player.next();
      else player.seek(state.position + 5);
      break;
    case "ArrowLeft":
      if (event.shiftKey) void player.previous();
      else player.seek(state.position - 5);
      break;
    case "ArrowUp":
      event.preventDefault();
      player.setVolume(player.getVolume() + 0.05);
      volume.value = String(player.getVolume());
      break;
    case "ArrowDown":
      event.preventDefault();
      player.setVolume(player.getVolume() - 0.05);
      volume.value = String(player.getVolume());
      break;
    case "m":
      audio.muted = !audio.muted;
      break;
    case "s":
      player.setShuffle(!player.shuffle);
      break;
    case "r":
      player.cycleRepeat();
      break;
    case "q":
      toggleQueue();
      break;
    case "/":
      event.preventDefault();
      (document.getElementById("search") as HTMLInputElement).focus();
      break;
  }
});

// For tests and the curious: the player itself.
(window as unknown as { cadenza: unknown }).cadenza = { player, audio };

void refreshUser().then(route);
renderBar();
