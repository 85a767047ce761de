#!/usr/bin/env bash
# The ISP box's cache: a seeded Zipf(0.9) demand over a catalogue of tracks of realistic
# durations (log-normal around 3.5 minutes, each in the 64/128/256 kbit/s renditions), a play
# fetching one rendition whole. Prints, from one run:
#   - the byte hit ratio of the disk tier's policy (W-TinyLFU, as the tier builds it) and of
#     LRU, S3-FIFO and SIEVE at 1 %, 2 % and 5 % of the catalogue's bytes, after a day's
#     warm-up (target: the shipped policy >= LRU + 5 points at every size);
#   - the byte offload of a box holding 5 % of the catalogue: pre-positioned from the previous
#     day's plays (target >= 95 %), and demand only from a cold start; with the bound no cache
#     of that size can pass on this demand.
#
#   bench/isp-box.sh                      # 20 000 tracks, 1 000 000 plays a day, seed 2026
#   TRACKS=50000 PLAYS=2000000 SEED=7 bench/isp-box.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TRACKS=${TRACKS:-20000}
PLAYS=${PLAYS:-1000000}
SEED=${SEED:-2026}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cadenza-target}"
cargo build --release -q -p isp-box --example offload
"$CARGO_TARGET_DIR/release/examples/offload" "$TRACKS" "$PLAYS" "$SEED"
