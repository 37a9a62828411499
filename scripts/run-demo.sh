#!/usr/bin/env bash
# The newcomer's first command: installs what is missing, builds fairdraw
# (Release) and starts it on the embedded default with the demo activity:
# http://127.0.0.1:8080, record in data/fairdraw.db. Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)"
exec ./build/release/fairdraw --config config/fairdraw.json "$@"
