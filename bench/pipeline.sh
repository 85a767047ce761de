#!/usr/bin/env bash
# Cadenza's processing pipeline against ffmpeg doing the equivalent job, on the same source
# files, in the same run: decode, three AAC renditions (64/128/256 kbit/s), HLS fMP4
# packaging, one thread each, pinned to the same core. Prints × realtime per core for both
# and their ratio (target: Cadenza >= 1.5x ffmpeg's speed).
#
#   bench/pipeline.sh                 # three 3-minute tracks
#   TRACKS=5 SECONDS_PER_TRACK=240 bench/pipeline.sh
#
# Cadenza's run also measures EBU R128 loudness and writes a DASH manifest, which the ffmpeg
# command does not: the comparison is, if anything, in ffmpeg's favour.
set -euo pipefail
cd "$(dirname "$0")/.."
TRACKS=${TRACKS:-3}
SECONDS_PER_TRACK=${SECONDS_PER_TRACK:-180}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cadenza-target}"
command -v ffmpeg >/dev/null 2>&1 || { echo "installing ffmpeg"; apt-get install -y -qq ffmpeg >/dev/null; }

cargo build --release -q -p control-plane --example package_wav
PACKAGE="$CARGO_TARGET_DIR/release/examples/package_wav"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Music-like sources: a few tones over pink noise, different per track, 44.1 kHz stereo WAV.
for n in $(seq 1 "$TRACKS"); do
  ffmpeg -v error -f lavfi -i "anoisesrc=color=pink:amplitude=0.08:seed=$n:duration=$SECONDS_PER_TRACK:sample_rate=44100" \
    -f lavfi -i "sine=frequency=$((200 + n * 37)):duration=$SECONDS_PER_TRACK:sample_rate=44100" \
    -filter_complex "[0][1]amix=inputs=2,aformat=channel_layouts=stereo" -c:a pcm_s16le "$WORK/track$n.wav"
done
TOTAL=$((TRACKS * SECONDS_PER_TRACK))

now() { python3 -c 'import time; print(time.monotonic())'; }

start=$(now)
for n in $(seq 1 "$TRACKS"); do
  taskset -c 0 "$PACKAGE" "$WORK/track$n.wav" "$WORK/cadenza$n" >/dev/null
done
cadenza=$(python3 -c "print($(now) - $start)")

start=$(now)
for n in $(seq 1 "$TRACKS"); do
  mkdir -p "$WORK/ffmpeg$n"
  taskset -c 0 ffmpeg -v error -threads 1 -filter_threads 1 -i "$WORK/track$n.wav" \
    -filter_complex "[0:a]asplit=3[a1][a2][a3]" \
    -map "[a1]" -c:a:0 aac -b:a:0 64k -map "[a2]" -c:a:1 aac -b:a:1 128k -map "[a3]" -c:a:2 aac -b:a:2 256k \
    -f hls -hls_segment_type fmp4 -hls_time 6 -hls_playlist_type vod -var_stream_map "a:0 a:1 a:2" \
    -master_pl_name master.m3u8 -hls_segment_filename "$WORK/ffmpeg$n/%v/seg-%05d.m4s" "$WORK/ffmpeg$n/%v/index.m3u8"
done
ffmpeg_time=$(python3 -c "print($(now) - $start)")

python3 - "$TOTAL" "$cadenza" "$ffmpeg_time" "$TRACKS" <<'PY'
import sys
total, cadenza, ffmpeg, tracks = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
print(f"{int(total)} s of audio in {tracks} tracks, one core each")
print(f"cadenza  {cadenza:7.2f} s   {total / cadenza:7.1f}x realtime")
print(f"ffmpeg   {ffmpeg:7.2f} s   {total / ffmpeg:7.1f}x realtime")
print(f"ratio cadenza/ffmpeg speed: {ffmpeg / cadenza:.2f}x (target >= 1.5x)")
PY
