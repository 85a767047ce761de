// Builds the web player into OUT (default dist/): the TypeScript bundled and minified by
// esbuild, the stylesheet, and index.html naming both by content hash, so that the control
// plane can serve them as immutable and index.html as always revalidated.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] ?? join(here, "dist");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const result = await build({
  entryPoints: [join(here, "src/main.ts")],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022"],
  sourcemap: false,
  legalComments: "linked",
  write: false,
  outdir: out,
  logLevel: "warning",
});

const hashed = (name, ext, bytes) => {
  const hash = createHash("sha256").update(bytes).digest("hex").slice(0, 12);
  const file = `${name}-${hash}.${ext}`;
  writeFileSync(join(out, file), bytes);
  return file;
};
let script;
for (const file of result.outputFiles) {
  if (file.path.endsWith(".js")) script = hashed("app", "js", file.contents);
  else if (file.path.endsWith(".LEGAL.txt")) writeFileSync(join(out, "licenses.txt"), file.contents);
}
const style = hashed("app", "css", readFileSync(join(here, "src/style.css")));
const icon = hashed("icon", "svg", readFileSync(join(here, "src/icon.svg")));
const html = readFileSync(join(here, "index.html"), "utf8")
  .replaceAll("{{script}}", `/assets/${script}`)
  .replaceAll("{{style}}", `/assets/${style}`)
  .replaceAll("{{icon}}", `/assets/${icon}`);
writeFileSync(join(out, "index.html"), html);
// A gzip copy of every text file, for clients that accept it.
for (const file of readdirSync(out)) {
  if (/\.(js|css|html|svg|txt)$/.test(file)) {
    writeFileSync(join(out, `${file}.gz`), gzipSync(readFileSync(join(out, file)), { level: 9 }));
  }
}
console.log(`web player built into ${out}: ${script}, ${style}`);
