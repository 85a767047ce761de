// A few DOM helpers: elements from a tag, attributes and children; text is always text.

type Child = Node | string | number | null | undefined | false;
/** Attributes; `on…` keys take listeners of any event type. */
type Listener = (event: never) => void;
type Attributes = Record<string, string | number | boolean | Listener | null | undefined>;

/** `h("button", {class: "x", onclick: f, "aria-label": "Play"}, "▶")`. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value as unknown as EventListener);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** Replaces the children of `parent`. */
export function mount(parent: Element, ...children: (Child | Child[])[]): void {
  parent.replaceChildren(
    ...children.flat().filter((c): c is Node | string | number => c !== null && c !== undefined && c !== false)
      .map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))),
  );
}

/** `m:ss` of a number of seconds. */
export function clock(seconds: number): string {
  const whole = Math.max(0, Math.floor(seconds));
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

/** Text in parts, the matched ones in `<mark>`. */
export function highlighted(parts: { text: string; hit: boolean }[] | null | undefined, fallback = ""): Node[] {
  if (!parts || parts.length === 0) return [document.createTextNode(fallback)];
  return parts.map((part) => (part.hit ? h("mark", {}, part.text) : document.createTextNode(part.text)));
}

/** Where artwork keys are served: the nearest node, as home tells it. */
let mediaBase: string | null = null;
export function setMediaBase(base: string | null): void {
  if (base) mediaBase = base.replace(/\/$/, "");
}
/** The URL of an artwork key, when a node is known. */
export function artworkUrl(key: string): string | null {
  return mediaBase ? `${mediaBase}/${key}` : null;
}

/** A cover: the thumbnail when there is one, else the title's initials on a colour of its own. */
export function cover(title: string, artwork: Record<string, string> | undefined, size = 160): HTMLElement {
  const sizes = Object.keys(artwork ?? {})
    .map(Number)
    .sort((a, b) => a - b);
  const best = sizes.find((s) => s >= size) ?? sizes[sizes.length - 1];
  const src = best !== undefined && artwork ? artworkUrl(artwork[String(best)]) : null;
  if (src) return h("img", { class: "cover", src, alt: "", loading: "lazy" });
  let hash = 0;
  for (const c of title) hash = (hash * 31 + c.codePointAt(0)!) >>> 0;
  const initials = title
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((word) => [...word][0]?.toUpperCase() ?? "")
    .join("");
  const placeholder = h("div", { class: "cover placeholder", "aria-hidden": "true" }, initials);
  // Through the CSSOM: the content security policy refuses inline style attributes.
  placeholder.style.setProperty("--hue", String(hash % 360));
  return placeholder;
}

/** A short-lived message for screen readers and eyes. */
export function announce(message: string, kind: "info" | "error" = "info"): void {
  const region = document.getElementById("toast");
  if (!region) return;
  const toast = h("div", { class: `toast ${kind}` }, message);
  region.append(toast);
  setTimeout(() => toast.remove(), 4000);
}

/** Icon shapes on a 24-unit grid: filled (`f:`) or drawn as lines. */
const ICONS: Record<string, string> = {
  play: "f:M8 5v14l11-7z",
  pause: "f:M6 5h4v14H6zM14 5h4v14h-4z",
  previous: "f:M6 6h2v12H6zM9.5 12 18 6v12z",
  next: "f:M16 6h2v12h-2zM6 6l8.5 6L6 18z",
  shuffle: "M4 7h3l8 10h4M4 17h3l2.5-3M13.5 10 15 7h4M17 4l3 3-3 3M17 14l3 3-3 3",
  repeat: "M4 12V9a2 2 0 0 1 2-2h13M16 4l3 3-3 3M20 12v3a2 2 0 0 1-2 2H5M8 20l-3-3 3-3",
  repeatOne: "M4 12V9a2 2 0 0 1 2-2h13M16 4l3 3-3 3M20 12v3a2 2 0 0 1-2 2H5M8 20l-3-3 3-3M11 10.5l1.5-1V15",
  queue: "M4 6h16M4 12h16M4 18h10",
  plus: "M12 5v14M5 12h14",
  heart: "M12 20s-7-4.4-7-10a4 4 0 0 1 7-2.6A4 4 0 0 1 19 10c0 5.6-7 10-7 10z",
  info: "M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18zM12 11v6M12 7.5v.5",
  close: "M6 6l12 12M18 6 6 18",
  up: "M12 19V5M6 11l6-6 6 6",
  down: "M12 5v14M6 13l6 6 6-6",
  grip: "M9 6h.01M15 6h.01M9 12h.01M15 12h.01M9 18h.01M15 18h.01",
};

/** An inline SVG icon (decorative: the button around it carries the label). */
export function icon(name: keyof typeof ICONS): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.classList.add("svg-icon");
  const shape = ICONS[name];
  const path = document.createElementNS(ns, "path");
  if (shape.startsWith("f:")) {
    path.setAttribute("d", shape.slice(2));
    path.setAttribute("fill", "currentColor");
  } else {
    path.setAttribute("d", shape);
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", "currentColor");
    path.setAttribute("stroke-width", "2");
    path.setAttribute("stroke-linecap", "round");
    path.setAttribute("stroke-linejoin", "round");
  }
  svg.append(path);
  return svg;
}
