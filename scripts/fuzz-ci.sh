#!/usr/bin/env bash
# CI's fuzzing step: builds the three libFuzzer targets with clang-14
# (ASan + UBSan + libFuzzer, needs the Debian packages clang-14 and
# libclang-rt-14-dev), replays fuzz/regressions/, then fuzzes each target for a
# bounded time from the seed corpora in fuzz/corpus/. Fails on any crash,
# sanitizer report, leak, timeout or OOM, and on any regression input that
# fails again. Prints the executions per target.
#
#   scripts/fuzz-ci.sh                          60 s per target
#   FAIRDRAW_FUZZ_SECONDS=300 scripts/fuzz-ci.sh
#   FAIRDRAW_FUZZ_BUILD_DIR=build/fuzz          where to build (default)
#   FAIRDRAW_BUILD_JOBS=2                       parallel compile jobs
#
# Wall time: the build (about 6 min on 2 cores from scratch) plus 3 x the
# seconds, plus at most a few seconds per target for the regressions.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FAIRDRAW_FUZZ_SECONDS:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ] || [ "$seconds" -gt 3600 ]; then
  echo "fuzz-ci: FAIRDRAW_FUZZ_SECONDS must be 1..3600, got '$seconds'" >&2
  exit 2
fi
build="${FAIRDRAW_FUZZ_BUILD_DIR:-build/fuzz}"
export FAIRDRAW_FUZZ_BUILD_DIR="$build"

started=$(date +%s)
set +e
bash scripts/fuzz.sh "$seconds"
rc=$?
set -e

echo "=== fuzz-ci: ${seconds}s per target, $(( $(date +%s) - started ))s in all, exit $rc ==="
if [ "$rc" -ne 0 ]; then
  cat >&2 <<EOF
fuzz-ci: FAILED. The failing inputs are in $build/crashes/<target>/ (logs next to them).
To turn a finding into a regression test:
  1. reproduce:  $build/fuzz/<target> $build/crashes/<target>/crash-...
  2. keep it:    cp that file fuzz/regressions/<target>-<what-it-is>
                 (fuzz.sh replays fuzz/regressions/ first, every run);
  3. fix it, and add a unit test that sends the same bytes through the code path
     (tests/http/server_test.cpp for the parser, tests/app/* for the Api and config).
EOF
fi
exit "$rc"
