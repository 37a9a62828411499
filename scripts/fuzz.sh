#!/usr/bin/env bash
# Bounded libFuzzer run for CI: builds fuzz/ with clang++-14 and fuzzes each target for N seconds.
#   scripts/fuzz.sh            60 s per target (3 targets: about 5 minutes with the build)
#   scripts/fuzz.sh 300        longer run
#   FAIRDRAW_FUZZ_IGNORE=id,... scripts/fuzz.sh
#                              skip the oracles of known, reported findings (ids
#                              in brackets in the oracle messages) until fixed
#   FAIRDRAW_FUZZ_BUILD_DIR=dir  build there instead of build/fuzz
# CI runs this through scripts/fuzz-ci.sh.
# Exits non-zero on any crash, leak, timeout or OOM; the input that caused it
# is kept in build/fuzz/crashes/<target>/. The repo's seed corpora are copied
# to a temp dir first, so fuzzing never writes into fuzz/corpus/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: scripts/fuzz.sh [seconds_per_target]" >&2
  exit 2
fi
jobs="${FAIRDRAW_BUILD_JOBS:-2}"
build="${FAIRDRAW_FUZZ_BUILD_DIR:-$root/build/fuzz}"
case "$build" in /*) ;; *) build="$root/$build" ;; esac
targets=(fuzz_http_request fuzz_draw_body fuzz_config)

bash scripts/install-deps.sh  # the project's own build dependencies (idempotent)
# libFuzzer comes with clang's runtime libraries (libclang-rt-14-dev).
if ! command -v clang++-14 >/dev/null || [ ! -e "$(clang++-14 -print-resource-dir)/lib/linux/libclang_rt.fuzzer-x86_64.a" ]; then
  echo "=== installing clang-14 and libclang-rt-14-dev ==="
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-14 libclang-rt-14-dev
fi

started=$(date +%s)
echo "=== configure + build (clang++-14, -j$jobs) ==="
cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER=clang++-14 -DFAIRDRAW_FUZZ=ON \
  -DFAIRDRAW_BUILD_TESTS=OFF -DFAIRDRAW_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$jobs" --target "${targets[@]}"
echo "=== built in $(( $(date +%s) - started ))s ==="

# Scratch space: the corpus copies, and the targets' SQLite/config temp files
# (TMPDIR). tmpfs when there is one: the targets write a file per input.
scratch_base="${TMPDIR:-/tmp}"
if [ -d /dev/shm ] && [ -w /dev/shm ]; then scratch_base=/dev/shm; fi
work=$(mktemp -d "$scratch_base/fairdraw-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$build/crashes"

# Sanitizers: fail on the first report, readable stacks, leak check at exit.
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:symbolize=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

declare -A max_len=([fuzz_http_request]=24576 [fuzz_draw_body]=16384 [fuzz_config]=16384)
declare -A corpus=([fuzz_http_request]=http_request [fuzz_draw_body]=draw_body [fuzz_config]=config)
failed=()
summary=()
for t in "${targets[@]}"; do
  echo "=== fuzz: $t for ${seconds}s ==="
  dir="$work/$t"
  mkdir -p "$dir/corpus" "$dir/tmp" "$build/crashes/$t"
  cp -R "$root/fuzz/corpus/${corpus[$t]}/." "$dir/corpus/"
  # Inputs that once failed (fuzz/regressions/<target>-*) must pass now. Run
  # one by one first, so a known failure is reported as such and the fuzzing
  # below still gets its full time (it stops at its first failure).
  for r in "$root"/fuzz/regressions/"$t"-*; do
    [ -e "$r" ] || continue
    if TMPDIR="$dir/tmp" "$build/fuzz/$t" -timeout=10 -rss_limit_mb=2048 "$r" >"$dir/regression.log" 2>&1; then
      echo "regression ok: ${r#"$root"/}"
    else
      echo "REGRESSION FAILS: ${r#"$root"/}" >&2
      grep -E -A3 'fairdraw fuzz oracle|^==[0-9]+==ERROR|runtime error' "$dir/regression.log" | head -20 >&2 || true
      summary+=("$t: regression ${r##*/} fails")
      failed+=("$t:${r##*/}")
    fi
  done
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="${max_len[$t]}"
        -print_final_stats=1 -artifact_prefix="$build/crashes/$t/")
  if [ "$t" = fuzz_http_request ] || [ "$t" = fuzz_draw_body ]; then
    args+=(-dict="$root/fuzz/http.dict")
    # These two keep an engine and a sink across inputs, so most inputs allocate
    # more than they free without leaking, and libFuzzer's per-input leak check
    # (a full LSan scan each time) would take most of the run. LeakSanitizer
    # still checks the whole process at exit, after the world is torn down, and
    # fails the run (stack in the log; no single input to blame).
    args+=(-detect_leaks=0)
  fi
  log="$build/crashes/$t.log"
  set +e
  # A hard stop well past -max_total_time, should a target ever hang outside
  # libFuzzer's own timeouts (at exit, say).
  TMPDIR="$dir/tmp" timeout --kill-after=30 $(( seconds + 300 )) \
    "$build/fuzz/$t" "${args[@]}" "$dir/corpus" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  summary+=("$t: ${execs:-?} executions (${rate:-?}/s), exit $rc")
  echo "${summary[-1]}"
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    echo "--- $t failed; log: $log; inputs: $build/crashes/$t/" >&2
    grep -E -A40 '^==[0-9]+==(ERROR|WARNING)|fairdraw fuzz oracle|runtime error|ERROR: libFuzzer' "$log" | head -80 >&2 || tail -40 "$log" >&2
  fi
done

echo "=== summary (${seconds}s per target, total $(( $(date +%s) - started ))s) ==="
printf '%s\n' "${summary[@]}" | tee "$build/fuzz-summary.txt"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED: ${failed[*]} (logs and new crashing inputs in $build/crashes/, known ones in fuzz/regressions/)" >&2
  exit 1
fi
