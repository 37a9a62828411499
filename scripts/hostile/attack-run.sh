#!/usr/bin/env bash
# Slow-HTTP attacks by Debian's slowhttptest against a real fairdraw, while
# honest clients (curl, from another loopback address) keep drawing; prints a
# table of the honest clients' latency during each attack and the server's
# memory at the end. Not part of CI (minutes long); the same attacks, shorter,
# are in tests/integration/hostile_http_test.cpp.
#
#   scripts/hostile/attack-run.sh [path/to/fairdraw]
#   FAIRDRAW_ATTACK_SECONDS=20      length of each attack
#   FAIRDRAW_ATTACK_CONNECTIONS=1000
#
# Needs: slowhttptest (Debian package slowhttptest), curl. The binary defaults
# to build/dev/fairdraw. Attacks come from 127.0.0.1, honest clients from
# 127.0.0.2, so the per-address cap (http.max_connections_per_address, default
# 256) applies to the attacker only; each mode runs with the cap on and off.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

bin="${1:-$root/build/dev/fairdraw}"
seconds="${FAIRDRAW_ATTACK_SECONDS:-20}"
conns="${FAIRDRAW_ATTACK_CONNECTIONS:-1000}"
if [ ! -x "$bin" ]; then
  echo "attack-run: no fairdraw binary at $bin (build first: cmake --preset dev && cmake --build --preset dev)" >&2
  exit 2
fi
for tool in slowhttptest curl; do
  if ! command -v "$tool" >/dev/null; then
    echo "attack-run: $tool is missing (apt-get install -y slowhttptest curl)" >&2
    exit 2
  fi
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d "${TMPDIR:-/tmp}/fairdraw-attack.XXXXXX")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $(( 20000 + RANDOM % 20000 ))
}

# start_server <per-address cap>: a fresh server, default limits and timeouts.
start_server() {
  local cap="$1"
  port=$(free_port)
  rm -rf "$work/data" && mkdir -p "$work/data"
  cat >"$work/config.json" <<EOF
{"listen": "127.0.0.1:$port", "admin_token": "attack-run-admin", "log_level": "warn",
 "database": {"url": "sqlite:$work/data/fd.db", "synchronous": "normal"},
 "http": {"max_connections_per_address": $cap},
 "activities": {"honest": {"name": "honest", "miss_weight": 9,
                           "prizes": [{"id": "p", "name": "p", "weight": 1, "stock": 100000000}]}}}
EOF
  "$bin" --config "$work/config.json" >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    if curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "attack-run: fairdraw did not start; log:" >&2
  cat "$work/server.log" >&2
  exit 1
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# honest <seconds> <out>: two curl loops from 127.0.0.2, a new connection per draw;
# one line per draw: "<http code> <seconds>".
honest() {
  local secs="$1" out="$2" end=$(( $(date +%s) + $1 ))
  : >"$out"
  local pids=()
  for w in 1 2; do
    : >"$out.$w"
    (
      i=0
      while [ "$(date +%s)" -lt "$end" ]; do
        i=$((i + 1))
        curl -s -o /dev/null --interface 127.0.0.2 --max-time 10 -w '%{http_code} %{time_total}\n' \
          -H 'Content-Type: application/json' \
          -d "{\"activity_id\":\"honest\",\"user_id\":\"h$w-$i-$RANDOM\"}" \
          "http://127.0.0.1:$port/draw" >>"$out.$w" || echo "000 10" >>"$out.$w"
        sleep 0.02
      done
    ) &
    pids+=($!)
  done
  wait "${pids[@]}"  # not a bare wait: the server is a child too
  cat "$out".1 "$out".2 >"$out"
}

# stats <file>: "n failed p50 p99 max" (milliseconds)
stats() {
  awk '{ print $2 * 1000 }' "$1" | sort -n >"$1.sorted"
  local n failed
  n=$(wc -l <"$1.sorted")
  failed=$(awk '$1 != "200"' "$1" | wc -l)
  awk -v n="$n" -v failed="$failed" '
    { v[NR] = $1 }
    END {
      if (n == 0) { printf "0 0 - - -\n"; exit }
      p50 = v[int(0.50 * (n - 1)) + 1]; p99 = v[int(0.99 * (n - 1) + 0.5) + 1]
      printf "%d %d %.1f %.1f %.1f\n", n, failed, p50, p99, v[n]
    }' "$1.sorted"
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status" 2>/dev/null || echo "?"; }
open_conns() {
  curl -s --interface 127.0.0.2 "http://127.0.0.1:$port/metrics" |
    awk -F' ' '/^fairdraw_state\{name="open_connections"\}/ { print $2 }'
}

declare -A mode_flags=(
  [slowloris]="-H -i 1 -t GET -u URL/activities"
  [slow-body]="-B -i 1 -s 8192 -t POST -f application/json -u URL/draw"
  [slow-read]="-X -k 10 -n 1 -w 1 -y 64 -z 32 -u URL/activities"
  [none]=""
)
rows=()
for cap in 256 0; do
  for mode in none slowloris slow-body slow-read; do
    start_server "$cap"
    echo "=== $mode (per-address cap $cap): ${seconds}s, $conns connections ===" >&2
    attack_pid=""
    if [ "$mode" != none ]; then
      flags=${mode_flags[$mode]//URL/http://127.0.0.1:$port}
      # shellcheck disable=SC2086
      slowhttptest $flags -c "$conns" -r 500 -l "$seconds" -p 5 >"$work/$mode.attack" 2>&1 &
      attack_pid=$!
      sleep 3  # let the connections pile up first
    fi
    # Peak of open connections while the honest clients run (sampled each second).
    ( peak=0; end=$(( $(date +%s) + seconds - 5 ))
      while [ "$(date +%s)" -lt "$end" ]; do
        o=$(open_conns); o=${o:-0}; [ "${o%.*}" -gt "$peak" ] && peak=${o%.*}
        echo "$peak" >"$work/$mode.peak"; sleep 1
      done ) &
    sampler=$!
    honest "$(( seconds - 4 > 5 ? seconds - 4 : 5 ))" "$work/$mode.honest"
    wait "$sampler" 2>/dev/null || true
    peak=$(cat "$work/$mode.peak" 2>/dev/null || echo "?")
    read -r n failed p50 p99 max < <(stats "$work/$mode.honest")
    rss=$(rss_kib)
    refused=$(curl -s --interface 127.0.0.2 "http://127.0.0.1:$port/metrics" |
      awk '/^fairdraw_state\{name="refused_per_address_connections"\}/ { print $2 }')
    if [ -n "$attack_pid" ]; then wait "$attack_pid" || true; fi
    rows+=("$(printf '| %-9s | %4s | %6s | %4s | %7s | %7s | %7s | %9s | %10s | %7s |' \
      "$mode" "$cap" "$n" "$failed" "$p50" "$p99" "$max" "${peak:-?}" "${refused:-?}" "$(( ${rss:-0} / 1024 ))")")
    stop_server
  done
done

echo
echo "Honest clients: 2 curl loops from 127.0.0.2, a new connection per POST /draw; latency in ms."
echo "Attacks: slowhttptest from 127.0.0.1, $conns connections, ${seconds}s; default timeouts (read 10 s, write 10 s)."
echo
echo "open conn: peak of fairdraw_state{name=\"open_connections\"} during the run; refused/ad: connections"
echo "refused by the per-address cap; RSS: the server's VmRSS at the end of the attack."
echo
echo "| attack    |  cap | honest | fail | p50 ms  | p99 ms  | max ms  | open conn | refused/ad | RSS MiB |"
echo "|-----------|------|--------|------|---------|---------|---------|-----------|------------|---------|"
printf '%s\n' "${rows[@]}"
