#!/usr/bin/env bash
# bench/ab_draw.sh: two fairdraw binaries side by side on embedded POST /draw, alternated, each run
# on a fresh server and SQLite file (run it on an otherwise idle machine).
#   bench/ab_draw.sh [--runs N] [--rate R] BIN_A BIN_B
# Per run and binary:
#   saturation: wrk -t1 -c64 -d10s -s bench/wrk_draw.lua after 2 s of warm-up; draws/s, and CPU
#     per draw by thread name (utime+stime from /proc/PID/task/*/stat over the measured 10 s,
#     divided by the rows committed, from /metrics) and rows per commit;
#   open loop: fairdraw_loadgen --rate R (default 26000) --connections 1000 --duration 20
#     --warmup 2 --keys sequential; p50 / p99 / p99.9 / p99.99 / max in ms.
# Needs wrk and a build of fairdraw_loadgen (LOADGEN, default build/bench/bench/fairdraw_loadgen).
# Port FAIRDRAW_AB_PORT (default 18192), 127.0.0.1 only; every server it starts is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=3
rate=26000
while [ $# -gt 2 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    *) echo "bench/ab_draw.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ $# -eq 2 ] || { sed -n '2,12p' "$0"; exit 2; }
bins=("$1" "$2")
port=${FAIRDRAW_AB_PORT:-18192}
loadgen=${LOADGEN:-build/bench/bench/fairdraw_loadgen}
url=http://127.0.0.1:$port
pid=
dir=
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; [ -n "$dir" ] && rm -rf "$dir"; }
trap cleanup EXIT

start() {  # start BIN: a fresh server on a fresh file
  dir=$(mktemp -d /tmp/fairdraw-ab-XXXXXX)
  cat >"$dir/config.json" <<JSON
{"listen": "127.0.0.1:$port", "admin_token": "bench", "log_level": "warn",
 "database": {"url": "sqlite:$dir/fd.db"},
 "activities": {"bench": {"name": "bench", "miss_weight": 9000,
   "prizes": [{"id": "a", "name": "A", "weight": 1000, "stock": 1000000000}]}}}
JSON
  FAIRDRAW_HTTP_MAX_CONNECTIONS=40000 FAIRDRAW_HTTP_MAX_CONNECTIONS_PER_ADDRESS=0 \
    FAIRDRAW_WATCHDOG_MAX_OPEN_CONNECTIONS=40000 "$1" --config "$dir/config.json" 2>"$dir/server.log" &
  pid=$!
  for _ in $(seq 200); do curl -sf "$url/healthz" >/dev/null && return 0; sleep 0.05; done
  echo "server did not start:" >&2; cat "$dir/server.log" >&2; exit 1
}
stop() { kill -TERM "$pid"; wait "$pid" || true; pid=; rm -rf "$dir"; dir=; }
metric() { curl -s "$url/metrics" | awk -v n="$1" '$0 ~ "name=\"" n "\"" {print $2}'; }
cpu_by_thread() {
  for t in /proc/"$pid"/task/*; do echo "$(cat "$t/comm") $(awk '{print $14 + $15}' "$t/stat")"; done |
    awk '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}

saturation() {  # saturation LABEL BIN
  start "$2"
  wrk -t1 -c64 -d2s -s bench/wrk_draw.lua "$url/draw" >/dev/null
  local r0 b0 c0 r1 b1 c1 out
  r0=$(metric sink_committed_rows); b0=$(metric sink_committed_batches); c0=$(cpu_by_thread)
  out=$(WRK_KEY_PREFIX=m wrk -t1 -c64 -d10s -s bench/wrk_draw.lua "$url/draw")
  r1=$(metric sink_committed_rows); b1=$(metric sink_committed_batches); c1=$(cpu_by_thread)
  stop
  local rows=$((${r1%.*} - ${r0%.*})) batches=$((${b1%.*} - ${b0%.*}))
  printf '%s saturation: %s draws/s; ' "$1" "$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  # /proc ticks are 1/100 s: ticks * 10^4 / rows = microseconds per row
  join <(echo "$c0") <(echo "$c1") | awk -v rows="$rows" -v b="$batches" \
    '{d = ($3 - $2) * 10000 / rows; tot += d; printf "%s %.1f us, ", $1, d}
     END {printf "total %.1f us CPU per draw; %.1f rows per commit\n", tot, rows / b}'
}

open_loop() {  # open_loop LABEL BIN
  start "$2"
  "$loadgen" --url "$url" --path /draw --activity bench --rate "$rate" --connections 1000 \
    --duration 20 --warmup 2 --threads 1 --keys sequential --json >"$dir/lg.json"
  python3 - "$dir/lg.json" "$1" "$rate" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
l = d["latency_ms"]
print(f"{sys.argv[2]} open loop {sys.argv[3]}/s: achieved {d['achieved_rate']:.0f}/s, "
      f"p50 {l['p50']} p99 {l['p99']} p99.9 {l['p99_9']} p99.99 {l['p99_99']} max {l['max']} ms")
PY
  stop
}

names=(A B)
echo "A = ${bins[0]}, B = ${bins[1]}"
for r in $(seq "$runs"); do for i in 0 1; do saturation "${names[$i]} run $r" "${bins[$i]}"; done; done
for r in $(seq "$runs"); do for i in 0 1; do open_loop "${names[$i]} run $r" "${bins[$i]}"; done; done
