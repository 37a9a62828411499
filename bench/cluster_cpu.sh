#!/usr/bin/env bash
# bench/cluster_cpu.sh: CPU per clustered draw in fairdraw, Redis and PostgreSQL (bench/run's
# step h1 by hand, with CPU accounting), for A/B comparisons of builds on a shared machine.
#
#   bench/cluster_cpu.sh [--runs N] [--secs S] BUILD_DIR [BUILD_DIR ...]
#
# For each of N rounds (default 3) and each build in turn (so builds alternate: A B A B ...):
#   1. a fresh private redis-server (--appendonly yes --save ''), a fresh database in one private
#      PostgreSQL (scripts/pg-test-server.sh, started once) and one BUILD_DIR/fairdraw in
#      clustered mode with the activity `bench` (as bench/run's h1: miss_weight 9000, one prize
#      of weight 1000 and stock 10^9);
#   2. 2 s of wrk to warm up, wait until the stream worker has drained the stream (nothing
#      unread or pending, the unpersisted-draw index empty), CONFIG RESETSTAT;
#   3. CPU seconds of each process from /proc/PID/stat (utime + stime, plus cutime + cstime of
#      reaped children; PostgreSQL: the postmaster and all its children), then
#      `wrk -t1 -c64 -dSs -s bench/wrk_draw.lua`, then wait until drained again, CPU again;
#   4. prints the CPU per draw (µs, over the draws made: the activity's seq) of each process,
#      draws/s (wrk), and Redis's INFO commandstats per draw.
# A summary per build (each run's figures) follows at the end.
#
# CLUSTER_CPU_PERF_DIR=DIR: `perf record --call-graph dwarf` fairdraw and redis-server during the
# measured wrk (DIR/fairdraw-BUILD-RUN.data, DIR/redis-BUILD-RUN.data); its overhead counts in the
# CPU figures of that run, so profile and measure in separate invocations.
#
# Ports 18250-18299 on 127.0.0.1 only (CLUSTER_CPU_PORT picks the base, default 18250; uses
# base .. base+2). Everything started here is stopped on exit (trap), PostgreSQL included.
# The machine may be shared: compare CPU per draw, not rates or latencies.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

runs=3
secs=10
builds=()
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --secs) secs=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) builds+=("$1"); shift ;;
  esac
done
[ ${#builds[@]} -gt 0 ] || { echo "usage: $0 [--runs N] [--secs S] BUILD_DIR [BUILD_DIR ...]" >&2; exit 2; }
for b in "${builds[@]}"; do
  [ -x "$b/fairdraw" ] || { echo "no $b/fairdraw (a Release build: cmake -S . -B DIR -DCMAKE_BUILD_TYPE=Release)" >&2; exit 2; }
done
for tool in redis-server redis-cli wrk curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 2; }
done

host=127.0.0.1
base=${CLUSTER_CPU_PORT:-18250}
if [ "$base" -lt 18250 ] || [ $((base + 2)) -gt 18299 ]; then
  echo "CLUSTER_CPU_PORT must keep base..base+2 in 18250-18299" >&2
  exit 2
fi
redis_port=$base
pg_port=$((base + 1))
fd_port=$((base + 2))
conns=64
hz=$(getconf CLK_TCK)

log() { printf '== %s\n' "$*" >&2; }

work=$(mktemp -d /tmp/fairdraw-cluster-cpu-XXXXXX)
pg_dir=""
pids=()
reap() {  # wait at most 15 s for a process sent TERM, then KILL it
  local _ st
  for _ in $(seq 150); do
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)
    case $st in "" | Z) break ;; esac
    sleep 0.1
  done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
stop_all() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do reap "$p"; done
  pids=()
}
cleanup() {
  stop_all
  if [ -n "$pg_dir" ]; then
    scripts/pg-test-server.sh stop "$pg_dir" >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- CPU accounting ------------------------------------------------------------------------------
# Clock ticks of one process: utime + stime + cutime + cstime (fields 14-17; the command name,
# field 2, may hold spaces, so fields are counted after its closing parenthesis).
ticks() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  s=${s##*) }
  awk '{print $12 + $13 + $14 + $15}' <<<"$s"
}
# Context switches (voluntary + involuntary) of every live thread of a process: wake-ups.
switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}'
}
# Clock ticks of a process's reaped children only (cutime + cstime): Redis's AOF rewrites.
child_ticks() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  s=${s##*) }
  awk '{print $14 + $15}' <<<"$s"
}
# The postmaster and every live child (the reaped ones are in the postmaster's cutime/cstime).
pg_ticks() {
  local pm total c
  pm=$(head -1 "$pg_dir/data/postmaster.pid")
  total=$(ticks "$pm")
  for c in $(ps -o pid= --ppid "$pm"); do total=$((total + $(ticks "$c"))); done
  echo "$total"
}

# --- servers -------------------------------------------------------------------------------------
rc() { redis-cli -h "$host" -p "$redis_port" "$@"; }

start_redis() {
  local dir=$work/redis _
  rm -rf "$dir"
  mkdir -p "$dir"
  redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$dir" --appendonly yes --save '' \
    --daemonize no --logfile "$dir/redis.log" &
  redis_pid=$!
  pids+=("$redis_pid")
  for _ in $(seq 100); do rc ping 2>/dev/null | grep -q PONG && return 0; sleep 0.1; done
  log "redis-server did not start:"; cat "$dir/redis.log" >&2; exit 1
}

pg_bin() {
  local found="" d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/psql" ] && found=$d; done
  echo "${PG_BIN:-$found}"
}
pg_admin() {  # SQL as the cluster's superuser over its unix socket
  local run=()
  [ "$(id -u)" = 0 ] && run=(runuser -u postgres --)
  "${run[@]}" timeout 60 "$(pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 -h "$pg_dir/sock" -p "$pg_port" \
    -U postgres -d postgres -tA -c "$1"
}
start_pg() {
  pg_dir=$(mktemp -d /tmp/fairdraw-cluster-cpu-pg-XXXXXX)
  timeout 180 scripts/pg-test-server.sh start "$pg_dir" "$pg_port" >"$work/pg.log" 2>&1 ||
    { log "PostgreSQL did not start:"; cat "$work/pg.log" >&2; exit 1; }
  pg_url=$(scripts/pg-test-server.sh url "$pg_dir" "$pg_port")
}
fresh_database() {  # every run starts from an empty database (fairdraw migrates it)
  pg_admin "DROP DATABASE IF EXISTS fairdraw WITH (FORCE)" >/dev/null
  pg_admin "CREATE DATABASE fairdraw OWNER fairdraw" >/dev/null
  pg_admin "CHECKPOINT" >/dev/null
}

start_fairdraw() {  # BUILD_DIR
  local dir=$work/fairdraw _
  rm -rf "$dir"
  mkdir -p "$dir"
  cat >"$dir/config.json" <<JSON
{"listen": "$host:$fd_port", "admin_token": "bench", "log_level": "warn",
 "redis": {"url": "redis://$host:$redis_port/0"},
 "database": {"url": "$pg_url"},
 "activities": {"bench": {"name": "bench", "miss_weight": 9000,
   "prizes": [{"id": "a", "name": "A", "weight": 1000, "stock": 1000000000}]}}}
JSON
  (cd "$dir" && exec "$root/$1/fairdraw" --config "$dir/config.json" 2>"$dir/server.log") &
  fd_pid=$!
  pids+=("$fd_pid")
  for _ in $(seq 300); do
    curl -sf -o /dev/null "http://$host:$fd_port/healthz" 2>/dev/null && return 0
    kill -0 "$fd_pid" 2>/dev/null || break
    sleep 0.1
  done
  log "fairdraw did not start:"; cat "$dir/server.log" >&2; exit 1
}

# The stream worker is done: nothing unread or pending in the group, the read index empty.
drained() {
  local info
  info=$(rc XINFO GROUPS 'fd:{bench}:stream' 2>/dev/null | tr '\n' ' ')
  [[ $info =~ pending\ 0\ .*lag\ 0\  ]] || return 1
  [ "$(rc HLEN 'fd:{bench}:unpersisted')" = 0 ]
}
wait_drained() {
  local _
  for _ in $(seq 600); do
    drained && return 0
    sleep 0.1
  done
  log "the stream did not drain within 60 s: $(rc XINFO GROUPS 'fd:{bench}:stream' | tr '\n' ' ')"
  return 1
}

# --- one run -------------------------------------------------------------------------------------
# Appends "build run draws rps fairdraw_us redis_us pg_us" to $work/results.
one_run() {  # BUILD_DIR RUN
  local b=$1 round=$2 f0 r0 p0 f1 r1 p1 fs0 fs1 rs0 rs1 rc0 rc1 rw0 rw1 seq0 seq1 draws rps
  start_redis
  fresh_database
  start_fairdraw "$b"
  WRK_KEY_PREFIX=w- wrk -t1 -c$conns -d2s -s bench/wrk_draw.lua "http://$host:$fd_port/" >/dev/null
  wait_drained
  rc CONFIG RESETSTAT >/dev/null
  seq0=$(rc GET 'fd:{bench}:seq')
  f0=$(ticks "$fd_pid"); r0=$(ticks "$redis_pid"); p0=$(pg_ticks)
  fs0=$(switches "$fd_pid"); rs0=$(switches "$redis_pid"); rc0=$(child_ticks "$redis_pid")
  rw0=$(rc INFO persistence | awk -F: '/^aof_rewrites:/ {print $2 + 0}')
  local perfs=() tag
  if [ -n "${CLUSTER_CPU_PERF_DIR:-}" ]; then
    mkdir -p "$CLUSTER_CPU_PERF_DIR"
    tag=$(basename "$b")-$round
    perf record -q --call-graph dwarf,16384 -F 499 -p "$fd_pid" -o "$CLUSTER_CPU_PERF_DIR/fairdraw-$tag.data" \
      -- sleep "$secs" 2>/dev/null &
    perfs+=($!)
    perf record -q --call-graph dwarf,16384 -F 499 -p "$redis_pid" -o "$CLUSTER_CPU_PERF_DIR/redis-$tag.data" \
      -- sleep "$secs" 2>/dev/null &
    perfs+=($!)
  fi
  WRK_KEY_PREFIX=m- wrk -t1 -c$conns -d"${secs}"s -s bench/wrk_draw.lua "http://$host:$fd_port/" >"$work/wrk.out"
  for p in "${perfs[@]}"; do wait "$p" || true; done
  wait_drained
  f1=$(ticks "$fd_pid"); r1=$(ticks "$redis_pid"); p1=$(pg_ticks)
  fs1=$(switches "$fd_pid"); rs1=$(switches "$redis_pid"); rc1=$(child_ticks "$redis_pid")
  rw1=$(rc INFO persistence | awk -F: '/^aof_rewrites:/ {print $2 + 0}')
  seq1=$(rc GET 'fd:{bench}:seq')
  rc INFO commandstats >"$work/commandstats"
  draws=$((seq1 - seq0))
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.out")
  if grep -q 'Non-2xx\|Socket errors' "$work/wrk.out"; then
    log "wrk reported errors: $(grep 'Non-2xx\|Socket errors' "$work/wrk.out" | tr '\n' ' ')"
  fi
  awk -v b="$b" -v run="$round" -v d="$draws" -v rps="$rps" -v hz="$hz" \
    -v f=$((f1 - f0)) -v r=$((r1 - r0)) -v p=$((p1 - p0)) -v fs=$((fs1 - fs0)) -v rs=$((rs1 - rs0)) -v rch=$((rc1 - rc0)) -v rw=$((rw1 - rw0)) 'BEGIN {
      us = 1e6 / hz / d
      printf "%s %s %d %s %.1f %.1f %.1f %.2f %.2f %.1f %d\n", b, run, d, rps, f * us, r * us, p * us, fs / d, rs / d, rch * us, rw }' >>"$work/results"
  # Redis's own view: µs of each command per draw (wall time inside Redis, inflated by load)
  awk -F'[:,=]' -v d="$draws" '/^cmdstat_/ {
      sub("cmdstat_", "", $1); printf "    %-12s calls/draw %.3f  us/draw %.2f\n", $1, $3 / d, $5 / d }' \
    "$work/commandstats" | sort -k5 -n -r | head -14 >"$work/commandstats.per_draw"
  tail -1 "$work/results" | awk '{printf "run %s %s: %d draws, %s draws/s; CPU per draw (us): fairdraw %s, redis %s, postgresql %s; context switches per draw: fairdraw %s, redis %s; of Redis'"'"'s CPU, %s us in %d AOF rewrite(s)\n", $2, $1, $3, $4, $5, $6, $7, $8, $9, $10, $11}'
  cat "$work/commandstats.per_draw"
  stop_all
}

log "PostgreSQL on $host:$pg_port"
start_pg
: >"$work/results"
for round in $(seq "$runs"); do
  for b in "${builds[@]}"; do one_run "$b" "$round"; done
done

echo
echo "CPU per draw (us), $runs run(s) each, alternated; wrk -t1 -c$conns -d${secs}s"
for b in "${builds[@]}"; do
  awk -v b="$b" '$1 == b {
      f = f sep $5; r = r sep $6; p = p sep $7; s = s sep $4; x = x sep $8; w = w sep $10 " (" $11 ")"; sep = ", "
      tf += $5; tr += $6; tp += $7; n++ }
    END {
      printf "%s\n  fairdraw   %s (mean %.1f)\n  redis      %s (mean %.1f)\n  postgresql %s (mean %.1f)\n  draws/s    %s\n  fairdraw context switches per draw %s\n  redis: of which AOF rewrites (count) %s\n",
        b, f, tf / n, r, tr / n, p, tp / n, s, x, w }' "$work/results"
done
