#!/usr/bin/env bash
# The edge node against nginx, in the same run, with the same load tools and settings.
#
#   bench/edge.sh                      # 3 rounds of 5 s per measurement, 64 connections
#   ROUNDS=5 DURATION=10 CONNECTIONS=128 H2_STREAMS=10 H3_STREAMS=10 bench/edge.sh
#   EDGE_BIN=/old/edge-node ORIGIN_BIN=/old/origin bench/edge.sh   # another build's binaries
#
# Serves one ~100 KB segment and one ~1 KB playlist from
#   - a warm Cadenza edge (filled once from Cadenza's origin, then every request a memory hit),
#   - nginx serving the files statically,
#   - nginx as a warm proxy_cache in front of that static nginx,
# over HTTP/1.1 (wrk), HTTP/2 over TLS (h2load) and, for Cadenza only, HTTP/3 (oha built with
# its http3 feature; installed by this script with cargo if missing) and HTTP/2 over TLS through
# oha too (HTTP/3's client over HTTP/2, to tell the protocol from the tool). nginx is told to
# offer TLS 1.3 (Debian's 1.22 offers up to 1.2 unless told), so that h2load gets the same
# version and cipher from both servers; the script prints them. Servers run on core 0
# (nginx with one worker, Cadenza with one runtime thread's worth of CPU), load generators on
# core 1. Prints requests/s, p99 latency, the server's CPU per request, how busy the load
# generator's core was, the TCP segments per response and how often a receiver's window filled
# (both ends are on loopback, so these count both directions), and the ratios the issue sets as
# targets. This machine drifts by tens of per cent within minutes, so every peer is measured
# once per round, rounds follow each other, and each ratio is the median of the rounds' ratios
# (each round's own ratio beside it):
#   HTTP/1.1 segment hits  >= 1.0x nginx proxy_cache (and, since wrk's core can be the limit,
#                          the CPU each server spends per request, compared the other way round)
#   TLS HTTP/2             >= 1.0x nginx
#   HTTP/3                 >= 0.5x Cadenza's own HTTP/2 (h2load's figure; the figure through
#                          oha is printed beside it)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
H2_STREAMS=${H2_STREAMS:-10}
# Concurrent requests per HTTP/3 connection: as many as HTTP/2's streams, so that HTTP/3 and
# HTTP/2 are compared under the same load (oha's -p).
H3_STREAMS=${H3_STREAMS:-$H2_STREAMS}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cadenza-target}"

need() { command -v "$1" >/dev/null 2>&1 || { echo "installing $2"; apt-get install -y -qq "$2" >/dev/null; }; }
need nginx nginx-light
need wrk wrk
need h2load nghttp2-client
need openssl openssl
if ! command -v oha >/dev/null 2>&1; then
  echo "installing oha (with HTTP/3) from crates.io; this takes a few minutes once"
  cargo install -q --locked oha --features http3 >/dev/null
fi
export PATH="$HOME/.cargo/bin:$PATH"

# EDGE_BIN and ORIGIN_BIN measure other builds (an older commit's, for an A/B against it);
# unset, this checkout's are built.
if [ -z "${EDGE_BIN:-}" ] || [ -z "${ORIGIN_BIN:-}" ]; then
  cargo build --release -q -p origin -p edge-node
fi
ORIGIN_BIN="${ORIGIN_BIN:-$CARGO_TARGET_DIR/release/origin}"
EDGE_BIN="${EDGE_BIN:-$CARGO_TARGET_DIR/release/edge-node}"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The content: a 100 KB segment and a 1 KB playlist under public/ (no URL token needed).
mkdir -p "$WORK/objects/public/bench" "$WORK/html/public/bench" "$WORK/cache"
head -c 102400 /dev/urandom >"$WORK/objects/public/bench/seg.m4s"
python3 -c 'print("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:6\n" + "".join(f"#EXTINF:6.0,\nseg-{i}.m4s\n" for i in range(40)))' \
  | head -c 1024 >"$WORK/objects/public/bench/list.m3u8"
cp "$WORK/objects/public/bench/"* "$WORK/html/public/bench/"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1

FILL_KEY=bench-fill-key-0123456789
ORIGIN_PORT=$(free_port); ORIGIN_ADMIN=$(free_port)
EDGE_PORT=$(free_port); EDGE_TLS=$(free_port); EDGE_ADMIN=$(free_port)
NGINX_STATIC=$(free_port); NGINX_CACHE=$(free_port); NGINX_TLS_STATIC=$(free_port); NGINX_TLS_CACHE=$(free_port)

CADENZA_FILL_KEY=$FILL_KEY CADENZA_LOG=warn taskset -c 0 "$ORIGIN_BIN" --listen "127.0.0.1:$ORIGIN_PORT" \
  --admin-listen "127.0.0.1:$ORIGIN_ADMIN" --object-store-url "file://$WORK/objects" >"$WORK/origin.log" 2>&1 &
PIDS+=($!)
cat >"$WORK/edge.toml" <<EOF
id = "bench-edge"
listen = "127.0.0.1:$EDGE_PORT"
tls_listen = "127.0.0.1:$EDGE_TLS"
admin_listen = "127.0.0.1:$EDGE_ADMIN"
tls_cert = "$WORK/cert.pem"
tls_key = "$WORK/key.pem"
parents = ["http://127.0.0.1:$ORIGIN_PORT"]
fill_key = "$FILL_KEY"
token_prefixes = []
max_concurrent_streams = 1000
# A disk tier, as nginx's proxy_cache has: the edge then keeps memory-tier bodies in unnamed
# files beside it (the file system's page cache) rather than in memory files.
disk_cache_dir = "$WORK/edge-cache"
EOF
CADENZA_LOG=warn taskset -c 0 "$EDGE_BIN" --config "$WORK/edge.toml" >"$WORK/edge.log" 2>&1 &
PIDS+=($!)
EDGE_PID=$!

cat >"$WORK/nginx.conf" <<EOF
# The workers run as root only so that they can read and write this private scratch directory.
user root;
worker_processes 1;
worker_cpu_affinity 01;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on; tcp_nodelay on;
  # tcp_nopush off: with it on, keep-alive responses of cached files stall on delayed ACKs
  # (measured here: proxy_cache 1.9k requests/s with it, 51k without).
  tcp_nopush off;
  keepalive_requests 1000000;
  types { application/vnd.apple.mpegurl m3u8; video/iso.segment m4s; }
  proxy_cache_path $WORK/cache levels=1:2 keys_zone=media:10m max_size=1g inactive=1h use_temp_path=off;
  upstream static_nginx { server 127.0.0.1:$NGINX_STATIC; keepalive 64; }
  server { listen 127.0.0.1:$NGINX_STATIC; root $WORK/html; }
  server {
    listen 127.0.0.1:$NGINX_CACHE;
    location / {
      proxy_pass http://static_nginx; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_cache media; proxy_cache_valid 200 1h; proxy_cache_lock on;
      add_header X-Cache \$upstream_cache_status;
    }
  }
  server {
    listen 127.0.0.1:$NGINX_TLS_STATIC ssl http2;
    ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    root $WORK/html;
  }
  server {
    listen 127.0.0.1:$NGINX_TLS_CACHE ssl http2;
    ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://static_nginx; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_cache media; proxy_cache_valid 200 1h; proxy_cache_lock on;
    }
  }
}
EOF
taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK"
for _ in $(seq 1 50); do [ -s "$WORK/nginx.pid" ] && break; sleep 0.1; done
NGINX_WORKER=$(pgrep -P "$(cat "$WORK/nginx.pid")" | head -1)

for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$EDGE_ADMIN/healthz" >/dev/null && break; sleep 0.1; done
# Warm both caches.
for path in /public/bench/seg.m4s /public/bench/list.m3u8; do
  for _ in 1 2 3; do
    curl -sf -o /dev/null "http://127.0.0.1:$EDGE_PORT$path"
    curl -sf -o /dev/null "http://127.0.0.1:$NGINX_CACHE$path"
    curl -sfk -o /dev/null "https://127.0.0.1:$NGINX_TLS_CACHE$path"
  done
  cmp <(curl -sf "http://127.0.0.1:$EDGE_PORT$path") "$WORK/objects$path"
done
curl -sf "http://127.0.0.1:$EDGE_PORT/public/bench/seg.m4s" -D - -o /dev/null | grep -qi "cache-status: bench-edge; hit"
# What h2load negotiates with each server: the same TLS version and cipher, or the comparison
# is not like for like.
tls_of() { h2load -n 1 -c 1 "https://127.0.0.1:$1/public/bench/list.m3u8" 2>&1 | awk '/^TLS Protocol:/ {p = $3} /^Cipher:/ {c = $2} END {print p, c}'; }
echo "h2load's TLS: cadenza edge $(tls_of "$EDGE_TLS"), nginx static $(tls_of "$NGINX_TLS_STATIC"), nginx proxy_cache $(tls_of "$NGINX_TLS_CACHE")"

# wrk: requests/s and p99 (ms).
run_wrk() {
  local out
  out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$1")
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")
  echo "$rps $p99"
}
# h2load over TLS: requests/s and p99 (ms) from its per-request log.
run_h2load() {
  local log="$WORK/h2load.log"
  rm -f "$log"
  local out
  out=$(taskset -c 1 h2load -D "$DURATION" -c "$CONNECTIONS" -m "$H2_STREAMS" -t 1 --log-file="$log" "$1" 2>&1)
  local rps p99
  rps=$(awk '/^finished in/ {print $4}' <<<"$out")
  p99=$(sort -n -k3 "$log" | awk '{a[NR]=$3} END {i=int(NR*0.99); if (i<1) i=1; printf "%.2f", a[i]/1000}')
  echo "$rps $p99"
}
# oha over HTTP/$1 (3, or 2 with TLS: HTTP/3's own client over HTTP/2, so that the two protocols
# are also compared through one client): requests/s and p99 (ms). One worker thread, as wrk and
# h2load have (oha's default is one per physical core, which on a machine with two would share
# the pinned core).
run_oha() {
  local out streams=$H2_STREAMS
  [ "$1" = 3 ] && streams=$H3_STREAMS
  out=$(taskset -c 1 oha --no-tui --insecure --http-version "$1" --worker-threads 1 -z "${DURATION}s" -c "$CONNECTIONS" -p "$streams" --output-format json "$2" 2>/dev/null)
  python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["summary"]["requestsPerSec"], d["latencyPercentiles"]["p99"]*1000)' <<<"$out"
}

# What each run cost: the server's CPU time per request (from /proc/PID/stat), and how busy the
# load generator's core was (from /proc/stat) — near 100 % means the load tool, not the
# server, set the rate.
TICK=$(getconf CLK_TCK)
server_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
core1_jiffies() { awk '$1 == "cpu1" {busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6}' /proc/stat; }
# The kernel's TCP counters: segments sent, and times a receiver wanted to advertise a zero
# window (its buffer was full of data the application had not read yet, so the sender waits for
# a window update: one more segment and one more wake-up per occurrence). With wrk's core the
# limit, these are what a server changes about the client's work per response.
tcp_counters() {
  awk '$1 == "Tcp:" || $1 == "TcpExt:" {
         if (!($1 in names)) { names[$1] = $0; next }
         split(names[$1], n); for (i = 2; i <= NF; i++) v[n[i]] = $i
       }
       END { print v["OutSegs"] + 0, v["TCPWantZeroWindowAdv"] + 0 }' /proc/net/snmp /proc/net/netstat
}

printf "%-52s %12s %10s %16s %12s %10s %14s\n" "round: measurement" "requests/s" "p99 ms" "server us/req" "load core %" "segs/resp" "win-full/resp"
declare -A RPS US SEGS
measure() {
  local round=$1 name=$2 pid=$3; shift 3
  local result t0 t1 c0 c1 k0 k1
  t0=$(server_ticks "$pid"); c0=$(core1_jiffies); k0=$(tcp_counters)
  result=$("$@")
  t1=$(server_ticks "$pid"); c1=$(core1_jiffies); k1=$(tcp_counters)
  RPS["$round|$name"]=$(awk '{print $1}' <<<"$result")
  US["$round|$name"]=$(awk -v t="$((t1 - t0))" -v hz="$TICK" -v d="$DURATION" '{ if ($1 > 0) printf "%.1f", t / hz * 1e6 / ($1 * d); else print "n/a" }' <<<"$result")
  # Per response over TCP (HTTP/3 runs over UDP: n/a).
  local per_response="n/a n/a"
  if [[ $name != h3* ]]; then
    per_response=$(awk -v a="$k0" -v b="$k1" -v d="$DURATION" '{ split(a, x, " "); split(b, y, " ");
      if ($1 > 0) printf "%.2f %.2f", (y[1] - x[1]) / ($1 * d), (y[2] - x[2]) / ($1 * d); else print "n/a n/a" }' <<<"$result")
  fi
  SEGS["$round|$name"]=${per_response%% *}
  printf "%-52s %12s %10s %16s %12s %10s %14s\n" "$round: $name" "$(awk '{printf "%.0f", $1}' <<<"$result")" \
    "$(awk '{printf "%.2f", $2}' <<<"$result")" \
    "${US["$round|$name"]}" \
    "$(awk -v a="$c0" -v b="$c1" 'BEGIN { split(a, x, " "); split(b, y, " "); if (y[2] > x[2]) printf "%.0f", 100 * (y[1] - x[1]) / (y[2] - x[2]); else print "n/a" }')" \
    ${per_response}
}
for round in $(seq 1 "$ROUNDS"); do
  for object in seg.m4s list.m3u8; do
    measure "$round" "h1 $object  cadenza edge" "$EDGE_PID" run_wrk "http://127.0.0.1:$EDGE_PORT/public/bench/$object"
    measure "$round" "h1 $object  nginx static" "$NGINX_WORKER" run_wrk "http://127.0.0.1:$NGINX_STATIC/public/bench/$object"
    measure "$round" "h1 $object  nginx proxy_cache" "$NGINX_WORKER" run_wrk "http://127.0.0.1:$NGINX_CACHE/public/bench/$object"
    measure "$round" "h2-tls $object  cadenza edge" "$EDGE_PID" run_h2load "https://127.0.0.1:$EDGE_TLS/public/bench/$object"
    measure "$round" "h2-tls $object  nginx static" "$NGINX_WORKER" run_h2load "https://127.0.0.1:$NGINX_TLS_STATIC/public/bench/$object"
    measure "$round" "h2-tls $object  nginx proxy_cache" "$NGINX_WORKER" run_h2load "https://127.0.0.1:$NGINX_TLS_CACHE/public/bench/$object"
    measure "$round" "h3 $object  cadenza edge" "$EDGE_PID" run_oha 3 "https://127.0.0.1:$EDGE_TLS/public/bench/$object"
    measure "$round" "h2-tls-oha $object  cadenza edge" "$EDGE_PID" run_oha 2 "https://127.0.0.1:$EDGE_TLS/public/bench/$object"
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# The median over rounds of A / B requests/s ("rps") or of B / A CPU per request ("cpu"), then
# every round's value.
over_rounds() {
  local kind=$1 a=$2 b=$3 values=() round
  for round in $(seq 1 "$ROUNDS"); do
    if [ "$kind" = rps ]; then
      values+=("$(ratio "${RPS["$round|$a"]}" "${RPS["$round|$b"]}")")
    else
      values+=("$(ratio "${US["$round|$b"]}" "${US["$round|$a"]}")")
    fi
  done
  printf "%s  (%s)" "$(printf '%s\n' "${values[@]}" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')" "${values[*]}"
}
# The median over rounds of one peer's TCP segments per response, then every round's value.
segments() {
  local values=() round
  for round in $(seq 1 "$ROUNDS"); do values+=("${SEGS["$round|$1"]}"); done
  printf "%s  (%s)" "$(printf '%s\n' "${values[@]}" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')" "${values[*]}"
}
echo
echo "ratios: median of $ROUNDS rounds (each round's), target in brackets"
for object in seg.m4s list.m3u8; do
  echo "  $object h1 cadenza / nginx proxy_cache               $(over_rounds rps "h1 $object  cadenza edge" "h1 $object  nginx proxy_cache")   [>= 1.0 for the segment]"
  echo "  $object h1 CPU per request, nginx proxy_cache / cadenza $(over_rounds cpu "h1 $object  cadenza edge" "h1 $object  nginx proxy_cache")   [> 1.0: the edge spends less]"
  echo "  $object h1 cadenza / nginx static                    $(over_rounds rps "h1 $object  cadenza edge" "h1 $object  nginx static")"
  echo "  $object h1 TCP segments per response: cadenza $(segments "h1 $object  cadenza edge"), nginx proxy_cache $(segments "h1 $object  nginx proxy_cache")"
  echo "  $object h2-tls cadenza / nginx proxy_cache           $(over_rounds rps "h2-tls $object  cadenza edge" "h2-tls $object  nginx proxy_cache")   [>= 1.0]"
  echo "  $object h2-tls cadenza / nginx static                $(over_rounds rps "h2-tls $object  cadenza edge" "h2-tls $object  nginx static")   [>= 1.0]"
  echo "  $object h3 / cadenza h2-tls                          $(over_rounds rps "h3 $object  cadenza edge" "h2-tls $object  cadenza edge")   [>= 0.5]"
  echo "  $object h3 / cadenza h2-tls, both through oha       $(over_rounds rps "h3 $object  cadenza edge" "h2-tls-oha $object  cadenza edge")"
done
