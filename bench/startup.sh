#!/usr/bin/env bash
# bench/startup.sh: time from start to the first /readyz 200 with many recorded draws.
#   bench/startup.sh BUILD_DIR [DRAWS] [RUNS]
# Makes a SQLite file once per DRAWS (kept in /tmp/fairdraw-startup-DRAWS/fd.db): starts the
# server once so it creates the schema, the activity and its epochs, stops it, then inserts DRAWS
# rows with the sqlite3 shell (contiguous seqs, random 16-hex-digit user ids and random keys, all
# drawn in the last DRAWS ms, one in ten a win), the shape a load of unique users leaves. Then
# copies the file for each run (a start may migrate it or end epochs), starts BUILD_DIR/fairdraw
# on the copy and prints the milliseconds until /readyz answers 200, and the RSS at that point.
set -euo pipefail
build=${1:?build dir}
draws=${2:-1000000}
runs=${3:-3}
port=${FAIRDRAW_STARTUP_PORT:-18091}
base=/tmp/fairdraw-startup-$draws
work=$(mktemp -d /tmp/fairdraw-startup-run-XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; [ -n "$pid" ] && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

config() {  # config() DB_FILE
  cat <<EOF
{"listen": "127.0.0.1:$port", "admin_token": "bench", "log_level": "warn", "threads": 2,
 "database": {"url": "sqlite:$1"},
 "activities": {"bench": {"name": "bench", "miss_weight": 9000, "max_draws_per_user": 100,
   "max_draws_per_user_per_day": 10,
   "prizes": [{"id": "a", "name": "A", "weight": 1000, "stock": 1000000000}]}}}
EOF
}
wait_ready() {
  for _ in $(seq 1 6000); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    sleep 0.005
  done
  return 1
}

if [ ! -f "$base/fd.db" ]; then
  mkdir -p "$base"
  config "$base/fd.db" >"$base/config.json"
  "$build/fairdraw" --config "$base/config.json" >"$base/out.log" 2>&1 &
  pid=$!
  wait_ready
  kill -TERM "$pid"; wait "$pid" || true; pid=
  now=$(date +%s%3N)
  sqlite3 "$base/fd.db" <<EOF
PRAGMA journal_mode = WAL;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $draws)
INSERT INTO draws (draw_id, activity_id, seq, epoch, slot, user_id, idempotency_key,
                   candidate_id, prize_id, prize_name, won, drawn_at_ms)
SELECT printf('01BENCH%019d', i), 'bench', i, i / 10000, i % 10000,
       'u' || lower(hex(randomblob(8))), lower(hex(randomblob(16))),
       CASE WHEN i % 10 = 0 THEN 'a' END, CASE WHEN i % 10 = 0 THEN 'a' END,
       CASE WHEN i % 10 = 0 THEN 'A' END, i % 10 = 0, $now - $draws + i
FROM n;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
EOF
fi

for r in $(seq 1 "$runs"); do
  rm -f "$work"/fd.db*
  cp "$base/fd.db" "$work/fd.db"
  config "$work/fd.db" >"$work/config.json"
  sync
  t0=$(date +%s%N)
  "$build/fairdraw" --config "$work/config.json" >"$work/out.log" 2>&1 &
  pid=$!
  wait_ready || { echo "not ready"; cat "$work/out.log"; exit 1; }
  t1=$(date +%s%N)
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  # CPU time used until then (user + system, all threads): on a shared machine the wall time
  # also counts waiting for a core.
  cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%d", ($14 + $15) * 1000 / hz}' "/proc/$pid/stat")
  echo "run $r: ready after $(((t1 - t0) / 1000000)) ms, $cpu ms CPU, RSS $((rss / 1024)) MB ($draws draws)"
  kill -TERM "$pid"; wait "$pid" || true; pid=
done
