// Gapless playback: the tracks of a queue appended one after another to ONE MediaSource, each
// at the sum of the presented durations before it (`timestampOffset`), its end trimmed by the
// append window. The packaging's edit list gives each track's encoder delay, which Chromium
// applies itself; the window trims the encoder's padding at the end, so one track's last
// sample meets the next one's first. Segments come from the play's nodes in order: a node that
// fails is left for the next one at the same segment.

import type { PlayAnswer } from "./api";

/** One track in the MediaSource. */
export interface Entry {
  play: PlayAnswer;
  /** Where it starts and ends on the element's clock, seconds. */
  start: number;
  end: number;
  /** Which of the play's nodes serves it. */
  node: number;
}

const CODECS = 'audio/mp4; codecs="mp4a.40.2"';
/** How far ahead of the playhead segments are appended, seconds. */
const AHEAD = 30;

export function gaplessSupported(): boolean {
  return typeof MediaSource !== "undefined" && MediaSource.isTypeSupported(CODECS);
}

export class Gapless {
  readonly entries: Entry[] = [];
  private source = new MediaSource();
  private buffer: SourceBuffer | null = null;
  private closed = false;
  /** The appends in order: one track after another. */
  private chain: Promise<void> = Promise.resolve();
  onError: (message: string) => void = () => undefined;
  onNode: (entry: Entry) => void = () => undefined;

  constructor(private readonly audio: HTMLAudioElement) {}

  /** Attaches a new MediaSource to the element. */
  async open(): Promise<void> {
    this.audio.src = URL.createObjectURL(this.source);
    await new Promise((resolve) => this.source.addEventListener("sourceopen", resolve, { once: true }));
    this.buffer = this.source.addSourceBuffer(CODECS);
    this.buffer.mode = "segments";
  }

  /** Where the next track would start. */
  get end(): number {
    return this.entries.length ? this.entries[this.entries.length - 1].end : 0;
  }

  /** Queues `play` after what is there; it is appended once the one before is whole. */
  add(play: PlayAnswer): Entry {
    const start = this.end;
    const entry: Entry = { play, start, end: start + play.track.duration_ms / 1000, node: 0 };
    this.entries.push(entry);
    this.chain = this.chain
      .then(() => this.append(entry))
      .catch((error) => {
        if (!this.closed) this.onError(error instanceof Error ? error.message : String(error));
      });
    return entry;
  }

  /** No more tracks: the element ends after the last one. */
  finish(): void {
    this.chain = this.chain.then(() => {
      if (!this.closed && this.source.readyState === "open") this.source.endOfStream();
    });
  }

  /** The entry playing at `time`. */
  at(time: number): Entry | undefined {
    return this.entries.find((entry) => time < entry.end - 0.01) ?? this.entries[this.entries.length - 1];
  }

  /** Whether every track added so far is appended whole. */
  async settled(): Promise<void> {
    await this.chain;
  }

  close(): void {
    this.closed = true;
    if (this.audio.src.startsWith("blob:")) URL.revokeObjectURL(this.audio.src);
  }

  private async append(entry: Entry): Promise<void> {
    const urls = [entry.play.manifest_url, ...entry.play.fallbacks];
    let segment = 0;
    let initDone = false;
    while (!this.closed) {
      const master = urls[entry.node];
      try {
        const variant = await this.variant(master);
        const text = await fetchText(variant);
        const init = /#EXT-X-MAP:URI="([^"]+)"/.exec(text)?.[1];
        const segments = text.split("\n").map((line) => line.trim()).filter((line) => line && !line.startsWith("#"));
        if (!init) throw new Error("the track's playlist has no init segment");
        const buffer = this.buffer!;
        if (!initDone) {
          await this.waitIdle();
          buffer.timestampOffset = entry.start;
          // The window: the track's own span, its encoder padding cut at the end.
          buffer.appendWindowStart = 0;
          buffer.appendWindowEnd = entry.end;
          buffer.appendWindowStart = entry.start;
          await this.push(await fetchBytes(new URL(init, variant).href));
          initDone = true;
        }
        for (; segment < segments.length; segment++) {
          await this.room(entry.start);
          if (this.closed) return;
          await this.push(await fetchBytes(new URL(segments[segment], variant).href));
        }
        return;
      } catch (error) {
        if (this.closed) return;
        if (error instanceof NetworkError && entry.node + 1 < urls.length) {
          entry.node += 1;
          this.onNode(entry);
          continue;
        }
        throw error;
      }
    }
  }

  /** The middle rendition of a master playlist (128 kbit/s in the ladder). */
  private async variant(master: string): Promise<string> {
    const text = await fetchText(master);
    const variants = text.split("\n").map((line) => line.trim()).filter((line) => line && !line.startsWith("#"));
    if (variants.length === 0) throw new Error("the master playlist lists no rendition");
    return new URL(variants[Math.floor(variants.length / 2)], master).href;
  }

  /** Waits until fewer than AHEAD seconds are buffered past the playhead. */
  private async room(from: number): Promise<void> {
    while (!this.closed) {
      const buffered = this.buffer!.buffered;
      const ahead = buffered.length ? buffered.end(buffered.length - 1) - Math.max(this.audio.currentTime, from) : 0;
      if (ahead < AHEAD) return;
      await new Promise((resolve) => this.audio.addEventListener("timeupdate", resolve, { once: true }));
    }
  }

  private async waitIdle(): Promise<void> {
    const buffer = this.buffer!;
    if (buffer.updating) await new Promise((resolve) => buffer.addEventListener("updateend", resolve, { once: true }));
  }

  private async push(bytes: ArrayBuffer): Promise<void> {
    await this.waitIdle();
    if (this.closed) return;
    const buffer = this.buffer!;
    await new Promise<void>((resolve, reject) => {
      const done = () => {
        buffer.removeEventListener("error", failed);
        resolve();
      };
      const failed = () => {
        buffer.removeEventListener("updateend", done);
        reject(new Error("the browser refused a segment"));
      };
      buffer.addEventListener("updateend", done, { once: true });
      buffer.addEventListener("error", failed, { once: true });
      buffer.appendBuffer(bytes);
    });
  }
}

/** A fetch that failed on the network or with an error status: another node may serve it. */
class NetworkError extends Error {}

async function fetchOk(url: string): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new NetworkError(`${url}: ${(error as Error).message}`);
  }
  if (!response.ok) throw new NetworkError(`${url}: ${response.status}`);
  return response;
}

async function fetchText(url: string): Promise<string> {
  return (await fetchOk(url)).text();
}

async function fetchBytes(url: string): Promise<ArrayBuffer> {
  return (await fetchOk(url)).arrayBuffer();
}
