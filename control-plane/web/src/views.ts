// The pages: home, search, track, artist, album, playlists, a playlist, sign-up and log-in,
// account and plans (with the sandbox checkout), and upload. Each renders into the main
// region; the router in main.ts picks one by the location's hash.

import * as tus from "tus-js-client";
import {
  api,
  ApiError,
  HomeTrack,
  Package,
  PlaylistEntry,
  Section,
  token,
  Track,
  TrackDoc,
  TrackHit,
  TrackStatus,
  User,
} from "./api";
import { announce, clock, cover, h, highlighted, icon, mount, setMediaBase } from "./dom";
import type { Player } from "./player";

export interface Context {
  main: HTMLElement;
  player: Player;
  user: User | null;
  refreshUser: () => Promise<void>;
  go: (hash: string) => void;
}

export function trackOfDoc(doc: TrackDoc): Track {
  return {
    id: doc.id,
    title: doc.title,
    artist: doc.artist,
    album: doc.album,
    duration_ms: doc.duration_ms,
    explicit: doc.explicit,
    artwork: doc.artwork ?? {},
  };
}

function trackOfEntry(entry: PlaylistEntry): Track {
  return {
    id: entry.track_id,
    title: entry.name ?? "Unknown track",
    artist: entry.singer ?? "",
    album: entry.album,
    duration_ms: entry.duration_ms ?? 0,
    explicit: false,
    artwork: {},
  };
}

function errorText(error: unknown): string {
  return error instanceof ApiError ? error.message : String(error);
}

function heading(text: string): HTMLElement {
  const title = h("h1", { tabindex: "-1" }, text);
  queueMicrotask(() => title.focus({ preventScroll: true }));
  return title;
}

function needLogin(ctx: Context, what: string): boolean {
  if (ctx.user) return false;
  mount(
    ctx.main,
    heading(what),
    h("p", {}, "Log in or sign up to see this."),
    h("p", {}, h("a", { href: "#/login", class: "button" }, "Log in"), " ", h("a", { href: "#/signup" }, "Sign up")),
  );
  return true;
}

// ---- Track rows and actions ----

/** A dialog to add `track` to one of the listener's playlists or to a new one. */
export async function addToPlaylist(ctx: Context, track: Track): Promise<void> {
  if (!ctx.user) {
    announce("Log in to make playlists.", "error");
    return;
  }
  const dialog = h("dialog", { class: "picker", "aria-label": `Add ${track.title} to a playlist` });
  const close = () => {
    dialog.close();
    dialog.remove();
  };
  const list = h("ul", { class: "plain" });
  const nameInput = h("input", { id: "new-playlist-name", placeholder: "New playlist", "aria-label": "New playlist name" });
  const add = async (playlistId?: string) => {
    try {
      const name = nameInput.value.trim() || "My playlist";
      const answer = await api.addToPlaylist(track.id, playlistId, playlistId ? undefined : name);
      announce(answer.added ? `Added to ${answer.playlist.name}.` : `Already in ${answer.playlist.name}.`);
      close();
    } catch (error) {
      announce(errorText(error), "error");
    }
  };
  mount(
    dialog,
    h("h2", {}, "Add to playlist"),
    list,
    h("form", { class: "row", onsubmit: (event: Event) => { event.preventDefault(); void add(); } },
      nameInput, h("button", { type: "submit" }, "Create and add")),
    h("button", { class: "ghost", onclick: close }, "Cancel"),
  );
  document.body.append(dialog);
  dialog.showModal();
  try {
    const playlists = await api.playlists();
    mount(
      list,
      playlists.map((playlist) =>
        h("li", {}, h("button", { class: "link", onclick: () => void add(playlist.id) }, `${playlist.name} (${playlist.track_count})`)),
      ),
    );
  } catch (error) {
    mount(list, h("li", {}, errorText(error)));
  }
}

/** A table of tracks: play from any row, queue it, add it to a playlist. */
function trackTable(ctx: Context, tracks: Track[], hits?: TrackHit[]): HTMLElement {
  const rows = tracks.map((track, index) => {
    const hit = hits?.[index];
    return h(
      "tr",
      {},
      h("td", { class: "num" }, index + 1),
      h(
        "td",
        {},
        h("div", { class: "title-cell" },
          cover(track.title, track.artwork, 48),
          h("div", {},
            h("button", { class: "link strong", onclick: () => void ctx.player.playTracks(tracks, index), "aria-label": `Play ${track.title}` },
              ...(hit ? highlighted(hit.title, track.title) : [track.title])),
            track.explicit ? h("span", { class: "badge", title: "Explicit" }, "E") : null,
            h("div", { class: "muted" },
              h("a", { href: `#/artist/${encodeURIComponent(track.artist)}` }, ...(hit ? highlighted(hit.artist, track.artist) : [track.artist]))))),
      ),
      h("td", { class: "hide-narrow" }, track.album ? h("a", { href: `#/album/${encodeURIComponent(track.album)}?artist=${encodeURIComponent(track.artist)}` },
        ...(hit?.album ? highlighted(hit.album, track.album) : [track.album])) : ""),
      h("td", { class: "num" }, clock(track.duration_ms / 1000)),
      h("td", { class: "actions" },
        h("button", { class: "icon", "aria-label": `Add ${track.title} to the queue`, title: "Add to queue", onclick: () => { ctx.player.enqueue(track); announce(`${track.title} queued.`); } }, icon("plus")),
        h("button", { class: "icon", "aria-label": `Add ${track.title} to a playlist`, title: "Add to playlist", onclick: () => void addToPlaylist(ctx, track) }, icon("heart")),
        h("a", { class: "icon", href: `#/track/${encodeURIComponent(track.id)}`, "aria-label": `About ${track.title}`, title: "About" }, icon("info"))),
    );
  });
  return h(
    "table",
    { class: "tracks" },
    h("thead", {}, h("tr", {}, h("th", { class: "num", scope: "col" }, "#"), h("th", { scope: "col" }, "Title"),
      h("th", { class: "hide-narrow", scope: "col" }, "Album"), h("th", { class: "num", scope: "col" }, "Time"), h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")))),
    h("tbody", {}, rows),
  );
}

// ---- Home ----

function card(ctx: Context, tracks: HomeTrack[], index: number): HTMLElement {
  const track = tracks[index];
  const note =
    track.position_ms !== undefined
      ? `Stopped at ${clock(track.position_ms / 1000)}`
      : track.count !== undefined
        ? `${track.count} ${track.count === 1 ? "play" : "plays"}`
        : track.artist;
  return h(
    "li",
    { class: "card" },
    h("button", { class: "card-play", onclick: () => void ctx.player.playTracks(tracks, index), "aria-label": `Play ${track.title} by ${track.artist}` },
      cover(track.title, track.artwork), h("span", { class: "card-title" }, track.title)),
    h("div", { class: "muted small" }, track.count !== undefined || track.position_ms !== undefined ? `${track.artist} · ${note}` : note),
  );
}

function section(ctx: Context, section: Section): HTMLElement {
  const id = `section-${section.id}`;
  if (section.kind === "playlists") {
    const playlists = section.items as { id: string; name: string }[];
    return h("section", { "aria-labelledby": id },
      h("h2", { id }, section.title),
      h("ul", { class: "cards" }, playlists.map((playlist) =>
        h("li", { class: "card" }, h("a", { class: "card-play", href: `#/playlist/${encodeURIComponent(playlist.id)}` },
          cover(playlist.name, {}), h("span", { class: "card-title" }, playlist.name))))));
  }
  const tracks = section.items as HomeTrack[];
  return h("section", { "aria-labelledby": id },
    h("div", { class: "row spread" }, h("h2", { id }, section.title),
      h("button", { class: "ghost", onclick: () => void ctx.player.playTracks(tracks, 0) }, "Play all")),
    h("ul", { class: "cards" }, tracks.map((_, index) => card(ctx, tracks, index))));
}

export async function home(ctx: Context): Promise<void> {
  mount(ctx.main, heading(ctx.user ? `Welcome back, ${ctx.user.first_name}` : "Cadenza"), h("p", { class: "muted" }, "Loading…"));
  try {
    const page = await api.home();
    setMediaBase(page.media_base);
    mount(
      ctx.main,
      heading(ctx.user ? `Welcome back, ${ctx.user.first_name}` : "Cadenza"),
      page.region ? h("p", { class: "muted" }, `Listening near ${page.region}`) : null,
      page.sections.length === 0 ? h("p", {}, "Nothing to play yet: upload a track to begin.") : null,
      page.sections.map((s) => section(ctx, s)),
    );
  } catch (error) {
    mount(ctx.main, heading("Cadenza"), h("p", { class: "error" }, errorText(error)));
  }
}

// ---- Search ----

export async function searchPage(ctx: Context, query: string): Promise<void> {
  mount(ctx.main, heading(query ? `Results for “${query}”` : "Search"));
  if (!query.trim()) {
    ctx.main.append(h("p", { class: "muted" }, "Type in the search box: titles, artists, albums, in any script, typos forgiven."));
    return;
  }
  try {
    const results = await api.search({ q: query, type: "track,artist,album,playlist", limit: "20" });
    const tracks = results.tracks?.items ?? [];
    const artists = results.artists?.items ?? [];
    const albums = results.albums?.items ?? [];
    const playlists = results.playlists?.items ?? [];
    ctx.main.append(
      artists.length ? h("section", { "aria-label": "Artists" }, h("h2", {}, "Artists"),
        h("ul", { class: "chips" }, artists.map((artist) => h("li", {}, h("a", { class: "chip", href: `#/artist/${encodeURIComponent(artist.name)}` }, ...highlighted(artist.parts, artist.name)))))) : "",
      albums.length ? h("section", { "aria-label": "Albums" }, h("h2", {}, "Albums"),
        h("ul", { class: "chips" }, albums.map((album) => h("li", {}, h("a", { class: "chip", href: `#/album/${encodeURIComponent(album.name)}?artist=${encodeURIComponent(album.artist)}` }, ...highlighted(album.parts, album.name), h("span", { class: "muted" }, ` · ${album.artist}`)))))) : "",
      playlists.length ? h("section", { "aria-label": "Your playlists" }, h("h2", {}, "Your playlists"),
        h("ul", { class: "chips" }, playlists.map((playlist) => h("li", {}, h("a", { class: "chip", href: `#/playlist/${encodeURIComponent(playlist.id)}` }, ...highlighted(playlist.parts, playlist.name)))))) : "",
      h("section", { "aria-label": "Tracks" }, h("h2", {}, "Tracks"),
        tracks.length ? trackTable(ctx, tracks.map((hit) => trackOfDoc(hit.track)), tracks) : h("p", {}, "No tracks match.")),
    );
  } catch (error) {
    ctx.main.append(h("p", { class: "error", role: "alert" }, errorText(error)));
  }
}

/** Search as you type in the header: a combobox whose options are tracks, arrows to move. */
export function searchBox(ctx: Context): HTMLElement {
  const input = h("input", {
    id: "search",
    type: "search",
    placeholder: "Search tracks, artists, albums",
    autocomplete: "off",
    role: "combobox",
    "aria-label": "Search",
    "aria-expanded": "false",
    "aria-controls": "suggestions",
    "aria-autocomplete": "list",
  });
  const list = h("ul", { id: "suggestions", role: "listbox", class: "suggestions", hidden: true, "aria-label": "Suggestions" });
  let hits: TrackHit[] = [];
  let active = -1;
  let sequence = 0;
  let timer: number | undefined;
  const close = () => {
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  };
  const render = () => {
    mount(list, hits.map((hit, index) =>
      h("li", { id: `suggestion-${index}`, role: "option", "aria-selected": index === active ? "true" : "false", class: index === active ? "active" : "",
        onmousedown: (event: Event) => { event.preventDefault(); choose(index); } },
        h("span", { class: "strong" }, ...highlighted(hit.title, hit.track.title)), h("span", { class: "muted" }, " — ", ...highlighted(hit.artist, hit.track.artist)))));
    list.hidden = hits.length === 0;
    input.setAttribute("aria-expanded", String(hits.length > 0));
    if (active >= 0) input.setAttribute("aria-activedescendant", `suggestion-${active}`);
    else input.removeAttribute("aria-activedescendant");
  };
  const choose = (index: number) => {
    const tracks = hits.map((hit) => trackOfDoc(hit.track));
    close();
    void ctx.player.playTracks(tracks, index);
  };
  input.addEventListener("input", () => {
    window.clearTimeout(timer);
    const text = input.value;
    if (!text.trim()) {
      hits = [];
      close();
      return;
    }
    timer = window.setTimeout(async () => {
      const mine = ++sequence;
      try {
        const results = await api.search({ q: text, limit: "8" });
        if (mine !== sequence) return;
        hits = results.tracks?.items ?? [];
        active = -1;
        render();
      } catch {
        if (mine === sequence) {
          hits = [];
          close();
        }
      }
    }, 60);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" && hits.length) {
      event.preventDefault();
      active = (active + 1) % hits.length;
      render();
    } else if (event.key === "ArrowUp" && hits.length) {
      event.preventDefault();
      active = active <= 0 ? hits.length - 1 : active - 1;
      render();
    } else if (event.key === "Enter") {
      event.preventDefault();
      if (active >= 0) choose(active);
      else {
        close();
        ctx.go(`#/search?q=${encodeURIComponent(input.value)}`);
      }
    } else if (event.key === "Escape") {
      close();
    }
  });
  input.addEventListener("blur", () => setTimeout(close, 100));
  return h("div", { class: "search-box" }, input, list);
}

// ---- Track, artist, album ----

export async function trackPage(ctx: Context, id: string): Promise<void> {
  try {
    const track = await api.track(id);
    const queued: Track = { id: track.id, title: track.name, artist: track.singer, album: track.album,
      duration_ms: track.duration_ms ?? 0, explicit: track.explicit, artwork: track.artwork ?? {} };
    mount(ctx.main,
      h("div", { class: "hero" }, cover(queued.title, queued.artwork, 256),
        h("div", {}, heading(track.name),
          h("p", {}, h("a", { href: `#/artist/${encodeURIComponent(track.singer)}` }, track.singer), queued.album ? ` · ${queued.album}` : ""),
          h("p", { class: "muted" }, track.status === "ready" ? clock(queued.duration_ms / 1000) : `Status: ${track.status}${track.reason ? ` — ${track.reason}` : ""}`),
          track.status === "ready" ? h("div", { class: "row" },
            h("button", { class: "primary", onclick: () => void ctx.player.playTracks([queued], 0) }, "Play"),
            h("button", { onclick: () => { ctx.player.enqueue(queued); announce("Queued."); } }, "Add to queue"),
            h("button", { onclick: () => void addToPlaylist(ctx, queued) }, "Add to playlist")) : "")));
  } catch (error) {
    mount(ctx.main, heading("Track"), h("p", { class: "error" }, errorText(error)));
  }
}

async function tracksBy(params: Record<string, string>): Promise<TrackHit[]> {
  const results = await api.search({ ...params, limit: "50" });
  return results.tracks?.items ?? [];
}

export async function artistPage(ctx: Context, name: string): Promise<void> {
  mount(ctx.main, heading(name));
  try {
    const hits = await tracksBy({ q: name, artist: name });
    const tracks = hits.map((hit) => trackOfDoc(hit.track));
    ctx.main.append(
      h("div", { class: "row" }, h("button", { class: "primary", onclick: () => void ctx.player.playTracks(tracks, 0), disabled: tracks.length === 0 }, "Play")),
      tracks.length ? trackTable(ctx, tracks) : h("p", {}, "No tracks by this artist."),
    );
  } catch (error) {
    ctx.main.append(h("p", { class: "error" }, errorText(error)));
  }
}

export async function albumPage(ctx: Context, name: string, artist: string | null): Promise<void> {
  mount(ctx.main, heading(name), artist ? h("p", {}, h("a", { href: `#/artist/${encodeURIComponent(artist)}` }, artist)) : "");
  try {
    const hits = await tracksBy(artist ? { q: name, artist } : { q: name });
    const tracks = hits.map((hit) => trackOfDoc(hit.track)).filter((track) => track.album === name);
    ctx.main.append(
      h("div", { class: "row" }, h("button", { class: "primary", onclick: () => void ctx.player.playTracks(tracks, 0), disabled: tracks.length === 0 }, "Play")),
      tracks.length ? trackTable(ctx, tracks) : h("p", {}, "No tracks on this album."),
    );
  } catch (error) {
    ctx.main.append(h("p", { class: "error" }, errorText(error)));
  }
}

// ---- Playlists ----

export async function playlistsPage(ctx: Context): Promise<void> {
  if (needLogin(ctx, "Your playlists")) return;
  const name = h("input", { id: "playlist-name", placeholder: "New playlist", "aria-label": "New playlist name", required: true });
  const list = h("ul", { class: "cards" });
  mount(ctx.main, heading("Your playlists"),
    h("form", { class: "row", onsubmit: async (event: Event) => {
      event.preventDefault();
      try {
        const created = await api.createPlaylist(name.value.trim());
        ctx.go(`#/playlist/${encodeURIComponent(created.id)}`);
      } catch (error) {
        announce(errorText(error), "error");
      }
    } }, name, h("button", { type: "submit" }, "Create")),
    list);
  try {
    const playlists = await api.playlists();
    mount(list, playlists.length === 0 ? h("li", { class: "muted" }, "No playlists yet.") : playlists.map((playlist) =>
      h("li", { class: "card" }, h("a", { class: "card-play", href: `#/playlist/${encodeURIComponent(playlist.id)}` },
        cover(playlist.name, {}), h("span", { class: "card-title" }, playlist.name)),
        h("div", { class: "muted small" }, `${playlist.track_count} ${playlist.track_count === 1 ? "track" : "tracks"}`))));
  } catch (error) {
    mount(list, h("li", { class: "error" }, errorText(error)));
  }
}

export async function playlistPage(ctx: Context, id: string): Promise<void> {
  let playlist;
  try {
    playlist = await api.playlist(id);
  } catch (error) {
    mount(ctx.main, heading("Playlist"), h("p", { class: "error" }, errorText(error)));
    return;
  }
  const mine = ctx.user?.id === playlist.owner_id;
  let entries = playlist.tracks.slice();
  const list = h("ol", { class: "playlist", "aria-label": `Tracks of ${playlist.name}` });
  const save = async (moved: string) => {
    try {
      const answer = await api.reorder(id, entries.map((entry) => entry.track_id));
      entries = answer.tracks;
      render(moved);
      announce("Order saved.");
    } catch (error) {
      announce(errorText(error), "error");
    }
  };
  const move = (from: number, to: number) => {
    if (to < 0 || to >= entries.length || from === to) return;
    const [entry] = entries.splice(from, 1);
    entries.splice(to, 0, entry);
    render(entry.track_id);
    void save(entry.track_id);
  };
  let dragged = -1;
  const render = (focusId?: string) => {
    const tracks = entries.map(trackOfEntry);
    mount(list, entries.map((entry, index) => {
      const item = h("li", { class: "playlist-row", draggable: mine ? "true" : "false", "data-track": entry.track_id,
        tabindex: mine ? "0" : null, "aria-label": mine ? `${entry.name}, position ${index + 1} of ${entries.length}. Alt+Up or Alt+Down to move.` : null,
        ondragstart: () => { dragged = index; item.classList.add("dragging"); },
        ondragend: () => item.classList.remove("dragging"),
        ondragover: (event: Event) => event.preventDefault(),
        ondrop: (event: Event) => { event.preventDefault(); if (dragged >= 0) move(dragged, index); dragged = -1; },
        onkeydown: (event: KeyboardEvent) => {
          if (!mine || !event.altKey) return;
          if (event.key === "ArrowUp") { event.preventDefault(); move(index, index - 1); }
          if (event.key === "ArrowDown") { event.preventDefault(); move(index, index + 1); }
        } },
        mine ? h("span", { class: "handle", "aria-hidden": "true" }, icon("grip")) : null,
        h("button", { class: "link strong", onclick: () => void ctx.player.playTracks(tracks, index), "aria-label": `Play ${entry.name}` }, entry.name ?? "Unknown track"),
        h("span", { class: "muted" }, entry.singer ?? ""),
        h("span", { class: "num" }, clock((entry.duration_ms ?? 0) / 1000)),
        mine ? h("span", { class: "actions" },
          h("button", { class: "icon", "aria-label": `Move ${entry.name} up`, onclick: () => move(index, index - 1), disabled: index === 0 }, icon("up")),
          h("button", { class: "icon", "aria-label": `Move ${entry.name} down`, onclick: () => move(index, index + 1), disabled: index === entries.length - 1 }, icon("down")),
          h("button", { class: "icon", "aria-label": `Remove ${entry.name}`, onclick: async () => {
            try {
              await api.removeFromPlaylist(id, entry.track_id);
              entries = entries.filter((e) => e.track_id !== entry.track_id);
              render();
            } catch (error) {
              announce(errorText(error), "error");
            }
          } }, icon("close"))) : null);
      return item;
    }));
    if (focusId) (list.querySelector(`[data-track="${CSS.escape(focusId)}"]`) as HTMLElement | null)?.focus();
  };
  const title = heading(playlist.name);
  mount(ctx.main,
    h("div", { class: "row spread" }, title,
      h("div", { class: "row" },
        h("button", { class: "primary", onclick: () => void ctx.player.playTracks(entries.map(trackOfEntry), 0) }, "Play"),
        mine ? h("button", { onclick: async () => {
          const name = prompt("Rename the playlist", playlist.name);
          if (!name) return;
          try {
            await api.renamePlaylist(id, name);
            title.textContent = name;
          } catch (error) {
            announce(errorText(error), "error");
          }
        } }, "Rename") : null,
        mine ? h("button", { class: "danger", onclick: async () => {
          if (!confirm(`Delete ${playlist.name}?`)) return;
          try {
            await api.deletePlaylist(id);
            ctx.go("#/playlists");
          } catch (error) {
            announce(errorText(error), "error");
          }
        } }, "Delete") : null)),
    h("p", { class: "muted" }, `${entries.length} ${entries.length === 1 ? "track" : "tracks"}${mine ? " · drag, or Alt+↑/↓, to reorder" : ""}`),
    list);
  render();
}

// ---- Accounts ----

function field(label: string, name: string, type = "text", value = "", autocomplete?: string): HTMLElement {
  return h("label", { class: "field" }, h("span", {}, label),
    h("input", { name, type, value, required: true, autocomplete: autocomplete ?? null }),
    h("span", { class: "field-error", "data-for": name }));
}

function showErrors(form: HTMLFormElement, error: unknown): void {
  form.querySelectorAll(".field-error").forEach((node) => (node.textContent = ""));
  const status = form.querySelector(".form-error")!;
  status.textContent = errorText(error);
  if (error instanceof ApiError) {
    for (const fieldError of error.fields ?? []) {
      const slot = form.querySelector(`.field-error[data-for="${fieldError.field}"]`);
      if (slot) slot.textContent = fieldError.message;
    }
  }
}

export function logInPage(ctx: Context): void {
  const form = h("form", { class: "form", onsubmit: async (event: Event) => {
    event.preventDefault();
    const data = new FormData(form);
    try {
      const session = await api.logIn(String(data.get("email")), String(data.get("password")));
      localStorage.setItem("cadenza.token", session.token);
      await ctx.refreshUser();
      ctx.go("#/");
    } catch (error) {
      showErrors(form, error);
    }
  } }, field("Email", "email", "email", "", "username"), field("Password", "password", "password", "", "current-password"),
  h("p", { class: "form-error error", role: "alert" }), h("button", { class: "primary", type: "submit" }, "Log in"));
  mount(ctx.main, heading("Log in"), form, h("p", {}, "New here? ", h("a", { href: "#/signup" }, "Sign up")));
}

export function signUpPage(ctx: Context): void {
  const form = h("form", { class: "form", onsubmit: async (event: Event) => {
    event.preventDefault();
    const data = Object.fromEntries([...new FormData(form).entries()].map(([k, v]) => [k, String(v)]));
    try {
      await api.signUp(data);
      const session = await api.logIn(data.email, data.password);
      localStorage.setItem("cadenza.token", session.token);
      await ctx.refreshUser();
      ctx.go("#/account");
    } catch (error) {
      showErrors(form, error);
    }
  } },
  field("First name", "first_name", "text", "", "given-name"), field("Last name", "last_name", "text", "", "family-name"),
  field("Email", "email", "email", "", "email"), field("Mobile", "mobile", "tel", "", "tel"),
  field("Address", "address", "text", "", "street-address"), field("Password (10 characters or more)", "password", "password", "", "new-password"),
  h("label", { class: "field" }, h("span", {}, "I am"), h("select", { name: "role" }, h("option", { value: "listener" }, "a listener"), h("option", { value: "artist" }, "an artist"))),
  h("p", { class: "form-error error", role: "alert" }), h("button", { class: "primary", type: "submit" }, "Sign up"));
  mount(ctx.main, heading("Sign up"), form);
}

const SANDBOX_CARDS: [string, string][] = [
  ["4242 4242 4242 4242", "succeeds"],
  ["4000 0000 0000 0002", "is declined"],
  ["4000 0000 0000 9995", "fails: insufficient funds"],
  ["4000 0000 0000 3220", "succeeds a few seconds later (asynchronous)"],
];

export async function accountPage(ctx: Context): Promise<void> {
  if (needLogin(ctx, "Account")) return;
  const user = ctx.user!;
  const plan = h("div", {}, h("p", { class: "muted" }, "Loading your plan…"));
  const plans = h("ul", { class: "plans" });
  const profile = h("form", { class: "form", onsubmit: async (event: Event) => {
    event.preventDefault();
    const data = Object.fromEntries([...new FormData(profile).entries()].map(([k, v]) => [k, String(v)]));
    try {
      await api.updateMe(data);
      await ctx.refreshUser();
      profile.querySelector(".form-error")!.textContent = "";
      announce("Profile saved.");
    } catch (error) {
      showErrors(profile, error);
    }
  } },
  h("p", { class: "muted" }, `${user.email} · ${user.role}`),
  field("First name", "first_name", "text", user.first_name, "given-name"),
  field("Last name", "last_name", "text", user.last_name, "family-name"),
  field("Mobile", "mobile", "tel", user.mobile, "tel"),
  field("Address", "address", "text", user.address, "street-address"),
  h("p", { class: "form-error error", role: "alert" }),
  h("button", { type: "submit" }, "Save profile"));
  mount(ctx.main, heading("Account"),
    h("section", { "aria-label": "Profile" }, h("h2", {}, "Profile"), profile),
    h("section", { "aria-label": "Your plan" }, h("h2", {}, "Your plan"), plan),
    h("section", { "aria-label": "Plans" }, h("h2", {}, "Plans"), plans),
    h("button", { onclick: async () => {
      await api.logOut().catch(() => undefined);
      localStorage.removeItem("cadenza.token");
      await ctx.refreshUser();
      ctx.go("#/");
    } }, "Log out"));
  try {
    const [entitlements, packages] = await Promise.all([api.entitlements(), api.packages()]);
    mount(plan, h("p", {}, h("strong", {}, entitlements.package_name),
      entitlements.free_ads_per_hour > 0 ? ` — up to ${entitlements.free_ads_per_hour} ads per hour` : " — no ads",
      entitlements.until ? ` · until ${new Date(entitlements.until).toLocaleDateString()}` : ""));
    mount(plans, packages.map((pkg) => planCard(pkg, pkg.id === entitlements.package_id)));
  } catch (error) {
    mount(plan, h("p", { class: "error" }, errorText(error)));
  }
}

function price(pkg: Package): string {
  if (pkg.cost === 0) return "Free";
  return `${(pkg.cost / 100).toLocaleString(undefined, { style: "currency", currency: pkg.currency })} / ${pkg.period}`;
}

function planCard(pkg: Package, current: boolean): HTMLElement {
  return h("li", { class: `plan${current ? " current" : ""}` },
    h("h3", {}, pkg.name), h("p", { class: "price" }, price(pkg)),
    h("p", { class: "muted" }, pkg.free_ads_per_hour > 0 ? `Ads: up to ${pkg.free_ads_per_hour} per hour` : "No ads"),
    current ? h("p", { class: "strong" }, "Your plan") : pkg.cost > 0 ? h("a", { class: "button primary", href: `#/checkout/${encodeURIComponent(pkg.id)}` }, `Choose ${pkg.name}`) : null);
}

export async function checkoutPage(ctx: Context, packageId: string): Promise<void> {
  if (needLogin(ctx, "Checkout")) return;
  let pkg: Package | undefined;
  try {
    pkg = (await api.packages()).find((p) => p.id === packageId);
  } catch (error) {
    mount(ctx.main, heading("Checkout"), h("p", { class: "error" }, errorText(error)));
    return;
  }
  if (!pkg) {
    mount(ctx.main, heading("Checkout"), h("p", { class: "error" }, "This plan is not on sale."));
    return;
  }
  const key = crypto.randomUUID();
  const status = h("p", { role: "status", class: "strong" });
  const form = h("form", { class: "form", onsubmit: async (event: Event) => {
    event.preventDefault();
    const data = new FormData(form);
    status.textContent = "Paying…";
    try {
      const payment = await api.checkout(pkg!.id, key);
      let paid = await api.confirm(payment.id, {
        number: String(data.get("number")).replace(/\s+/g, ""),
        exp_month: Number(data.get("exp_month")),
        exp_year: Number(data.get("exp_year")),
        cvc: String(data.get("cvc")),
      });
      for (let i = 0; i < 20 && paid.status === "processing"; i++) {
        status.textContent = "Waiting for the bank…";
        await new Promise((resolve) => setTimeout(resolve, 500));
        paid = await api.payment(payment.id);
      }
      if (paid.status === "succeeded") {
        status.textContent = `Paid. Welcome to ${pkg!.name}.`;
        for (let i = 0; i < 20; i++) {
          const entitlements = await api.entitlements();
          if (entitlements.package_id === pkg!.id) break;
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
        setTimeout(() => ctx.go("#/account"), 800);
      } else {
        status.textContent = paid.failure?.message ?? `The payment ${paid.status}.`;
      }
    } catch (error) {
      status.textContent = errorText(error);
    }
  } },
  field("Card number", "number", "text", "4242 4242 4242 4242", "cc-number"),
  h("div", { class: "row" }, field("Month", "exp_month", "number", "12", "cc-exp-month"), field("Year", "exp_year", "number", String(new Date().getFullYear() + 3), "cc-exp-year"), field("CVC", "cvc", "text", "123", "cc-csc")),
  h("p", { class: "form-error error" }),
  h("button", { class: "primary", type: "submit" }, `Pay ${price(pkg)}`));
  mount(ctx.main, heading(`Subscribe to ${pkg.name}`), h("p", {}, price(pkg)),
    h("aside", { class: "note", "aria-label": "Sandbox cards" }, h("h2", {}, "Sandbox cards"),
      h("p", {}, "This is a sandbox: no money moves. Use any future expiry and any CVC."),
      h("ul", {}, SANDBOX_CARDS.map(([number, what]) => h("li", {}, h("code", {}, number), ` ${what}`)))),
    form, status);
}

// ---- Upload ----

/** Reads the track's server-sent events (with the session) until it settles. */
async function follow(trackId: string, onTrack: (track: TrackStatus) => void): Promise<void> {
  const bearer = token();
  const response = await fetch(`/api/v1/tracks/${encodeURIComponent(trackId)}/events`, {
    headers: bearer ? { authorization: `Bearer ${bearer}` } : {},
  });
  if (!response.ok || !response.body) throw new Error(`The track's progress is not available (${response.status}).`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trimStart()).join("\n");
      if (data) onTrack(JSON.parse(data));
    }
  }
}

export function uploadPage(ctx: Context): void {
  if (needLogin(ctx, "Upload")) return;
  if (ctx.user!.role === "listener") {
    mount(ctx.main, heading("Upload"), h("p", {}, "Uploading is for artists. Sign up as an artist to publish your music."));
    return;
  }
  const title = h("input", { id: "upload-title", name: "title", required: true });
  const singer = h("input", { id: "upload-singer", name: "singer", required: true, value: `${ctx.user!.first_name} ${ctx.user!.last_name}` });
  const file = h("input", { id: "upload-file", type: "file", accept: "audio/*,.flac,.m4a,.opus,.ogg,.wav,.mp3" });
  const bar = h("progress", { id: "upload-progress", max: "100", value: "0", "aria-label": "Upload progress" });
  const stage = h("p", { id: "upload-status", role: "status" });
  const zone = h("div", { class: "dropzone", tabindex: "0", role: "button", "aria-label": "Drop an audio file here, or press Enter to choose one" }, "Drop an audio file here, or choose one");
  let chosen: File | null = null;
  const choose = (f: File | undefined | null) => {
    if (!f) return;
    chosen = f;
    zone.textContent = `${f.name} (${(f.size / 1e6).toFixed(1)} MB)`;
    if (!title.value) title.value = f.name.replace(/\.[^.]+$/, "").replace(/[_-]+/g, " ");
  };
  zone.addEventListener("click", () => file.click());
  zone.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); file.click(); } });
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => { event.preventDefault(); zone.classList.remove("over"); choose(event.dataTransfer?.files[0]); });
  file.addEventListener("change", () => choose(file.files?.[0]));
  const form = h("form", { class: "form", onsubmit: (event: Event) => {
    event.preventDefault();
    if (!chosen) {
      stage.textContent = "Choose a file first.";
      return;
    }
    const upload = new tus.Upload(chosen, {
      endpoint: "/api/v1/uploads",
      chunkSize: 8 * 1024 * 1024,
      retryDelays: [0, 1000, 3000, 5000],
      headers: { authorization: `Bearer ${token()}` },
      metadata: { title: title.value, singer: singer.value, filename: chosen.name },
      removeFingerprintOnSuccess: true,
      onProgress: (sent, total) => {
        bar.value = Math.round((sent / total) * 50);
        stage.textContent = `Uploading… ${Math.round((sent / total) * 100)} %`;
      },
      onError: (error) => {
        stage.textContent = `The upload failed: ${error.message}`;
      },
      onSuccess: async () => {
        const location = upload.url ?? "";
        stage.textContent = "Uploaded. Processing…";
        try {
          const info = await fetch(location, { headers: { authorization: `Bearer ${token()}`, accept: "application/json" } }).then((r) => r.json());
          const trackId: string | undefined = info.track_id;
          if (!trackId) throw new Error("The upload has no track yet.");
          await follow(trackId, (track) => {
            bar.value = 50 + Math.round((track.progress ?? 0) * 50);
            if (track.status === "ready") {
              bar.value = 100;
              stage.replaceChildren("Ready: ", h("a", { href: `#/track/${encodeURIComponent(track.id)}` }, track.name));
            } else if (track.status === "rejected" || track.status === "failed") {
              stage.textContent = `${track.status === "rejected" ? "Rejected" : "Failed"}: ${track.reason ?? "no reason given"}`;
            } else {
              stage.textContent = `Processing: ${track.stage ?? track.status}…`;
            }
          });
        } catch (error) {
          stage.textContent = errorText(error);
        }
      },
    });
    void upload.findPreviousUploads().then((previous) => {
      if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
      upload.start();
    });
  } },
  zone, file,
  h("label", { class: "field", for: "upload-title" }, h("span", {}, "Title"), title),
  h("label", { class: "field", for: "upload-singer" }, h("span", {}, "Artist"), singer),
  h("button", { class: "primary", type: "submit" }, "Upload"), bar, stage);
  mount(ctx.main, heading("Upload a track"), h("p", { class: "muted" }, "MP3, AAC or ALAC in M4A, FLAC, WAV, Ogg Vorbis or Opus. Uploads resume where they stopped."), form);
}
