// The control plane's JSON API as the player uses it: the session token, the one error shape,
// and typed calls for every flow the app has.

export interface ApiErrorBody {
  status: number;
  code: string;
  message: string;
  fields?: { field: string; code: string; message: string }[];
}

/** An error answer of the API, or a network failure (`status` 0, `code` `network`). */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly fields: ApiErrorBody["fields"];
  constructor(body: ApiErrorBody) {
    super(body.message);
    this.status = body.status;
    this.code = body.code;
    this.fields = body.fields;
  }
}

const TOKEN_KEY = "cadenza.token";

export function token(): string | null {
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(value: string | null): void {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

export async function call<T>(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<T> {
  const sent: Record<string, string> = { ...headers };
  const bearer = token();
  if (bearer) sent.authorization = `Bearer ${bearer}`;
  if (body !== undefined) sent["content-type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method,
      headers: sent,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError({ status: 0, code: "network", message: "The server cannot be reached." });
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let parsed: unknown = undefined;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // Not JSON: reported below.
  }
  if (!response.ok) {
    const error = (parsed as { error?: ApiErrorBody } | undefined)?.error;
    if (response.status === 401 && bearer) setToken(null);
    throw new ApiError(
      error ?? { status: response.status, code: "http_error", message: response.statusText },
    );
  }
  return parsed as T;
}

export interface User {
  id: string;
  first_name: string;
  last_name: string;
  email: string;
  mobile: string;
  address: string;
  role: "listener" | "artist" | "admin";
}

export interface Package {
  id: string;
  name: string;
  cost: number;
  currency: string;
  period: string;
  free_ads_per_hour: number;
}

export interface Entitlements {
  package_id: string;
  package_name: string;
  source: string;
  free_ads_per_hour: number;
  until: string | null;
}

export interface Payment {
  id: string;
  status: string;
  amount: number;
  currency: string;
  failure?: { code: string; message: string } | null;
}

export interface Part {
  text: string;
  hit: boolean;
}

export interface TrackDoc {
  id: string;
  title: string;
  artist: string;
  album: string | null;
  genre: string | null;
  year: number | null;
  explicit: boolean;
  duration_ms: number;
  popularity: number;
  artwork: Record<string, string>;
}

export interface TrackHit {
  track: TrackDoc;
  score: number;
  title: Part[];
  artist: Part[];
  album: Part[] | null;
}

export interface ArtistHit {
  name: string;
  parts: Part[];
  tracks: number;
}

export interface AlbumHit {
  name: string;
  parts: Part[];
  artist: string;
  tracks: number;
  year: number | null;
}

export interface PlaylistHit {
  id: string;
  name: string;
  parts: Part[];
}

export interface SearchResults {
  query: string;
  generation: number;
  tracks?: { items: TrackHit[]; next_cursor: string | null };
  artists?: { items: ArtistHit[]; next_cursor: string | null };
  albums?: { items: AlbumHit[]; next_cursor: string | null };
  playlists?: { items: PlaylistHit[]; next_cursor: string | null };
}

/** A track as the app lists and queues it. */
export interface Track {
  id: string;
  title: string;
  artist: string;
  album: string | null;
  duration_ms: number;
  explicit: boolean;
  artwork: Record<string, string>;
}

export interface HomeTrack extends Track {
  count?: number;
  position_ms?: number;
}

export interface Section {
  id: string;
  title: string;
  kind: "tracks" | "playlists";
  items: HomeTrack[] | { id: string; name: string; updated_at: number }[];
}

export interface Home {
  region: string | null;
  media_base: string | null;
  generated_at: number;
  sections: Section[];
}

export interface PlaylistSummary {
  id: string;
  name: string;
  public: boolean;
  owner_id: string;
  track_count: number;
  updated_at: string;
}

export interface PlaylistEntry {
  track_id: string;
  position: number;
  name: string | null;
  singer: string | null;
  album: string | null;
  duration_ms: number | null;
  status: string | null;
}

export interface Playlist extends PlaylistSummary {
  tracks: PlaylistEntry[];
}

export interface PlayAd {
  track_id: string;
  name: string;
  starts_at_ms: number;
  duration_ms: number;
}

export interface PlayAnswer {
  play_id: string;
  manifest_url: string;
  fallbacks: string[];
  nodes: { node: string; site: string; reason: string }[];
  track: {
    id: string;
    name: string;
    singer: string;
    album: string | null;
    duration_ms: number;
    explicit: boolean;
    artwork: Record<string, string>;
  };
  gain_db: number | null;
  ads: PlayAd[];
  track_starts_at_ms: number;
  duration_ms: number;
  progress_every_secs: number;
}

export interface TrackStatus {
  id: string;
  name: string;
  singer: string;
  album: string | null;
  status: "uploaded" | "processing" | "ready" | "rejected" | "failed";
  stage: string | null;
  /** Processing progress, 0 to 1. */
  progress: number;
  reason: string | null;
  duration_ms: number | null;
  explicit: boolean;
  artwork: Record<string, string>;
}

export const api = {
  signUp: (body: Record<string, string>) => call<User>("POST", "/users", body),
  logIn: (email: string, password: string) =>
    call<{ token: string }>("POST", "/sessions", { email, password }),
  logOut: () => call<void>("DELETE", "/sessions/current"),
  me: () => call<User>("GET", "/users/me"),
  updateMe: (body: Record<string, string>) => call<User>("PATCH", "/users/me", body),
  packages: () => call<Package[]>("GET", "/packages"),
  entitlements: () => call<Entitlements>("GET", "/me/entitlements"),
  checkout: (packageId: string, key: string) =>
    call<Payment>("POST", "/payments", { package_id: packageId }, { "idempotency-key": key }),
  confirm: (paymentId: string, card: Record<string, string | number>) =>
    call<Payment>("POST", `/payments/${encodeURIComponent(paymentId)}/confirm`, { card }),
  payment: (paymentId: string) => call<Payment>("GET", `/payments/${encodeURIComponent(paymentId)}`),
  home: () => call<Home>("GET", "/home"),
  search: (params: Record<string, string>) =>
    call<SearchResults>("GET", `/search?${new URLSearchParams(params).toString()}`),
  track: (id: string) => call<TrackStatus>("GET", `/tracks/${encodeURIComponent(id)}`),
  playlists: () => call<PlaylistSummary[]>("GET", "/playlists"),
  playlist: (id: string) => call<Playlist>("GET", `/playlists/${encodeURIComponent(id)}?limit=500`),
  createPlaylist: (name: string) => call<PlaylistSummary>("POST", "/playlists", { name }),
  renamePlaylist: (id: string, name: string) =>
    call<PlaylistSummary>("PATCH", `/playlists/${encodeURIComponent(id)}`, { name }),
  deletePlaylist: (id: string) => call<void>("DELETE", `/playlists/${encodeURIComponent(id)}`),
  addToPlaylist: (trackId: string, playlistId?: string, name?: string) =>
    call<{ playlist: PlaylistSummary; added: boolean }>("POST", "/playlists/tracks", {
      track_id: trackId,
      ...(playlistId ? { playlist_id: playlistId } : { name }),
    }),
  removeFromPlaylist: (id: string, trackId: string) =>
    call<void>(
      "DELETE",
      `/playlists/${encodeURIComponent(id)}/tracks/${encodeURIComponent(trackId)}`,
    ),
  reorder: (id: string, trackIds: string[]) =>
    call<Playlist>("PUT", `/playlists/${encodeURIComponent(id)}/order`, { track_ids: trackIds }),
  play: (trackId: string) =>
    call<PlayAnswer>("POST", "/play", {
      track_id: trackId,
      format: "hls",
      device: "cadenza-web",
      protocol: location.protocol === "https:" ? "h2" : "h1",
    }),
  playEvent: (playId: string, type: string, positionMs: number, node?: string) =>
    call<unknown>("POST", "/play-events", {
      play_id: playId,
      type,
      position_ms: Math.max(0, Math.round(positionMs)),
      ...(node ? { node } : {}),
    }),
};
