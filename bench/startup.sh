#!/usr/bin/env bash
# bench/startup.sh: time from start to the first /readyz 200 with many recorded draws.
#   bench/startup.sh BUILD_DIR [DRAWS] [RUNS]
# Makes a SQLite file once per DRAWS (kept in /tmp/fairdraw-startup-DRAWS-m003/fd.db): starts the
# server once so it creates the schema, the activity and its epochs, stops it, then inserts DRAWS
# rows with python3's sqlite3 module (contiguous seqs, random 16-hex-digit user ids and random
# keys, all drawn in the last DRAWS ms, one in ten a win), the shape a load of unique users leaves. Then
# copies the file for each run (a start may migrate it or end epochs), starts BUILD_DIR/fairdraw
# on the copy and prints the milliseconds until /readyz answers 200, and the RSS at that point.
# After each measurement (outside the timing) it replays the first and the last recorded draw by
# their Idempotency-Key and fails unless both come back as the recorded draw: a start that is
# fast because it skipped something shows up here.
set -euo pipefail
build=${1:?build dir}
draws=${2:-1000000}
runs=${3:-3}
port=${FAIRDRAW_STARTUP_PORT:-18091}
base=/tmp/fairdraw-startup-$draws-m003  # rows in the schema of migration 003 (made by the build under test)
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
  # The rows go in with python3's sqlite3 module: key_hash and user_hash (migration 002) are
  # computed as SqliteSink's hash64() does (src/sink/sqlite_sink.cpp): the top 24 bits from
  # FNV-1a 64 of the first 8 bytes, the low 40 bits from FNV-1a 64 of the whole string.
  python3 - "$base/fd.db" "$draws" <<'PY'
import os, sqlite3, sys, time
path, draws = sys.argv[1], int(sys.argv[2])
def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h
LOW40 = (1 << 40) - 1
def hash64(text):
    data = text.encode()
    h = (fnv1a64(data[:8]) & ~LOW40 & 0xFFFFFFFFFFFFFFFF) | (fnv1a64(data) & LOW40)
    return h - (1 << 64) if h >= 1 << 63 else h
now = int(time.time() * 1000)
def rows():
    for i in range(draws):
        user, key = 'u' + os.urandom(8).hex(), os.urandom(16).hex()
        won = i % 10 == 0
        prize = 'a' if won else None
        yield ('bench', i, '01BENCH%019d' % i, i // 10000, i % 10000, user, key, prize, prize,
               'A' if won else None, int(won), now - draws + i, hash64(key), hash64(user))
db = sqlite3.connect(path, isolation_level=None)
db.execute('PRAGMA journal_mode = WAL')
db.execute('BEGIN')
db.executemany('INSERT INTO draws (activity_id, seq, draw_id, epoch, slot, user_id, idempotency_key,'
               ' candidate_id, prize_id, prize_name, won, drawn_at_ms, key_hash, user_hash)'
               ' VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)', rows())
db.execute('COMMIT')
db.execute('PRAGMA wal_checkpoint(TRUNCATE)')
db.close()
PY
fi

# replay_check SEQ: POST /draw with the recorded key and user of SEQ; the answer must be a replay
# of that very draw.
replay_check() {
  local row key user body
  row=$(python3 -c 'import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
print(*db.execute("SELECT idempotency_key, user_id, draw_id FROM draws WHERE activity_id = ? AND seq = ?", ("bench", int(sys.argv[2]))).fetchone())' "$base/fd.db" "$1")
  read -r key user draw_id <<<"$row"
  body=$(curl -s -D "$work/headers" -X POST "http://127.0.0.1:$port/draw" \
    -H 'Content-Type: application/json' -H "Idempotency-Key: $key" \
    -d "{\"activity_id\": \"bench\", \"user_id\": \"$user\"}")
  if ! grep -qi '^Idempotent-Replayed: true' "$work/headers" || [[ "$body" != *"\"draw_id\":\"$draw_id\""* ]]; then
    echo "seq $1 was not replayed: $body"
    return 1
  fi
}

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
  replay_check 0 && replay_check $((draws - 1)) || exit 1
  kill -TERM "$pid"; wait "$pid" || true; pid=
done
