#!/usr/bin/env bash
# Fresh machine to first result: install what is missing, build, run examples/01_quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target 01_quickstart
./build/bin/01_quickstart
