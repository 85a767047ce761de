#!/usr/bin/env bash
# Cadenza's processing pipeline against ffmpeg doing the equivalent job, on the same source
# files, in the same run: decode, three AAC renditions (64/128/256 kbit/s), HLS fMP4
# packaging, one thread each, pinned to the same core — for each input format (the sources
# are encoded into it first, untimed). Prints × realtime per core for both and their ratio
# per format (target: Cadenza >= 1.5x ffmpeg's speed for every format).
#
#   bench/pipeline.sh                 # three 3-minute tracks in each format
#   TRACKS=5 SECONDS_PER_TRACK=240 FORMATS="flac opus" bench/pipeline.sh
#
# Cadenza's run also measures EBU R128 loudness and writes a DASH manifest, which the ffmpeg
# command does not: the comparison is, if anything, in ffmpeg's favour.
set -euo pipefail
cd "$(dirname "$0")/.."
TRACKS=${TRACKS:-3}
SECONDS_PER_TRACK=${SECONDS_PER_TRACK:-180}
FORMATS=${FORMATS:-wav mp3 m4a alac flac ogg opus}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cadenza-target}"
command -v ffmpeg >/dev/null 2>&1 || { echo "installing ffmpeg"; apt-get install -y -qq ffmpeg >/dev/null; }

cargo build --release -q -p media --example package_wav
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

# The encoder and extension of each input format.
encode_args() {
  case "$1" in
    wav) echo "-c:a pcm_s16le wav" ;;
    mp3) echo "-c:a libmp3lame -b:a 192k mp3" ;;
    m4a) echo "-c:a aac -b:a 192k -movflags +faststart m4a" ;;
    alac) echo "-c:a alac m4a" ;;
    flac) echo "-c:a flac flac" ;;
    ogg) echo "-c:a libvorbis -q:a 5 ogg" ;;
    opus) echo "-c:a libopus -b:a 128k opus" ;;
    *) echo "unknown format $1" >&2; exit 64 ;;
  esac
}

echo "$TOTAL s of audio in $TRACKS tracks per format, one core each"
printf '%-6s %10s %10s %8s\n' format cadenza ffmpeg ratio
for format in $FORMATS; do
  read -r -a spec <<<"$(encode_args "$format")"
  extension=${spec[-1]}
  unset 'spec[-1]'
  for n in $(seq 1 "$TRACKS"); do
    input="$WORK/$format$n.$extension"
    [ "$format" = wav ] && cp "$WORK/track$n.wav" "$input" || ffmpeg -v error -y -i "$WORK/track$n.wav" "${spec[@]}" "$input"
  done
  start=$(now)
  for n in $(seq 1 "$TRACKS"); do
    rm -rf "$WORK/cadenza$n"
    taskset -c 0 "$PACKAGE" "$WORK/$format$n.$extension" "$WORK/cadenza$n" >/dev/null
  done
  cadenza=$(python3 -c "print($(now) - $start)")
  start=$(now)
  for n in $(seq 1 "$TRACKS"); do
    rm -rf "$WORK/ffmpeg$n"
    mkdir -p "$WORK/ffmpeg$n"
    taskset -c 0 ffmpeg -v error -threads 1 -filter_threads 1 -i "$WORK/$format$n.$extension" \
      -filter_complex "[0:a]asplit=3[a1][a2][a3]" \
      -map "[a1]" -c:a:0 aac -b:a:0 64k -map "[a2]" -c:a:1 aac -b:a:1 128k -map "[a3]" -c:a:2 aac -b:a:2 256k \
      -f hls -hls_segment_type fmp4 -hls_time 6 -hls_playlist_type vod -var_stream_map "a:0 a:1 a:2" \
      -master_pl_name master.m3u8 -hls_segment_filename "$WORK/ffmpeg$n/%v/seg-%05d.m4s" "$WORK/ffmpeg$n/%v/index.m3u8"
  done
  ffmpeg_time=$(python3 -c "print($(now) - $start)")
  python3 - "$TOTAL" "$cadenza" "$ffmpeg_time" "$format" <<'PY'
import sys
total, cadenza, ffmpeg, fmt = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
print(f"{fmt:<6} {total / cadenza:9.1f}x {total / ffmpeg:9.1f}x {ffmpeg / cadenza:7.2f}x  (target >= 1.5x)")
PY
done
