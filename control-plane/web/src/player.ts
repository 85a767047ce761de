// The player: a queue of tracks played one after another through the play API and the CDN.
// Each track is a play: the play API answers with the manifest on the nearest node and on each
// fallback, the track's loudness gain and any ads in front; hls.js plays the manifest, and a
// fatal network error moves to the next node at the same position. Loudness is normalised
// with the track's gain through Web Audio, behind a limiter so that a positive gain never
// clips. Play events go back to the play API as it asks (start, progress, complete, skip).

// The light build: no subtitles, DRM or alternate renditions, none of which audio needs.
import Hls from "hls.js/light";
import { api, ApiError, PlayAnswer, Track } from "./api";
import { artworkUrl } from "./dom";
import { Entry, Gapless, gaplessSupported } from "./gapless";

export type Repeat = "off" | "all" | "one";

interface Saved {
  queue: Track[];
  index: number;
  shuffle: boolean;
  repeat: Repeat;
  volume: number;
  normalise: boolean;
}

const SAVED_KEY = "cadenza.player";

/** What the interface shows of the player; `changed` fires on every change. */
export interface PlayerState {
  track: Track | null;
  playing: boolean;
  loading: boolean;
  /** In an ad break: the ad's name (the track's controls are locked). */
  ad: string | null;
  /** Position in the track, seconds (ads excluded). */
  position: number;
  duration: number;
  error: string | null;
  node: string | null;
}

export class Player extends EventTarget {
  readonly audio: HTMLAudioElement;
  queue: Track[] = [];
  index = -1;
  shuffle = false;
  repeat: Repeat = "off";
  normalise = true;
  private volume = 0.8;
  private hls: Hls | null = null;
  private play: PlayAnswer | null = null;
  /** The manifest URLs of the current play, primary first, and which one is in use. */
  private urls: string[] = [];
  private urlIndex = 0;
  private started = false;
  private finished = false;
  private lastProgressAt = 0;
  private context: AudioContext | null = null;
  private gain: GainNode | null = null;
  private error: string | null = null;
  private loading = false;
  /** Milliseconds from the request for a play to its first audio, per play (for tests). */
  readonly firstAudioMs: number[] = [];
  private requestedAt = 0;
  /** Bumped by every new play, so that late answers of an earlier one are dropped. */
  private generation = 0;
  /** Order of the queue when shuffled: indexes into `queue`. */
  private order: number[] = [];
  /** Plays without ads go through one MediaSource, each track after the one before. */
  private gapless: Gapless | null = null;
  /** The gapless entry playing, and the queue index of each entry. */
  private entry: Entry | null = null;
  private entryIndex = new Map<Entry, number>();
  /** Whether the next track's play was asked for (to be appended without a gap), whether
   * there was none to append, and whether the MediaSource was told it ends. */
  private nextAsked = false;
  private nextNone = false;
  private finishing = false;

  constructor(audio: HTMLAudioElement) {
    super();
    this.audio = audio;
    this.audio.preload = "auto";
    this.restore();
    this.audio.addEventListener("playing", () => this.onPlaying());
    this.audio.addEventListener("pause", () => this.changed());
    this.audio.addEventListener("timeupdate", () => this.onTime());
    this.audio.addEventListener("ended", () => this.onEnded());
    this.audio.addEventListener("error", () => {
      if (!this.hls) this.fail("The audio could not be played.");
    });
    this.setupMediaSession();
  }

  // ---- What the interface reads ----

  get current(): Track | null {
    return this.queue[this.index] ?? null;
  }

  state(): PlayerState {
    const offset = this.trackOffset();
    const inAd = this.play !== null && this.audio.currentTime < offset - 0.05;
    const ad = inAd ? this.adAt(this.audio.currentTime * 1000)?.name ?? "Advertisement" : null;
    return {
      track: this.current,
      playing: !this.audio.paused,
      loading: this.loading,
      ad,
      position: inAd ? 0 : Math.max(0, this.audio.currentTime - offset),
      duration: (this.current?.duration_ms ?? 0) / 1000,
      error: this.error,
      node: this.play ? this.play.nodes[this.entry ? this.entry.node : this.urlIndex]?.node ?? null : null,
    };
  }

  // ---- The queue ----

  /** Replaces the queue with `tracks` and plays the one at `start`. */
  async playTracks(tracks: Track[], start = 0): Promise<void> {
    this.queue = tracks.slice();
    this.index = start;
    this.reshuffle();
    this.save();
    await this.load();
  }

  /** Adds `track` at the end of the queue (and plays it if nothing is queued). */
  enqueue(track: Track): void {
    this.queue.push(track);
    this.reshuffle();
    this.save();
    if (this.index < 0) {
      this.index = 0;
      void this.load();
    }
    this.changed();
  }

  /** Moves the queue entry at `from` to `to`. */
  move(from: number, to: number): void {
    if (from === to || from < 0 || to < 0 || from >= this.queue.length || to >= this.queue.length) return;
    const [track] = this.queue.splice(from, 1);
    this.queue.splice(to, 0, track);
    if (this.index === from) this.index = to;
    else if (from < this.index && to >= this.index) this.index -= 1;
    else if (from > this.index && to <= this.index) this.index += 1;
    this.reshuffle();
    this.save();
    this.changed();
  }

  /** Removes the queue entry at `at` (the one playing goes on playing). */
  remove(at: number): void {
    if (at < 0 || at >= this.queue.length || at === this.index) return;
    this.queue.splice(at, 1);
    if (at < this.index) this.index -= 1;
    this.reshuffle();
    this.save();
    this.changed();
  }

  /** Empties the queue but for the track playing. */
  clear(): void {
    const current = this.current;
    this.queue = current ? [current] : [];
    this.index = current ? 0 : -1;
    this.reshuffle();
    this.save();
    this.changed();
  }

  setShuffle(on: boolean): void {
    this.shuffle = on;
    this.reshuffle();
    this.save();
    this.changed();
  }

  cycleRepeat(): void {
    this.repeat = this.repeat === "off" ? "all" : this.repeat === "all" ? "one" : "off";
    this.requeue();
    this.save();
    this.changed();
  }

  setVolume(volume: number): void {
    this.volume = Math.min(1, Math.max(0, volume));
    this.audio.volume = this.volume;
    this.save();
    this.changed();
  }

  getVolume(): number {
    return this.volume;
  }

  setNormalise(on: boolean): void {
    this.normalise = on;
    this.applyGain();
    this.save();
    this.changed();
  }

  // ---- Transport ----

  async toggle(): Promise<void> {
    if (this.index < 0) return;
    if (!this.play) {
      await this.load();
      return;
    }
    if (this.audio.paused) await this.resume();
    else this.audio.pause();
  }

  async next(): Promise<void> {
    if (this.state().ad) return; // No skipping ads.
    this.report(this.finished ? null : "skip");
    const next = this.step(1);
    if (next === null) {
      this.audio.pause();
      return;
    }
    this.index = next;
    this.save();
    await this.load();
  }

  async previous(): Promise<void> {
    if (this.state().ad) return;
    if (this.state().position > 3) {
      this.seek(0);
      return;
    }
    const previous = this.step(-1);
    if (previous === null) {
      this.seek(0);
      return;
    }
    this.report(this.finished ? null : "skip");
    this.index = previous;
    this.save();
    await this.load();
  }

  /** Seeks to `seconds` into the track (never into or past an ad break). */
  seek(seconds: number): void {
    if (!this.play || this.state().ad) return;
    const duration = (this.current?.duration_ms ?? 0) / 1000;
    const target = Math.min(Math.max(0, seconds), Math.max(0, duration - 0.25));
    this.audio.currentTime = this.trackOffset() + target;
    this.changed();
  }

  // ---- Loading a play ----

  private async load(): Promise<void> {
    const track = this.current;
    if (!track) return;
    const generation = ++this.generation;
    this.teardown();
    this.loading = true;
    this.error = null;
    this.changed();
    this.requestedAt = performance.now();
    let answer: PlayAnswer;
    try {
      answer = await api.play(track.id);
    } catch (error) {
      if (generation !== this.generation) return;
      this.loading = false;
      this.fail(error instanceof ApiError ? error.message : String(error));
      return;
    }
    if (generation !== this.generation) return;
    this.play = answer;
    this.urls = [answer.manifest_url, ...answer.fallbacks];
    this.urlIndex = 0;
    this.started = false;
    this.finished = false;
    this.lastProgressAt = 0;
    // The play answer knows the track best (artwork, exact duration).
    this.queue[this.index] = {
      ...track,
      title: answer.track.name,
      artist: answer.track.singer,
      album: answer.track.album,
      duration_ms: answer.track.duration_ms,
      explicit: answer.track.explicit,
      artwork: answer.track.artwork,
    };
    this.updateMediaSession();
    if (answer.ads.length === 0 && gaplessSupported()) {
      await this.startGapless(answer, generation);
    } else {
      this.attach(0);
    }
    this.applyGain();
    await this.resume();
  }

  /** Plays `answer` as the first track of a new MediaSource; the next ones follow it. */
  private async startGapless(answer: PlayAnswer, generation: number): Promise<void> {
    const gapless = new Gapless(this.audio);
    this.gapless = gapless;
    gapless.onError = (message) => this.fail(`Playback failed: ${message}`);
    gapless.onNode = (entry) => {
      console.info(`Cadenza: moving to ${entry.play.nodes[entry.node]?.node ?? "the next node"}`);
      this.changed();
    };
    await gapless.open();
    if (generation !== this.generation) return;
    this.entry = gapless.add(answer);
    this.entryIndex.set(this.entry, this.index);
    this.nextAsked = false;
    this.nextNone = false;
    this.finishing = false;
  }

  /** Near the end of the last appended track: the next one's play, appended if it has no ads. */
  private async askNext(): Promise<void> {
    const gapless = this.gapless;
    if (!gapless) return;
    const next = this.repeat === "one" ? null : this.step(1);
    const track = next === null ? null : this.queue[next];
    if (next === null || !track) {
      this.nextNone = true;
      return;
    }
    try {
      const answer = await api.play(track.id);
      if (gapless !== this.gapless) return;
      if (answer.ads.length > 0) {
        // An ad break cannot join the MediaSource: the element ends, then it plays apart.
        this.nextNone = true;
        return;
      }
      const entry = gapless.add(answer);
      this.entryIndex.set(entry, next);
    } catch (error) {
      console.warn("Cadenza: the next track could not be prepared.", error);
      if (gapless === this.gapless) this.nextNone = true;
    }
  }

  /** The playhead crossed into `entry`: the last play completes, the next one starts. */
  private enter(entry: Entry): void {
    if (this.play && this.started && !this.finished) {
      this.finished = true;
      this.post(this.play, "complete", this.play.track.duration_ms, this.entry?.node ?? 0);
    }
    this.entry = entry;
    this.play = entry.play;
    this.index = this.entryIndex.get(entry) ?? this.index;
    const track = this.queue[this.index];
    if (track) {
      this.queue[this.index] = {
        ...track,
        title: entry.play.track.name,
        artist: entry.play.track.singer,
        album: entry.play.track.album,
        duration_ms: entry.play.track.duration_ms,
        artwork: entry.play.track.artwork,
      };
    }
    this.started = true;
    this.finished = false;
    this.nextAsked = false;
    this.nextNone = false;
    this.lastProgressAt = performance.now();
    this.post(entry.play, "start", 0, entry.node);
    this.updateMediaSession();
    this.applyGain();
    this.save();
  }

  /** Plays the current play's manifest on node `urlIndex`, from `from` seconds. */
  private attach(from: number): void {
    const url = this.urls[this.urlIndex];
    if (this.hls) {
      this.hls.destroy();
      this.hls = null;
    }
    if (Hls.isSupported()) {
      // `cadenza.bufferSeconds` in local storage shortens the buffer (to test failover).
      const buffer = Number(localStorage.getItem("cadenza.bufferSeconds")) || 30;
      const hls = new Hls({ startPosition: from, maxBufferLength: buffer, maxMaxBufferLength: buffer, enableWorker: true });
      this.hls = hls;
      hls.on(Hls.Events.ERROR, (_event, data) => {
        if (!data.fatal || hls !== this.hls) return;
        if (data.type === Hls.ErrorTypes.NETWORK_ERROR) this.failOver();
        else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
        else this.fail(`Playback failed (${data.details}).`);
      });
      hls.loadSource(url);
      hls.attachMedia(this.audio);
    } else if (this.audio.canPlayType("application/vnd.apple.mpegurl")) {
      this.audio.src = url;
      if (from > 0) this.audio.currentTime = from;
    } else {
      this.fail("This browser cannot play HLS.");
    }
  }

  /** The node in use stopped answering: the next one, from where the audio is. */
  private failOver(): void {
    if (this.urlIndex + 1 >= this.urls.length) {
      this.fail("No node can serve this track right now.");
      return;
    }
    const at = this.audio.currentTime;
    this.urlIndex += 1;
    console.info(`Cadenza: moving to ${this.play?.nodes[this.urlIndex]?.node ?? "the next node"}`);
    this.attach(at);
    void this.resume();
    this.changed();
  }

  private async resume(): Promise<void> {
    this.ensureAudioGraph();
    if (this.context?.state === "suspended") await this.context.resume().catch(() => undefined);
    try {
      await this.audio.play();
    } catch (error) {
      // Autoplay refused before any gesture: the play button starts it.
      if ((error as DOMException).name !== "NotAllowedError" && (error as DOMException).name !== "AbortError") {
        this.fail(`Playback could not start: ${(error as Error).message}`);
      }
    }
    this.changed();
  }

  private teardown(): void {
    if (this.hls) {
      this.hls.destroy();
      this.hls = null;
    }
    if (this.gapless) {
      this.gapless.close();
      this.gapless = null;
    }
    this.entry = null;
    this.entryIndex.clear();
    this.audio.removeAttribute("src");
    this.audio.load();
    this.play = null;
  }

  // ---- Loudness ----

  /** Web Audio: element → gain → limiter → speakers, made on the first user gesture. */
  private ensureAudioGraph(): void {
    if (this.context) return;
    try {
      const context = new AudioContext();
      const source = context.createMediaElementSource(this.audio);
      const gain = context.createGain();
      // A limiter: at −1 dBFS and above, a 20:1 ratio with a fast attack keeps peaks in.
      const limiter = context.createDynamicsCompressor();
      limiter.threshold.value = -1;
      limiter.knee.value = 0;
      limiter.ratio.value = 20;
      limiter.attack.value = 0.003;
      limiter.release.value = 0.1;
      source.connect(gain).connect(limiter).connect(context.destination);
      this.context = context;
      this.gain = gain;
      this.applyGain();
    } catch (error) {
      console.warn("Cadenza: no Web Audio; loudness is not normalised.", error);
    }
  }

  /** The gain in force: the track's (to −14 LUFS) when normalising, else none. */
  gainDb(): number {
    return this.normalise && this.play?.gain_db != null ? this.play.gain_db : 0;
  }

  private applyGain(): void {
    this.audio.volume = this.volume;
    if (this.gain) this.gain.gain.value = Math.pow(10, this.gainDb() / 20);
  }

  // ---- Events from the element ----

  private onPlaying(): void {
    this.loading = false;
    if (!this.started && this.play) {
      this.started = true;
      this.firstAudioMs.push(performance.now() - this.requestedAt);
      this.lastProgressAt = performance.now();
      this.report("start");
    }
    this.changed();
  }

  private onTime(): void {
    if (!this.play) return;
    if (this.gapless && this.entry) {
      const now = this.gapless.at(this.audio.currentTime);
      if (now && now !== this.entry) this.enter(now);
      const last = this.gapless.entries[this.gapless.entries.length - 1];
      const left = this.entry.end - this.audio.currentTime;
      if (!this.nextAsked && this.entry === last && left < 20) {
        this.nextAsked = true;
        void this.askNext();
      }
      // Nothing follows: the element may end (the queue can still change until then).
      if (this.nextNone && !this.finishing && this.entry === last && left < 1.5) {
        this.finishing = true;
        this.gapless.finish();
      }
    }
    const every = Math.max(5, this.play.progress_every_secs) * 1000;
    if (this.started && !this.finished && performance.now() - this.lastProgressAt >= every) {
      this.lastProgressAt = performance.now();
      this.report("progress");
    }
    this.setPositionState();
    this.changed();
  }

  private async onEnded(): Promise<void> {
    this.finished = true;
    this.report("complete");
    if (this.repeat === "one") {
      await this.load();
      return;
    }
    const next = this.step(1);
    if (next === null) {
      this.changed();
      return;
    }
    this.index = next;
    this.save();
    await this.load();
  }

  /** Posts a play event at the current position in the presentation (ads included). */
  private report(type: "start" | "progress" | "complete" | "skip" | null): void {
    if (!type || !this.play || !this.started) return;
    if (type === "complete" || type === "skip") this.finished = true;
    // In a shared MediaSource the play's position is the playhead less the track's start;
    // otherwise it is the presentation's (ads included), as the play API counts it.
    const position = this.entry
      ? (this.audio.currentTime - this.entry.start) * 1000
      : this.audio.currentTime * 1000;
    this.post(this.play, type, position, this.entry ? this.entry.node : this.urlIndex);
  }

  private post(play: PlayAnswer, type: string, positionMs: number, node: number): void {
    const nodeId = node > 0 ? play.nodes[node]?.node : undefined;
    api
      .playEvent(play.play_id, type, Math.min(positionMs, play.duration_ms), nodeId)
      .catch((error) => console.warn(`Cadenza: the ${type} event was not recorded.`, error));
  }

  private fail(message: string): void {
    this.error = message;
    this.loading = false;
    console.warn(`Cadenza: ${message}`);
    this.changed();
  }

  // ---- Helpers ----

  private trackOffset(): number {
    if (this.entry) return this.entry.start;
    return (this.play?.track_starts_at_ms ?? 0) / 1000;
  }

  private adAt(ms: number) {
    return this.play?.ads.find((ad) => ms >= ad.starts_at_ms && ms < ad.starts_at_ms + ad.duration_ms);
  }

  /** The queue index `delta` steps from the current one, by shuffle and repeat; null at an end. */
  private step(delta: number): number | null {
    if (this.queue.length === 0) return null;
    const order = this.shuffle ? this.order : this.queue.map((_, i) => i);
    const at = order.indexOf(this.index);
    let next = at + delta;
    if (next < 0 || next >= order.length) {
      if (this.repeat !== "all") return null;
      next = (next + order.length) % order.length;
    }
    return order[next];
  }

  /** The queue changed: what follows the last appended track is asked for again. */
  private requeue(): void {
    const last = this.gapless?.entries[this.gapless.entries.length - 1];
    if (this.gapless && !this.finishing && this.entry === last) {
      this.nextAsked = false;
      this.nextNone = false;
    }
  }

  private reshuffle(): void {
    this.requeue();
    const rest = this.queue.map((_, i) => i).filter((i) => i !== this.index);
    for (let i = rest.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [rest[i], rest[j]] = [rest[j], rest[i]];
    }
    this.order = this.index >= 0 ? [this.index, ...rest] : rest;
  }

  private save(): void {
    const saved: Saved = {
      queue: this.queue,
      index: this.index,
      shuffle: this.shuffle,
      repeat: this.repeat,
      volume: this.volume,
      normalise: this.normalise,
    };
    localStorage.setItem(SAVED_KEY, JSON.stringify(saved));
  }

  private restore(): void {
    try {
      const saved = JSON.parse(localStorage.getItem(SAVED_KEY) ?? "null") as Saved | null;
      if (!saved) return;
      this.queue = Array.isArray(saved.queue) ? saved.queue : [];
      this.index = Math.min(saved.index ?? -1, this.queue.length - 1);
      this.shuffle = !!saved.shuffle;
      this.repeat = saved.repeat ?? "off";
      this.volume = typeof saved.volume === "number" ? saved.volume : 0.8;
      this.normalise = saved.normalise !== false;
      this.audio.volume = this.volume;
      this.reshuffle();
    } catch {
      localStorage.removeItem(SAVED_KEY);
    }
  }

  private changed(): void {
    if ("mediaSession" in navigator) {
      navigator.mediaSession.playbackState = this.audio.paused ? "paused" : "playing";
    }
    this.dispatchEvent(new Event("changed"));
  }

  // ---- Media Session: lock screen, media keys ----

  private setupMediaSession(): void {
    if (!("mediaSession" in navigator)) return;
    const session = navigator.mediaSession;
    const handlers: [MediaSessionAction, MediaSessionActionHandler][] = [
      ["play", () => void this.resume()],
      ["pause", () => this.audio.pause()],
      ["stop", () => this.audio.pause()],
      ["previoustrack", () => void this.previous()],
      ["nexttrack", () => void this.next()],
      ["seekbackward", (details) => this.seek(this.state().position - (details.seekOffset ?? 10))],
      ["seekforward", (details) => this.seek(this.state().position + (details.seekOffset ?? 10))],
      ["seekto", (details) => this.seek(details.seekTime ?? 0)],
    ];
    for (const [action, handler] of handlers) {
      try {
        session.setActionHandler(action, handler);
      } catch {
        // An action this browser does not know.
      }
    }
  }

  private updateMediaSession(): void {
    const track = this.current;
    if (!("mediaSession" in navigator) || !track) return;
    navigator.mediaSession.metadata = new MediaMetadata({
      title: track.title,
      artist: track.artist,
      album: track.album ?? "",
      artwork: Object.entries(track.artwork).flatMap(([size, key]) => {
        const src = artworkUrl(key);
        return src ? [{ src, sizes: `${size}x${size}`, type: key.endsWith(".png") ? "image/png" : "image/jpeg" }] : [];
      }),
    });
  }

  private setPositionState(): void {
    if (!("mediaSession" in navigator) || !this.play) return;
    const state = this.state();
    if (state.ad || !state.duration) return;
    try {
      navigator.mediaSession.setPositionState({
        duration: state.duration,
        position: Math.min(state.position, state.duration),
        playbackRate: this.audio.playbackRate,
      });
    } catch {
      // A position outside the duration while a segment boundary is crossed.
    }
  }
}
