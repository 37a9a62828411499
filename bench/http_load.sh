#!/usr/bin/env bash
# Closed-loop HTTP load on loopback with wrk: starts a Release fairdraw on a
# fresh SQLite file, measures GET /healthz (the HTTP ceiling of this build) and
# POST /draw (every draw durable before its 200), then prints throughput, peak
# RSS and thread count side by side. Bounded: about 30 s.
#   bench/http_load.sh [connections] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
conns="${1:-64}"
secs="${2:-10}"
port="${FAIRDRAW_BENCH_PORT:-18080}"

cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)" >/dev/null
work=$(mktemp -d /tmp/fairdraw-bench-XXXXXX)
cat > "$work/config.json" <<JSON
{"listen": "127.0.0.1:$port", "admin_token": "bench", "log_level": "warn",
 "database": {"url": "sqlite:$work/fd.db"},
 "activities": {"bench": {"name": "bench", "miss_weight": 9000,
   "prizes": [{"id": "a", "name": "A", "weight": 1000, "stock": 100000000}]}}}
JSON
./build/release/fairdraw --config "$work/config.json" 2>"$work/server.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

run() {  # name, wrk args...
  local name=$1; shift
  local out rps p50 p99
  out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency "$@")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  printf '%-14s %12s %10s %10s\n' "$name" "$rps" "$p50" "$p99"
  echo "$rps" > "$work/$name.rps"
}
printf '%-14s %12s %10s %10s\n' target req/s p50 p99
run healthz "http://127.0.0.1:$port/healthz"
run draw -s bench/wrk_draw.lua "http://127.0.0.1:$port/"
ratio=$(awk -v a="$(cat "$work/draw.rps")" -v b="$(cat "$work/healthz.rps")" 'BEGIN {printf "%.2f", a/b}')
echo "draw/healthz ratio: $ratio"
echo "peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$pid/status), threads: $(awk '/Threads/ {print $2}' /proc/$pid/status)"
echo "committed rows: $(curl -s "http://127.0.0.1:$port/metrics" | awk -F' ' '/sink_committed_rows/ {print $2}')"
