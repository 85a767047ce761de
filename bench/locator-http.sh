#!/usr/bin/env bash
# Load test of the host locator's HTTP endpoint against nginx answering a static 302, in the
# same run, with the same load tool and settings. The server gets core 0, wrk core 1.
#
#   bench/locator-http.sh            # 10 s per server, 32 connections
#   DURATION=20 CONNECTIONS=64 bench/locator-http.sh
#
# Prints requests/s and p99 latency of each, and the ratio (target: locator >= 0.8x nginx).
# The locator answers with a real decision: a GeoIP lookup (a City database of 20 000
# networks built here), 300 registered edges in 30 sites and an ISP box's prefixes.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cadenza-target}"

need() { command -v "$1" >/dev/null 2>&1 || { echo "installing $2"; apt-get install -y -qq "$2" >/dev/null; }; }
need nginx nginx
need wrk wrk

cargo build --release -q -p host-locator
BIN="$CARGO_TARGET_DIR/release/host-locator"
WORK=$(mktemp -d)
cleanup() { kill "${LOCATOR_PID:-}" "${NGINX_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# A GeoIP database: 20 000 /24 networks in 200 cities.
python3 - "$WORK/networks.csv" <<'PY'
import random, sys
random.seed(7)
cities = [(random.uniform(-50, 60), random.uniform(-170, 170)) for _ in range(200)]
with open(sys.argv[1], "w") as out:
    out.write("network,country,city,latitude,longitude\n")
    for i in range(20000):
        a, b = 20 + i // 256, i % 256
        lat, lon = cities[i % 200]
        out.write(f"{a}.{b}.0.0/24,XX,City {i % 200},{lat:.4f},{lon:.4f}\n")
PY
"$BIN" build-geoip --csv "$WORK/networks.csv" --out "$WORK/city.mmdb"

LOCATOR_PORT=$(free_port); ADMIN_PORT=$(free_port); NGINX_PORT=$(free_port)
TOKEN=bench-token-0123456789abcdef
CADENZA_NODE_TOKEN=$TOKEN CADENZA_HEARTBEAT_TIMEOUT_SECS=3600 CADENZA_LOG=warn taskset -c 0 "$BIN" --listen "127.0.0.1:$LOCATOR_PORT" \
  --admin-listen "127.0.0.1:$ADMIN_PORT" --geoip-db "$WORK/city.mmdb" >"$WORK/locator.log" 2>&1 &
LOCATOR_PID=$!
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$ADMIN_PORT/healthz" >/dev/null && break; sleep 0.1; done

# 300 edges in 30 sites, one ISP box with 1 000 prefixes. Registered once; the long heartbeat
# timeout above keeps them in the answers for the whole run.
python3 - "$LOCATOR_PORT" "$TOKEN" <<'PY'
import json, random, sys, urllib.request
port, token = sys.argv[1], sys.argv[2]
random.seed(11)
def post(body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/nodes", data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
    urllib.request.urlopen(req).read()
for site in range(30):
    lat, lon = random.uniform(-50, 60), random.uniform(-170, 170)
    for n in range(10):
        post({"id": f"edge-{site}-{n}", "kind": "edge", "site": f"site-{site}",
              "urls": {"h1": f"http://edge-{site}-{n}.cdn.example"}, "location": {"lat": lat, "lon": lon},
              "capacity": {"connections": 10000}, "load": {"connections": random.randint(0, 5000)}})
post({"id": "isp-1", "kind": "isp-box", "site": "isp", "urls": {"h1": "http://isp-1.example"},
      "location": {"lat": 48.0, "lon": 2.0}, "prefixes": [f"100.{i // 256}.{i % 256}.0/24" for i in range(1000)]})
PY

cat >"$WORK/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
error_log $WORK/nginx-error.log;
pid $WORK/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location /v1/locate { return 302 http://edge-1-1.cdn.example/; }
  }
}
NGINX
taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK" &
NGINX_PID=$!
sleep 0.5

# Every request comes from 127.0.0.1 (default region); the track varies per request so that
# rendezvous hashing does real work.
cat >"$WORK/tracks.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/v1/locate?track=track-" .. (n % 100000) .. "&redirect=1&format=hls")
end
LUA

run() { # run NAME PORT
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/tracks.lua" "http://127.0.0.1:$2" >"$WORK/$1.txt"
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$1.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$WORK/$1.txt")
  local non2xx
  non2xx=$(awk '/Non-2xx or 3xx/ {print $5}' "$WORK/$1.txt")
  printf '%-22s %12s req/s   p99 %8s   errors %s\n' "$1" "$rps" "$p99" "${non2xx:-0}"
  echo "$rps" >"$WORK/$1.rps"
}
echo "Host locator vs nginx static 302 — ${DURATION}s, ${CONNECTIONS} connections, server on core 0, wrk on core 1"
run "nginx (static 302)" "$NGINX_PORT"
run "cadenza host-locator" "$LOCATOR_PORT"
python3 - "$(cat "$WORK/cadenza host-locator.rps")" "$(cat "$WORK/nginx (static 302).rps")" <<'PY'
import sys
locator, nginx = float(sys.argv[1]), float(sys.argv[2])
print(f"ratio locator/nginx: {locator / nginx:.2f}x (target >= 0.80x)")
PY
