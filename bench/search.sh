#!/usr/bin/env bash
# Search and home: a real control plane holding a generated catalogue (1 000 000 tracks by
# default: realistic name lengths from a Zipf vocabulary, Zipf plays) on core 0, a client on
# core 1. Prints
#   - indexing throughput into the search index (target >= 10 000 tracks/s) and its memory;
#   - per keystroke of typed queries with one typo each, every distinct keystroke once (so
#     that no answer comes from the result cache): GET /api/v1/search over HTTP, and the same
#     queries on the tantivy index in-process, in the same run (target: p50 <= 10 ms, p99 <=
#     50 ms over HTTP; HTTP / in-process <= 1.5 at p50);
#   - home for a listener with 10 000 plays: its uncached assembly in-process (target p95 <=
#     100 ms) and GET /api/v1/home over HTTP (which may answer from the per-listener cache).
#
#   bench/search.sh                  # 1 000 000 tracks, 200 typed queries
#   TRACKS=100000 QUERIES=50 bench/search.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TRACKS=${TRACKS:-1000000}
QUERIES=${QUERIES:-200}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cadenza-target}"
cargo build --release -q -p control-plane --example search_bench
BENCH="$CARGO_TARGET_DIR/release/examples/search_bench"
WORK=$(mktemp -d)
FIFO="$WORK/stdin"
mkfifo "$FIFO"
cleanup() { exec 3>&- 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

echo "serving $TRACKS tracks on core 0 (generating, indexing, 10 000 plays, in-process timings)…"
CADENZA_LOG=warn taskset -c 0 "$BENCH" serve "$WORK" "$TRACKS" "$QUERIES" <"$FIFO" &
exec 3>"$FIFO"
for _ in $(seq 1 1800); do
  [ -s "$WORK/serve.json" ] && break
  kill -0 $! 2>/dev/null || { echo "the server stopped" >&2; exit 1; }
  sleep 1
done
[ -s "$WORK/serve.json" ] || { echo "the server was not ready in 30 minutes" >&2; exit 1; }
echo "querying over HTTP from core 1…"
taskset -c 1 "$BENCH" query "$WORK"
exec 3>&-
wait

python3 - "$WORK/serve.json" "$WORK/query.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); q = json.load(open(sys.argv[2]))
i, h = s["in_process_search"], q["http_search"]
print(f"catalogue          {s['tracks']} tracks")
print(f"indexing           {s['tracks_per_sec']:.0f} tracks/s ({s['indexing_secs']:.1f} s; target >= 10000)")
print(f"index memory       {s['resident_mib_after_index'] - s['resident_mib_before_index']:.0f} MiB resident added "
      f"({s['resident_mib_after_index']:.0f} MiB in all)")
print(f"keystrokes         {h['count']} distinct")
print(f"search in-process  p50 {i['p50_ms']:.2f} ms  p99 {i['p99_ms']:.2f} ms  max {i['max_ms']:.1f} ms")
print(f"search over HTTP   p50 {h['p50_ms']:.2f} ms  p99 {h['p99_ms']:.2f} ms  max {h['max_ms']:.1f} ms (targets 10 / 50)")
print(f"HTTP / in-process  p50 {h['p50_ms'] / i['p50_ms']:.2f}x  p99 {h['p99_ms'] / i['p99_ms']:.2f}x (target <= 1.5 at p50)")
a, hh = s["home_assembly"], q["http_home"]
print(f"play events        {s['play_events']} applied at {s['play_events_per_sec']:.0f}/s")
print(f"home assembly      p50 {a['p50_ms']:.2f} ms  p95 {a['p95_ms']:.2f} ms  ({s['home_sections']} sections, uncached; target p95 <= 100)")
print(f"home over HTTP     p50 {hh['p50_ms']:.2f} ms  p95 {hh['p95_ms']:.2f} ms  (per-listener cache)")
PY
