#!/usr/bin/env bash
# A throwaway three-master Redis Cluster on loopback, for tests and local trials.
#
#   scripts/redis-cluster-test.sh start DIR BASEPORT   # masters on BASEPORT, +1, +2
#   scripts/redis-cluster-test.sh stop  DIR
#
# start: three redis-server --cluster-enabled yes (no persistence, data in DIR), joined by
# `redis-cli --cluster create ... --cluster-replicas 0`, then waits for cluster_state:ok on
# every node (at most 20 s in all). Prints the seed URL (redis://127.0.0.1:P1,...) on success.
# On any failure the servers it started are stopped again and it exits 1.
# stop: kills the servers whose pid files are in DIR (only those) and removes DIR's contents.
# The C++ tests use the same steps (tests/redis/redis_cluster_fixture.hpp).
set -euo pipefail

REDIS_SERVER=${REDIS_SERVER:-/usr/bin/redis-server}
REDIS_CLI=${REDIS_CLI:-/usr/bin/redis-cli}

usage() {
  echo "usage: $0 start DIR BASEPORT | stop DIR" >&2
  exit 2
}

stop_cluster() {
  local dir=$1
  for pidfile in "$dir"/node-*.pid; do
    [ -f "$pidfile" ] || continue
    local pid
    pid=$(cat "$pidfile")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
  rm -f "$dir"/nodes-*.conf "$dir"/node-*.log
}

start_cluster() {
  local dir=$1 base=$2
  mkdir -p "$dir"
  local ports=("$base" "$((base + 1))" "$((base + 2))")
  trap 'stop_cluster "$dir"' ERR
  for port in "${ports[@]}"; do
    "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "$dir/nodes-$port.conf" --cluster-node-timeout 2000 \
      --save '' --appendonly no --daemonize yes --pidfile "$dir/node-$port.pid" \
      --logfile "$dir/node-$port.log" --dir "$dir" >/dev/null
  done
  local deadline=$((SECONDS + 20))
  for port in "${ports[@]}"; do
    until "$REDIS_CLI" -p "$port" ping >/dev/null 2>&1; do
      [ $SECONDS -lt $deadline ] || { echo "node $port does not answer" >&2; false; }
      sleep 0.05
    done
  done
  timeout 15 "$REDIS_CLI" --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 \
    --cluster-yes >"$dir/create.log" 2>&1
  for port in "${ports[@]}"; do
    until "$REDIS_CLI" -p "$port" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; do
      [ $SECONDS -lt $deadline ] || { echo "cluster not ok on $port" >&2; false; }
      sleep 0.05
    done
  done
  trap - ERR
  echo "redis://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
}

case "${1:-}" in
  start)
    [ $# -eq 3 ] || usage
    start_cluster "$2" "$3"
    ;;
  stop)
    [ $# -eq 2 ] || usage
    stop_cluster "$2"
    ;;
  *) usage ;;
esac
