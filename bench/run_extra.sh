# Sourced by bench/run (not run on its own): the clustered steps (g, h), the scaling curves
# (--curves) and the soak (--soak S). Uses bench/run's helpers and variables: $work, $host,
# $build, $server_bin, $loadgen, pids/stop_pid/forget_pid, run_wrk, commands, proc_kb, mb.
# Every server started here is in `pids` (redis-server, fairdraw) or stopped by bench/run's
# clean-up (PostgreSQL, through scripts/pg-test-server.sh stop), also on error or Ctrl-C.

redis_port_main=$((fd_port + 10))
redis_port_ceiling=$((fd_port + 11))
pg_port=$((fd_port + 12))
cl_port1=$((fd_port + 13))
cl_port2=$((fd_port + 14))

# start_redis NAME PORT: a private redis-server on loopback, AOF on (appendfsync everysec, its
# default), no RDB snapshots; its pid in redis_pid
start_redis() {
  local dir=$work/$1 _
  mkdir -p "$dir"
  commands+=("redis-server --bind 127.0.0.1 --port $2 --dir \$TMP --appendonly yes --save '' --daemonize no &")
  redis-server --bind 127.0.0.1 --port "$2" --dir "$dir" --appendonly yes --save '' \
    --daemonize no --logfile "$dir/redis.log" &
  redis_pid=$!
  pids+=("$redis_pid")
  for _ in $(seq 100); do redis-cli -h "$host" -p "$2" ping 2>/dev/null | grep -q PONG && return 0; sleep 0.1; done
  log "redis-server did not start:"; cat "$dir/redis.log" >&2; exit 1
}

start_pg() {  # the private PostgreSQL of the clustered steps; stopped by bench/run's clean-up
  pg_dir=$(mktemp -d /tmp/fairdraw-bench-pg-XXXXXX)
  commands+=("scripts/pg-test-server.sh start \$PGDIR $pg_port")
  timeout 180 scripts/pg-test-server.sh start "$pg_dir" "$pg_port" >"$work/pg.log" 2>&1 ||
    { log "PostgreSQL did not start:"; cat "$work/pg.log" >&2; exit 1; }
  pg_url=$(scripts/pg-test-server.sh url "$pg_dir" "$pg_port")
}

# start_clustered NAME PORT REDIS_PORT MISS PRIZE_WEIGHT: fairdraw in clustered mode (Redis +
# PostgreSQL) with one activity NAME; its pid in cl_pid
start_clustered() {
  local dir=$work/$1-$2
  mkdir -p "$dir"
  cat >"$dir/config.json" <<JSON
{"listen": "$host:$2", "admin_token": "bench", "log_level": "warn",
 "redis": {"url": "redis://$host:$3/0"},
 "database": {"url": "$pg_url"},
 "http": {"max_connections": 40000, "max_connections_per_address": 0},
 "watchdog": {"max_open_connections": 40000},
 "activities": {"$1": {"name": "$1", "miss_weight": $4,
   "prizes": [{"id": "a", "name": "A", "weight": $5, "stock": 1000000000}]}}}
JSON
  commands+=("$build/fairdraw --config \$TMP/clustered-$2.json &   # $(sed "s|$pg_url|postgresql://…|" "$dir/config.json" | tr -d '\n' | tr -s ' ')")
  "$server_bin" --config "$dir/config.json" 2>"$dir/server.log" &
  cl_pid=$!
  pids+=("$cl_pid")
  wait_http "http://$host:$2/healthz" || { log "clustered fairdraw did not start:"; cat "$dir/server.log" >&2; exit 1; }
}

# --- g. the Redis ceiling: redis-benchmark calling the draw script by EVALSHA -------------------
# fairdraw (clustered, against a Redis of its own) creates the activity and its first epoch, then
# stops; redis-benchmark then calls the very script fairdraw uses (kDraw, read out of
# src/redis/redis_store_scripts.hpp), with the keys and arguments fairdraw passes, unique
# Idempotency-Keys and user ids from __rand_int__. The epoch's deck has 2,000,000 cards, more
# than the calls made, so every call takes the whole draw path (checked: the seq it advanced).
redis_ceiling() {
  log "g. Redis ceiling: redis-benchmark EVALSHA of the draw script, pipelined"
  start_redis redis-ceiling "$redis_port_ceiling"
  local rpid=$redis_pid rc="redis-cli -h $host -p $redis_port_ceiling" p='fd:{ceiling}:' n=600000
  start_clustered ceiling "$cl_port1" "$redis_port_ceiling" 1800000 200000
  curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -H 'Idempotency-Key: first' \
    -d '{"activity_id":"ceiling","user_id":"first"}' "http://$host:$cl_port1/draw" ||
    log "the first clustered draw failed: $(cat "$work/ceiling-$cl_port1/server.log")"
  stop_pid "$cl_pid"
  # the raw string starts with the newline after R"lua( and ends before )lua"
  awk '/kDraw = R"lua\(/ {f = 1; print ""; next} f && /^\)lua";/ {exit} f' src/redis/redis_store_scripts.hpp >"$work/draw.lua"
  local sha known version now day seq0 seq1
  sha=$(sha1sum "$work/draw.lua" | cut -d' ' -f1)
  known=$($rc SCRIPT EXISTS "$sha")  # 1: fairdraw loaded this very text
  sha=$($rc -x SCRIPT LOAD <"$work/draw.lua")
  version=$($rc HGET "${p}cfg" version)
  now=$(($(date +%s) * 1000))
  day=$((now / 86400000))
  seq0=$($rc GET "${p}seq")
  local args=(EVALSHA "$sha" 10 "${p}cfg" "${p}seq" "${p}wins" "${p}users" "${p}day:$day"
    "${p}idem:k__rand_int__" "${p}stream" "${p}chain" "${p}unpersisted" "${p}unpersisted:byuser"
    "u__rand_int__" "$now" "01BENCH__rand_int__" "$version" 0 86400000 ceiling "k__rand_int__" "$p")
  # redis-benchmark has no duration: a short run (not reported) sizes the measured one to ~8 s,
  # within the deck (2,000,000 cards for both runs together).
  timeout 60 redis-benchmark -h "$host" -p "$redis_port_ceiling" -c 50 -P 16 -n 20000 -r 1000000000 --csv \
    "${args[@]}" >"$work/ceiling_cal.csv" 2>&1 || true
  n=$(tail -1 "$work/ceiling_cal.csv" | awk -F'","' '{n = int($2 * 8); if (n < 20000) n = 20000; if (n > 800000) n = 800000; print n}')
  # g-aof: AOF on (as in h); then g: AOF off, as the issue's reference figure
  local name
  for name in ceiling_aof ceiling; do
    [ "$name" = ceiling ] && $rc CONFIG SET appendonly no >/dev/null
    seq0=$($rc GET "${p}seq")
    commands+=("redis-benchmark -h $host -p $redis_port_ceiling -c 50 -P 16 -n $n -r 1000000000 --csv ${args[*]}   # appendonly $($rc CONFIG GET appendonly | tail -1)")
    timeout 120 redis-benchmark -h "$host" -p "$redis_port_ceiling" -c 50 -P 16 -n "$n" -r 1000000000 --csv \
      "${args[@]}" >"$work/$name.csv" 2>"$work/$name.err" || log "redis-benchmark failed: $(cat "$work/$name.err")"
    seq1=$($rc GET "${p}seq")
    # "EVALSHA ...","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    tail -1 "$work/$name.csv" | awk -F'","' '{print $2}' >"$work/$name.rps"
    tail -1 "$work/$name.csv" | awk -F'","' '{print $5}' >"$work/$name.p50"
    tail -1 "$work/$name.csv" | awk -F'","' '{print $7}' >"$work/$name.p99"
    echo $((${seq1:-0} - ${seq0:-0})) >"$work/$name.draws"
    echo "$(proc_kb "$rpid" VmHWM) $(proc_kb "$rpid" Threads)" >"$work/$name.mem"
  done
  echo "$known" >"$work/ceiling.same_script"
  stop_pid "$rpid"
  rm -rf "$work/redis-ceiling"
}

# --- h. fairdraw POST /draw clustered: one instance, then two ---------------------------------
clustered_draws() {
  start_redis redis-main "$redis_port_main"
  local rpid=$redis_pid p1 p2 a b
  log "h1. fairdraw POST /draw clustered, one instance (Redis AOF on, PostgreSQL)"
  start_clustered bench "$cl_port1" "$redis_port_main" 9000 1000
  p1=$cl_pid
  WRK_KEY_PREFIX=c1- run_wrk cl1 -t1 -c$conns -d${secs}s --latency -s bench/wrk_draw.lua "http://$host:$cl_port1/"
  commands[-1]="WRK_KEY_PREFIX=c1- ${commands[-1]}"
  echo "$(proc_kb "$p1" VmHWM) $(proc_kb "$p1" Threads)" >"$work/cl1.mem"
  echo "$(proc_kb "$rpid" VmHWM) $(proc_kb "$rpid" Threads)" >"$work/cl1_redis.mem"
  log "h2. fairdraw POST /draw clustered, two instances, one wrk on each at once"
  start_clustered bench "$cl_port2" "$redis_port_main" 9000 1000
  p2=$cl_pid
  WRK_KEY_PREFIX=c2a- run_wrk cl2a -t1 -c$conns -d${secs}s --latency -s bench/wrk_draw.lua "http://$host:$cl_port1/" &
  a=$!
  WRK_KEY_PREFIX=c2b- run_wrk cl2b -t1 -c$conns -d${secs}s --latency -s bench/wrk_draw.lua "http://$host:$cl_port2/" &
  b=$!
  wait "$a" || true
  wait "$b" || true
  commands+=("WRK_KEY_PREFIX=c2a- wrk -t1 -c$conns -d${secs}s --latency -s bench/wrk_draw.lua http://$host:$cl_port1/ & WRK_KEY_PREFIX=c2b- wrk ... http://$host:$cl_port2/ (at once)")
  awk -v a="$(cat "$work/cl2a.rps")" -v b="$(cat "$work/cl2b.rps")" 'BEGIN {printf "%.2f\n", a + b}' >"$work/cl2.rps"
  # latency: the worse of the two wrk runs
  for q in p50 p99; do
    awk -v a="$(cat "$work/cl2a.$q")" -v b="$(cat "$work/cl2b.$q")" 'BEGIN {printf "%.3f\n", (a > b) ? a : b}' >"$work/cl2.$q"
  done
  echo $(($(cat "$work/cl2a.bad") + $(cat "$work/cl2b.bad"))) >"$work/cl2.bad"
  echo "$(proc_kb "$p1" VmHWM) $(proc_kb "$p1" Threads) $(proc_kb "$p2" VmHWM) $(proc_kb "$p2" Threads)" >"$work/cl2.mem"
  echo "$(proc_kb "$rpid" VmHWM) $(proc_kb "$rpid" Threads)" >"$work/cl2_redis.mem"
  redis-cli -h "$host" -p "$redis_port_main" GET 'fd:{bench}:seq' >"$work/cl.seq" 2>/dev/null || true
  stop_pid "$p1"
  stop_pid "$p2"
  stop_pid "$rpid"
  scripts/pg-test-server.sh stop "$pg_dir" >/dev/null 2>&1 || true
}

# --- curves (--curves): embedded draw throughput and p99.9 against connections and activities ---
# One point: wrk -t1 -cC for 10 s (closed loop: req/s), then fairdraw_loadgen at half of that
# rate over the same number of connections for 10 s (open loop: p99.9).
curve_point() {  # NAME CONNS ACTIVITIES
  local name=$1 c=$2 n=$3 rate act_opt=()
  WRK_ACTIVITIES=$n run_wrk "$name" -t1 -c"$c" -d${secs}s --latency -s bench/wrk_draw.lua "http://$host:$fd_port/"
  rate=$(awk -v r="$(cat "$work/$name.rps")" 'BEGIN {printf "%d", r / 2}')
  [ "$n" -gt 1 ] && act_opt=(--activities "$n")
  timeout $((secs + 60)) "$loadgen" --url "http://$host:$fd_port" --path /draw --activity bench "${act_opt[@]}" \
    --rate "$rate" --connections "$c" --duration "$secs" --warmup 2 --threads 1 --json \
    >"$work/$name.json" 2>"$work/$name.err" || log "open loop $name reported errors"
  echo "| $c | $n | $(cat "$work/$name.rps") | $(cat "$work/$name.bad") | $rate | $(json_num achieved_rate "$work/$name.json") | $(json_num p99 "$work/$name.json") | $(json_num p99_9 "$work/$name.json") | $(mb "$(proc_kb "$fd_pid" VmHWM)") | $(proc_kb "$fd_pid" Threads) |" >>"$work/curves.md"
}
curves() {
  log "curves: connections 64 / 1024 / $hold_n, activities 1 / 100 / 10000"
  local c n
  {
    echo "| connections | activities | wrk req/s | wrk errors / non-2xx | open-loop rate | achieved | p99 ms | p99.9 ms | peak RSS MB | threads |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  } >"$work/curves.md"
  for c in 64 1024 "$hold_n"; do
    start_fairdraw "$work/curve-c$c"
    curve_point "curve_c$c" "$c" 1
    stop_pid "$fd_pid"
  done
  for n in 100 10000; do
    start_fairdraw "$work/curve-a$n" "$n"
    curve_point "curve_a$n" 64 "$n"
    stop_pid "$fd_pid"
  done
  commands+=("curves: for each point a fresh fairdraw (activities bench-0 .. bench-N-1 when N > 1), WRK_ACTIVITIES=N wrk -t1 -cC -d${secs}s -s bench/wrk_draw.lua, then fairdraw_loadgen --activities N --rate <half> --connections C --duration $secs")
}

# --- soak (--soak S): constant open-loop rate for S seconds, RSS sampled every 10 s -------------
soak() {
  local s=$1 rate lp t=0 rss users
  rate=${SOAK_RATE:-$(awk -v r="$(cat "$work/draw.rps" 2>/dev/null || echo 4000)" 'BEGIN {printf "%d", r / 4}')}
  # A bounded user population (SOAK_USERS, default 100,000): per-user quota counters are state
  # the service must keep, so one new user per request would grow memory by design (bytes per
  # user are in the curves' engine bench); keys stay unique, so the idempotency ring fills.
  users=${SOAK_USERS:-100000}
  log "soak: POST /draw at $rate req/s, 1000 connections, $users users, $s s, RSS every 10 s"
  start_fairdraw "$work/soak"
  commands+=("$build/bench/fairdraw_loadgen --url http://$host:$fd_port --path /draw --rate $rate --connections 1000 --duration $s --warmup 0 --keys random --users $users --json   # RSS of fairdraw every 10 s")
  "$loadgen" --url "http://$host:$fd_port" --path /draw --activity bench --rate "$rate" --connections 1000 \
    --duration "$s" --warmup 0 --threads 1 --keys random --users "$users" --json >"$work/soak.json" 2>"$work/soak.err" &
  lp=$!
  pids+=("$lp")
  : >"$work/soak.samples"
  while kill -0 "$lp" 2>/dev/null; do
    sleep 10
    t=$((t + 10))
    rss=$(proc_kb "$fd_pid" VmRSS)
    echo "$t $rss $(proc_kb "$fd_pid" Threads)" >>"$work/soak.samples"
  done
  wait "$lp" || log "soak load reported errors: $(cat "$work/soak.err")"
  forget_pid "$lp"
  # RSS rises at first by design (the idempotency ring fills to draw.idempotency_capacity):
  # "grew" compares the last sample with the one half-way through the run.
  awk -v hwm="$(proc_kb "$fd_pid" VmHWM)" -v rate="$rate" -v s="$s" -v users="$users" '
    NR == 1 {first = $2; ft = $3} {r[NR] = $2; last = $2; lt = $3; if ($2 > peak) peak = $2; n++}
    END {
      mid = r[int((n + 1) / 2)]
      grew = (last > mid * 1.05) ? "yes: last > half-way + 5%" : "no: last <= half-way + 5%"
      printf "| %d s at %d req/s (random keys, %d users, 1000 conns) | %d | %.1f MB | %.1f MB | %.1f MB | %.1f MB (VmHWM %.1f MB) | %d -> %d | %s |\n",
        s, rate, users, n, first / 1024, mid / 1024, last / 1024, peak / 1024, hwm / 1024, ft, lt, grew }' "$work/soak.samples" >"$work/soak.md"
  stop_pid "$fd_pid"
}
