#!/usr/bin/env bash
# bench/profile_requests.sh: instructions and heap allocations per request, repeatable whatever
# the machine's load (wall-clock figures on a shared 2-core box are not).
#   bench/profile_requests.sh BUILD_DIR [callgrind|heaptrack] [healthz|draw] [REQUESTS]
# Starts BUILD_DIR/fairdraw under the tool with a fresh SQLite file, warms up with 200 requests,
# then (callgrind) zeroes the counters, sends REQUESTS more over 8 keep-alive connections with
# bench's open-loop generator at a low rate, dumps, and prints total instructions / requests.
# Everything the server does counts: io threads, the sink's writer thread, SQLite commits.
# heaptrack counts allocations over the whole run (start-up included): run it twice with two
# REQUESTS values and divide the difference (the script prints the totals).
set -euo pipefail
build=${1:?build dir}
tool=${2:-callgrind}
what=${3:-healthz}
n=${4:-4000}
port=${FAIRDRAW_PROFILE_PORT:-18090}
root=$(cd "$(dirname "$0")/.." && pwd)
loadgen=${LOADGEN:-$build/bench/fairdraw_loadgen}
work=$(mktemp -d /tmp/fairdraw-prof-XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; [ -n "$pid" ] && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cat >"$work/config.json" <<EOF
{"listen": "127.0.0.1:$port", "admin_token": "bench", "log_level": "warn", "threads": 2,
 "database": {"url": "sqlite:$work/fd.db"},
 "activities": {"bench": {"name": "bench", "miss_weight": 9000,
   "prizes": [{"id": "a", "name": "A", "weight": 1000, "stock": 1000000000}]}}}
EOF
case $tool in
  callgrind) valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
               "$build/fairdraw" --config "$work/config.json" >"$work/out.log" 2>&1 & ;;
  heaptrack) heaptrack -o "$work/ht" "$build/fairdraw" --config "$work/config.json" >"$work/out.log" 2>&1 & ;;
  *) echo "tool: callgrind or heaptrack" >&2; exit 2 ;;
esac
pid=$!
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
args=(--url "http://127.0.0.1:$port" --connections 8 --threads 1 --warmup 0 --json)
if [ "$what" = draw ]; then args+=(--path /draw --activity bench --keys sequential); else args+=(--method GET --path /healthz); fi
rate=200
"$loadgen" "${args[@]}" --rate $rate --duration 1 >/dev/null 2>&1 || true
[ "$tool" = callgrind ] && callgrind_control -z "$pid" >/dev/null
"$loadgen" "${args[@]}" --rate $rate --duration $((n / rate)) >"$work/load.json" 2>/dev/null || true
sent=$(python3 -c "import json,sys; d=json.load(open('$work/load.json')); print(sum(d['status'].values()))" 2>/dev/null || echo "$n")
if [ "$tool" = callgrind ]; then
  callgrind_control -d "$pid" >/dev/null
  sleep 1
  total=0
  for f in "$work"/cg.out*; do
    ir=$(grep -m1 '^summary:\|^totals:' "$f" | awk '{print $2}' || true)
    [ -n "$ir" ] && total=$((total + ir))
  done
  # The last dump holds what ran since the zeroing; the first file only start-up and warm-up.
  last=$(ls -t "$work"/cg.out.* 2>/dev/null | head -1)
  ir=$(grep -m1 '^totals:\|^summary:' "$last" | awk '{print $2}')
  echo "$what: $sent requests answered, $ir instructions, $((ir / sent)) instructions/request"
  [ -n "${PROFILE_KEEP:-}" ] && cp "$last" "$PROFILE_KEEP"
else
  # heaptrack is a script: stop the server it started, then let it write its file.
  child=$(pgrep -f "fairdraw --config $work/config.json" | grep -vx "$pid" | head -1 || true)
  kill -TERM "${child:-$pid}"; wait "$pid" 2>/dev/null || true; pid=
  sleep 1
  heaptrack_print "$work"/ht*.zst 2>/dev/null | grep -E '^(calls to allocation functions|temporary memory allocations|peak heap)' || true
  echo "$what: $sent requests answered"
  [ -n "${PROFILE_KEEP:-}" ] && cp "$work"/ht*.zst "$PROFILE_KEEP"
fi
