#!/usr/bin/env bash
# bench/writer_cost.sh: what the SQLite sink's writer thread costs per durable draw, as CPU time
# and bytes written, at a fixed open-loop rate (comparable on a shared machine, unlike latency).
#   bench/writer_cost.sh BUILD_DIR [RATE] [SECONDS] [CONNECTIONS] [KEYS]
# Starts BUILD_DIR/fairdraw with a fresh SQLite file (FAIRDRAW_PROFILE_PORT, default 18200),
# warms up 2 s at RATE, then over SECONDS at RATE (fairdraw_loadgen, open loop, KEYS sequential
# or random) reads, before and after: utime+stime of the threads `fd-sqlite-write` and
# `fd-checkpoint` and of the process (/proc/PID/task/TID/stat), the writer thread's wchar
# (bytes it passed to write(): the WAL frames, and the checkpoint passes it runs itself),
# sink_committed_rows / sink_committed_batches from /metrics. Prints one line per figure.
# WRAP=heaptrack runs the server under heaptrack and also prints its allocation count and the
# rows committed since start: run with two SECONDS and divide the differences.
set -euo pipefail
build=${1:?build dir}
rate=${2:-20000}
secs=${3:-10}
conns=${4:-1000}
keys=${5:-sequential}
port=${FAIRDRAW_PROFILE_PORT:-18200}
loadgen=${LOADGEN:-$build/bench/fairdraw_loadgen}
work=$(mktemp -d /tmp/fairdraw-wcost-XXXXXX)
pid=
wrapper=
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
  [ -n "$wrapper" ] && wait "$wrapper" 2>/dev/null
  [ -n "$pid" ] && [ -z "$wrapper" ] && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/config.json" <<EOF
{"listen": "127.0.0.1:$port", "admin_token": "bench", "log_level": "warn", "threads": 2,
 "http": {"max_connections_per_address": 0},
 "database": {"url": "sqlite:$work/fd.db"},
 "activities": {"bench": {"name": "bench", "miss_weight": 9000,
   "prizes": [{"id": "a", "name": "A", "weight": 1000, "stock": 1000000000}]}}}
EOF
wrapper=
if [ "${WRAP:-}" = heaptrack ]; then
  heaptrack -o "$work/ht" "$build/fairdraw" --config "$work/config.json" >"$work/out.log" 2>&1 &
  wrapper=$!
else
  "$build/fairdraw" --config "$work/config.json" >"$work/out.log" 2>&1 &
  pid=$!
fi
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
if [ -n "$wrapper" ]; then
  pid=$(pgrep -f "fairdraw --config $work/config.json" | grep -vx "$wrapper" | head -1)
fi
tid_of() { for t in /proc/$pid/task/*; do [ "$(cat "$t/comm")" = "$1" ] && basename "$t" && return; done; }
writer=$(tid_of fd-sqlite-write)
ckpt=$(tid_of fd-checkpoint || true)
ticks() { awk '{print $14 + $15}' "$1"; }  # utime + stime, clock ticks
wchar() { awk '/^wchar/ {print $2}' "$1"; }
metric() { curl -sf "http://127.0.0.1:$port/metrics" | awk -v m="name=\"$1\"}" 'index($0, m) {print $2}' | head -1; }
snap() {
  echo "$(ticks /proc/$pid/task/$writer/stat) $( [ -n "$ckpt" ] && ticks /proc/$pid/task/$ckpt/stat || echo 0)" \
       "$(ticks /proc/$pid/stat) $(wchar /proc/$pid/task/$writer/io) $(metric sink_committed_rows)" \
       "$(metric sink_committed_batches)"
}
args=(--url "http://127.0.0.1:$port" --path /draw --activity bench --keys "$keys" --threads 1
      --connections "$conns" --warmup 0 --json)
"$loadgen" "${args[@]}" --rate "$rate" --duration 2 >/dev/null 2>&1 || true
read -r w0 c0 p0 b0 r0 n0 <<<"$(snap)"
"$loadgen" "${args[@]}" --rate "$rate" --duration "$secs" >"$work/load.json" 2>/dev/null || true
sleep 0.5
read -r w1 c1 p1 b1 r1 n1 <<<"$(snap)"
hz=$(getconf CLK_TCK)
python3 - "$work/load.json" <<EOF
import json, sys
rows = float("$r1") - float("$r0"); commits = float("$n1") - float("$n0"); hz = $hz
print(f"rows {rows:.0f}  commits {commits:.0f}  rows/commit {rows / max(commits, 1):.2f}")
print(f"writer CPU per row   {1e6 * ($w1 - $w0) / hz / max(rows, 1):.2f} us  (per commit {1e6 * ($w1 - $w0) / hz / max(commits, 1):.1f} us)")
print(f"checkpointer CPU/row {1e6 * ($c1 - $c0) / hz / max(rows, 1):.2f} us")
print(f"process CPU per row  {1e6 * ($p1 - $p0) / hz / max(rows, 1):.2f} us")
print(f"writer bytes written per row {($b1 - $b0) / max(rows, 1):.0f}  (per commit {($b1 - $b0) / max(commits, 1):.0f})")
try:
    d = json.load(open(sys.argv[1]))
    lat = d.get("latency_ms") or d.get("latency") or {}
    print("loadgen: status", d.get("status"), "late", d.get("late"), "latency_ms", d.get("latency_ms"))
except Exception as e:
    print("loadgen output unreadable:", e)
EOF
if [ -n "$wrapper" ]; then
  echo "rows committed since start $(metric sink_committed_rows)"
  kill -TERM "$pid"; wait "$wrapper" 2>/dev/null || true; pid=; wrapper=
  sleep 1
  heaptrack_print "$work"/ht*.zst 2>/dev/null | grep -E '^calls to allocation functions' || true
  [ -n "${PROFILE_KEEP:-}" ] && cp "$work"/ht*.zst "$PROFILE_KEEP"
fi
