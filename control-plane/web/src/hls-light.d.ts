// hls.js's light build has the same API as the full one (less subtitles, DRM and alternate
// renditions) but ships no declarations of its own.
declare module "hls.js/light" {
  export * from "hls.js";
  export { default } from "hls.js";
}
