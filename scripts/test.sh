#!/usr/bin/env bash
# Runs every test: installs what is missing, then builds and runs the unit and
# integration tests three times: plain (-Werror), ASan+UBSan, and TSan, then
# runs each libFuzzer target for a bounded time under ASan+UBSan.
#   scripts/test.sh            all three builds, then the fuzzers
#   scripts/test.sh dev        any of: dev, asan, tsan, fuzz
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

presets=("$@")
if [ "${#presets[@]}" -eq 0 ]; then presets=(dev asan tsan fuzz); fi
jobs="${FAIRDRAW_BUILD_JOBS:-$(nproc)}"

# Sanitizer settings: fail on the first report, keep stacks readable.
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"

for preset in "${presets[@]}"; do
  if [ "$preset" = fuzz ]; then
    echo "=== fuzz: ${FAIRDRAW_FUZZ_SECONDS:-60}s per target ==="
    bash scripts/fuzz-ci.sh
    continue
  fi
  echo "=== build: $preset ==="
  start=$(date +%s)
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j"$jobs"
  echo "=== test: $preset (built in $(( $(date +%s) - start ))s) ==="
  # The hostile-client tests append their honest-client latency lines here.
  export FAIRDRAW_HOSTILE_REPORT="$PWD/build/$preset/hostile-report.txt"
  : >"$FAIRDRAW_HOSTILE_REPORT"
  ctest --preset "$preset" --output-on-failure -j2 --timeout 600
  cat "$FAIRDRAW_HOSTILE_REPORT"
done
